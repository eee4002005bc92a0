"""Request-scoped dependencies: settings, DB session, the caller's principal.

API calls authenticate with ``Authorization: Bearer <token>`` only. HTML pages also
accept ``?token=`` (moved into an HttpOnly cookie at once) and that cookie.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.jobs.dispatcher import Dispatcher
from app.ratelimit import AuthFailureLimiter, failure_keys
from app.security import Principal, authenticate
from app.services import Forbidden, ServiceError, Unauthorized, problem
from app.settings import Settings

COOKIE = "hecktor_token"


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


def get_session(request: Request) -> Iterator[Session]:
    session: Session = request.app.state.sessions()
    try:
        yield session
    finally:
        session.close()


async def get_read_session(request: Request) -> AsyncIterator[Session]:
    """A session for requests that only read (never write through it): on SQLite its
    transactions take no write lock, so reads never queue behind a judge's writes.

    Async so that opening it costs no trip through the thread pool (creating a session
    does no I/O); closing one that holds a connection (a rollback) runs in the pool."""
    factory = getattr(request.app.state, "read_sessions", None) or request.app.state.sessions
    session: Session = factory()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


def bearer_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class TooManyFailures(ServiceError):
    status_code = 429


def resolve(request: Request, session: Session, token: str | None) -> Principal | None:
    """The principal of ``token`` (None: no token, or not valid). Failed checks are
    rate-limited per client address and token prefix (:mod:`app.ratelimit`)."""
    settings: Settings = request.app.state.settings
    limiter: AuthFailureLimiter | None = getattr(request.app.state, "auth_limiter", None)
    keys = None
    if token and limiter is not None and limiter.enabled:
        keys = failure_keys(request.client.host if request.client else None, token)
        wait = limiter.retry_after(keys)
        if wait is not None:
            msg = (
                "too many failed authentication attempts from this address or with this "
                f"token; try again in {wait} s with a valid token"
            )
            raise TooManyFailures(
                msg, [problem(msg, kind="rate_limit")], headers={"Retry-After": str(wait)}
            )
    org = settings.organizer_token.get_secret_value() if settings.organizer_token else None
    principal = authenticate(session, token, org)
    session.rollback()  # end the read transaction (SQLite: release the lock at once)
    if keys is not None and principal is None:
        assert limiter is not None
        limiter.record_failure(keys)
    return principal


async def optional_principal(
    request: Request, session: Session = Depends(get_read_session)
) -> Principal | None:
    token = bearer_token(request)
    if token is None:  # anonymous: nothing to look up (no trip through the thread pool)
        return None
    principal = await run_in_threadpool(resolve, request, session, token)
    if principal is None:
        raise Unauthorized("the bearer token is not valid", headers={"WWW-Authenticate": "Bearer"})
    return principal


def require_principal(principal: Principal | None = Depends(optional_principal)) -> Principal:
    if principal is None:
        raise Unauthorized(
            "a bearer token is required (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def require_organizer(principal: Principal = Depends(require_principal)) -> Principal:
    if not principal.is_organizer:
        raise Forbidden("this needs the organizer token")
    return principal


def require_team(principal: Principal = Depends(require_principal)) -> Principal:
    if principal.is_organizer:
        raise Forbidden("only a team token can submit; organizers have no team")
    return principal


def page_principal(
    request: Request, session: Session = Depends(get_read_session)
) -> Principal | None:
    """Pages: the bearer header, else the cookie. ``?token=`` is handled by a redirect."""
    token = bearer_token(request) or request.cookies.get(COOKIE)
    return resolve(request, session, token)
