"""Bearer tokens: random, shown once, stored as SHA-256, compared in constant time.

Browser sessions: the login form trades a token for a random session id (the cookie),
stored as its SHA-256 with the hash of the token that signed in, a CSRF token and an
expiry. A session is valid while it is neither expired nor revoked *and* its token still
authenticates, so logout, an expired session and a rotated or revoked token all end it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.db.models import ApiToken, Team, WebSession, utcnow

ORGANIZER = "organizer"
TEAM = "team"


def new_token() -> str:
    """256 random bits, URL-safe. Never starting with '-', so that command lines such as
    ``--token <token>`` cannot mistake it for an option."""
    while True:
        token = secrets.token_urlsafe(32)
        if not token.startswith("-"):
            return token


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: an organizer, or a team (with its id and name)."""

    role: str
    team_id: int | None = None
    team_name: str | None = None

    @property
    def is_organizer(self) -> bool:
        return self.role == ORGANIZER


#: the organizer, for the service's own reads (freezing, reports, precomputed analyses)
ORGANIZER_PRINCIPAL = Principal(ORGANIZER)


def issue_token(session: Session, *, role: str, team: Team | None = None) -> str:
    """Create a token, store its hash, return the token itself (shown once)."""
    if role not in (ORGANIZER, TEAM):
        raise ValueError(f"unknown role {role!r}")
    if (role == TEAM) != (team is not None):
        raise ValueError("a team token needs a team; an organizer token must not have one")
    token = new_token()
    session.add(
        ApiToken(token_sha256=token_hash(token), role=role, team_id=team.id if team else None)
    )
    return token


def authenticate(
    session: Session, token: str | None, organizer_token: str | None
) -> Principal | None:
    """The principal of ``token``, or None. Every comparison is constant-time."""
    if not token or len(token) > 512:
        return None
    return _principal_of_digest(session, token_hash(token), organizer_token)


def _principal_of_digest(
    session: Session, digest: str, organizer_token: str | None
) -> Principal | None:
    if organizer_token and hmac.compare_digest(digest, token_hash(organizer_token)):
        return ORGANIZER_PRINCIPAL
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_sha256 == digest, ApiToken.revoked_at.is_(None))
    ).first()
    if row is None or not hmac.compare_digest(row.token_sha256, digest):
        return None
    if row.role == ORGANIZER:
        return ORGANIZER_PRINCIPAL
    team = session.get(Team, row.team_id) if row.team_id is not None else None
    if team is None:
        return None
    return Principal(TEAM, team_id=team.id, team_name=team.name)


@dataclass(frozen=True)
class NewWebSession:
    """A session just opened: the cookie value (shown to the browser only) and its CSRF token."""

    sid: str
    csrf_token: str
    max_age: int


def open_web_session(
    session: Session, principal: Principal, token: str, *, hours: float
) -> NewWebSession:
    """Store a new browser session for ``principal``, signed in with ``token``. Sessions
    that ended more than a day ago are deleted on the way."""
    now = utcnow()
    session.execute(delete(WebSession).where(WebSession.expires_at < now - timedelta(days=1)))
    sid = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            sid_sha256=token_hash(sid),
            csrf_token=csrf,
            role=principal.role,
            team_id=principal.team_id,
            token_sha256=token_hash(token),
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    )
    return NewWebSession(sid, csrf, max_age=int(hours * 3600))


def web_session_principal(
    session: Session, sid: str | None, organizer_token: str | None
) -> tuple[Principal, str] | None:
    """The principal and CSRF token of the live session ``sid``, or None (no such
    session, expired, revoked, or its token no longer authenticates)."""
    if not sid or len(sid) > 128:
        return None
    row = session.scalars(
        select(WebSession).where(
            WebSession.sid_sha256 == token_hash(sid),
            WebSession.revoked_at.is_(None),
            WebSession.expires_at > utcnow(),
        )
    ).first()
    if row is None:
        return None
    principal = _principal_of_digest(session, row.token_sha256, organizer_token)
    if principal is None or principal.role != row.role or principal.team_id != row.team_id:
        return None
    return principal, row.csrf_token


def revoke_web_session(session: Session, sid: str) -> bool:
    """End the session ``sid`` (logout). True if a live session was ended."""
    result = session.execute(
        update(WebSession)
        .where(WebSession.sid_sha256 == token_hash(sid), WebSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0))


def revoke_tokens(session: Session, *, team: Team | None = None, role: str | None = None) -> int:
    """Revoke the matching live tokens and end the browser sessions they signed in."""
    q = select(ApiToken).where(ApiToken.revoked_at.is_(None))
    if team is not None:
        q = q.where(ApiToken.team_id == team.id)
    if role is not None:
        q = q.where(ApiToken.role == role)
    rows = list(session.scalars(q))
    now = utcnow()
    for r in rows:
        r.revoked_at = now
    if rows:
        session.execute(
            update(WebSession)
            .where(
                WebSession.token_sha256.in_([r.token_sha256 for r in rows]),
                WebSession.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
    return len(rows)
