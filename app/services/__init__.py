"""Use cases of the service, without HTTP: one module per domain, in data-flow order."""
