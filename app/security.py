"""Bearer tokens: random, shown once, stored as SHA-256, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ApiToken, Team, utcnow

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
    digest = token_hash(token)
    if organizer_token and hmac.compare_digest(digest, token_hash(organizer_token)):
        return Principal(ORGANIZER)
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_sha256 == digest, ApiToken.revoked_at.is_(None))
    ).first()
    if row is None or not hmac.compare_digest(row.token_sha256, digest):
        return None
    if row.role == ORGANIZER:
        return Principal(ORGANIZER)
    team = session.get(Team, row.team_id) if row.team_id is not None else None
    if team is None:
        return None
    return Principal(TEAM, team_id=team.id, team_name=team.name)


def revoke_tokens(session: Session, *, team: Team | None = None, role: str | None = None) -> int:
    q = select(ApiToken).where(ApiToken.revoked_at.is_(None))
    if team is not None:
        q = q.where(ApiToken.team_id == team.id)
    if role is not None:
        q = q.where(ApiToken.role == role)
    rows = list(session.scalars(q))
    for r in rows:
        r.revoked_at = utcnow()
    return len(rows)
