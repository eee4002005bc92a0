"""Request-scoped dependencies: settings, DB session, the caller's principal.

API calls authenticate with ``Authorization: Bearer <token>`` only. HTML pages also
accept ``?token=`` (moved into an HttpOnly cookie at once) and that cookie.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.jobs.dispatcher import Dispatcher
from app.security import Principal, authenticate
from app.services import Forbidden, Unauthorized
from app.settings import Settings

COOKIE = "hecktor_token"


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher  # type: ignore[no-any-return]


def get_session(request: Request) -> Iterator[Session]:
    session: Session = request.app.state.sessions()
    try:
        yield session
    finally:
        session.close()


def bearer_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def resolve(request: Request, session: Session, token: str | None) -> Principal | None:
    settings: Settings = request.app.state.settings
    org = settings.organizer_token.get_secret_value() if settings.organizer_token else None
    principal = authenticate(session, token, org)
    session.rollback()  # end the read transaction (SQLite: release the lock at once)
    return principal


def optional_principal(
    request: Request, session: Session = Depends(get_session)
) -> Principal | None:
    token = bearer_token(request)
    principal = resolve(request, session, token)
    if token and principal is None:
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


def page_principal(request: Request, session: Session = Depends(get_session)) -> Principal | None:
    """Pages: the bearer header, else the cookie. ``?token=`` is handled by a redirect."""
    token = bearer_token(request) or request.cookies.get(COOKIE)
    return resolve(request, session, token)
