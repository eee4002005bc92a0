"""Request-scoped dependencies, as ``Annotated`` aliases for route signatures
(``session: SessionDep``): settings, dispatcher, leaderboard cache, DB sessions, the
caller's principal.

API calls authenticate with ``Authorization: Bearer <token>`` only. HTML pages also
accept the session cookie that the login form sets (a random session id, see
:func:`app.security.open_web_session`); a token is never taken from an address.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api.middleware import CLEAR_SESSION, SESSION_COOKIE
from app.errors import Forbidden, TooManyFailures, Unauthorized, problem
from app.jobs.base import Dispatcher
from app.ratelimit import AuthFailureLimiter, failure_keys
from app.security import Principal, authenticate, web_session_principal
from app.services.board_cache import BoardCache
from app.settings import Settings

log = logging.getLogger(__name__)

COOKIE = SESSION_COOKIE


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


async def get_board_cache(request: Request) -> BoardCache:
    return request.app.state.board_cache


SettingsDep = Annotated[Settings, Depends(get_settings)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
BoardCacheDep = Annotated[BoardCache, Depends(get_board_cache)]


def dispatch(dispatcher: Dispatcher, ids: Iterable[int]) -> None:
    """Hand committed submissions to the dispatcher. One it cannot take stays queued
    and is picked up again at the next start-up."""
    for sid in ids:
        try:
            dispatcher.submit(sid)
        except Exception:
            log.exception("submission %d: could not be dispatched; stays queued", sid)


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


#: a session that may write (the route commits)
SessionDep = Annotated[Session, Depends(get_session)]
#: a session that only reads (:func:`get_read_session`)
ReadSessionDep = Annotated[Session, Depends(get_read_session)]


def bearer_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


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


async def optional_principal(request: Request, session: ReadSessionDep) -> Principal | None:
    token = bearer_token(request)
    if token is None:  # anonymous: nothing to look up (no trip through the thread pool)
        return None
    principal = await run_in_threadpool(resolve, request, session, token)
    if principal is None:
        raise Unauthorized("the bearer token is not valid", headers={"WWW-Authenticate": "Bearer"})
    return principal


#: the caller, or None when anonymous (a token that is not valid is a 401)
OptionalPrincipalDep = Annotated[Principal | None, Depends(optional_principal)]


def require_principal(principal: OptionalPrincipalDep) -> Principal:
    if principal is None:
        raise Unauthorized(
            "a bearer token is required (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


#: the authenticated caller (no token: 401)
PrincipalDep = Annotated[Principal, Depends(require_principal)]


def require_organizer(principal: PrincipalDep) -> Principal:
    if not principal.is_organizer:
        raise Forbidden("this needs the organizer token")
    return principal


def require_team(principal: PrincipalDep) -> Principal:
    if principal.is_organizer:
        raise Forbidden("only a team token can submit; organizers have no team")
    return principal


#: a team (the organizer token: 403)
TeamDep = Annotated[Principal, Depends(require_team)]


def organizer_token(settings: Settings) -> str | None:
    return settings.organizer_token.get_secret_value() if settings.organizer_token else None


def page_principal(request: Request, session: ReadSessionDep) -> Principal | None:
    """Pages: the bearer header, else the session cookie. A cookie that names no live
    session (logged out, expired, its token rotated) is deleted in the answer and is not
    an authentication failure: session ids are 256 random bits, not worth guessing, and
    a stale cookie must not lock out everyone behind the same address. The session's
    CSRF token is left in ``request.state.csrf_token`` for the forms of the page."""
    token = bearer_token(request)
    if token is not None:
        return resolve(request, session, token)
    sid = request.cookies.get(COOKIE)
    if sid is None:
        return None
    found = web_session_principal(session, sid, organizer_token(request.app.state.settings))
    session.rollback()  # end the read transaction (SQLite: release the lock at once)
    if found is None:
        request.scope[CLEAR_SESSION] = True
        return None
    principal, request.state.csrf_token = found
    return principal


#: the caller of a page (bearer header or session cookie), or None
PagePrincipalDep = Annotated[Principal | None, Depends(page_principal)]


def https_site(request: Request) -> bool:
    """Served over https: the public URL is https, or the request came over https (from
    a trusted proxy's ``X-Forwarded-Proto``, which uvicorn applies)."""
    settings: Settings = request.app.state.settings
    return urlsplit(settings.public_url).scheme == "https" or request.url.scheme == "https"


def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def form_origin_problem(request: Request) -> str | None:
    """Why a form post does not come from this site's own pages, or None.

    The browser's ``Origin`` header (else, when it sends none, the origin of ``Referer``)
    must be the origin of ``HECKTOR_PUBLIC_URL`` or of the address the request was sent
    to (its scheme and ``Host``)."""
    settings: Settings = request.app.state.settings
    sent = request.headers.get("origin")
    source = "Origin"
    if sent in (None, "null"):
        sent, source = request.headers.get("referer"), "Referer"
    own = list(
        dict.fromkeys(
            o for o in (_origin(str(request.base_url)), _origin(settings.public_url)) if o
        )
    )
    if not sent:
        return (
            "the form was sent without an Origin or Referer header, so it cannot be told "
            f"apart from a form on another site; sign in from {own[0]}/ in a browser, "
            "or use the API with Authorization: Bearer <token>"
        )
    origin = _origin(sent)
    if origin not in own:
        return (
            f"the form was sent from {origin or sent!r} ({source} header), not from this "
            f"site ({', '.join(own)}); sign in from this site's own page"
        )
    return None
