"""The HTTP API (``/api/v1``) and the application factory :func:`app.api.main.create_app`."""
