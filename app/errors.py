"""The service's errors: each carries its HTTP status, a one-line detail and the
list of problems (``problem()`` records) a participant or organizer is shown."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)


class ServiceError(Exception):
    status_code = 400

    def __init__(
        self,
        detail: str,
        errors: Sequence[dict[str, Any]] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors) if errors else [problem(detail)]
        self.headers = headers


class BadRequest(ServiceError):
    status_code = 400


class Unauthorized(ServiceError):
    status_code = 401

    def __init__(
        self,
        detail: str,
        errors: Sequence[dict[str, Any]] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail, errors, headers={"WWW-Authenticate": "Bearer", **(headers or {})})


class Forbidden(ServiceError):
    status_code = 403


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class TooLarge(ServiceError):
    status_code = 413


class UnsupportedType(ServiceError):
    status_code = 415


class Unprocessable(ServiceError):
    status_code = 422


class QuotaExceeded(ServiceError):
    status_code = 429


class StorageFull(ServiceError):
    """The server's disk (or database) is full: 507, retry later; the request was fine."""

    status_code = 507
    RETRY_AFTER = 300

    def __init__(self, detail: str = "server storage full, retry later") -> None:
        super().__init__(
            detail,
            [problem(detail, kind="storage")],
            headers={"Retry-After": str(self.RETRY_AFTER)},
        )


def problem(message: str, *, case: str = "", kind: str = "request") -> dict[str, str]:
    return {"case": case, "kind": kind, "message": message}


class TooManyFailures(ServiceError):
    status_code = 429
