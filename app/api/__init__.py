"""The HTTP API (``/api/v1``): dependencies, schemas, error handlers, the multipart reader and the routes."""
