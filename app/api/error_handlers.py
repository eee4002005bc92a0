"""Every error leaves as JSON ``{"detail": ..., "errors": [...]}``, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.schemas import ErrorResponse
from app.errors import ServiceError, StorageFull
from app.storage import is_storage_full

log = logging.getLogger(__name__)

#: renders an error as an HTML page: (request, status, detail, problems) -> response
ErrorPage = Callable[[Request, int, str, list[dict[str, str]]], Response]

#: the error answers of the API routes in the OpenAPI document
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 415, 422, 429)
}


def error_body(detail: str, errors: list[dict[str, str]] | None = None) -> dict[str, object]:
    return {"detail": detail, "errors": errors or []}


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )


def install(app: FastAPI, *, error_page: ErrorPage | None = None) -> None:
    """JSON error handlers; with ``error_page``, browsers asking for HTML get a page."""

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> Response:
        if error_page is not None and _wants_html(request):
            return error_page(request, exc.status_code, exc.detail, exc.errors)
        return JSONResponse(
            error_body(exc.detail, exc.errors), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if error_page is not None and _wants_html(request):
            return error_page(request, exc.status_code, detail, [])
        return JSONResponse(
            error_body(detail), status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "request"
            errors.append({"case": "", "kind": "request", "message": f"{loc}: {e.get('msg', '')}"})
        return JSONResponse(error_body("invalid request", errors), status_code=422)

    async def _storage_or_internal(request: Request, exc: Exception) -> Response:
        """A full disk or database (``ENOSPC``/``EDQUOT``, SQLite's "database or disk is
        full", PostgreSQL's disk full) is :class:`StorageFull` (507, ``Retry-After``);
        any other error is a 500. Either way the service keeps serving."""
        if is_storage_full(exc):
            log.error(
                "server storage full on %s %s: %s; answered 507",
                request.method,
                request.url.path,
                exc,
            )
            return await _service_error(request, StorageFull())
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(
            error_body("internal server error; the organizers have been notified"),
            status_code=500,
        )

    app.add_exception_handler(OSError, _storage_or_internal)
    app.add_exception_handler(SQLAlchemyError, _storage_or_internal)
    app.add_exception_handler(Exception, _storage_or_internal)
