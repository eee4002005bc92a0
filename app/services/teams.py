"""Teams and their tokens, and the organizer token."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import TypedDict

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import (
    ApiToken,
    Submission,
    Team,
)
from app.errors import BadRequest, Conflict, NotFound
from app.security import ORGANIZER, TEAM, issue_token, revoke_tokens

log = logging.getLogger(__name__)


TEAM_RE = re.compile(r"^[^\x00-\x1f\x7f/\\<>]{1,64}$")


def get_team(session: Session, name: str) -> Team:
    team = session.scalars(select(Team).where(Team.name == name)).first()
    if team is None:
        raise NotFound(f"no team named {name!r}")
    return team


def init_organizer_token(session: Session) -> str:
    """Revoke earlier organizer tokens stored in the DB and issue a new one."""
    revoke_tokens(session, role=ORGANIZER)
    return issue_token(session, role=ORGANIZER)


def create_team(session: Session, name: str) -> tuple[Team, str]:
    name = name.strip()
    if not TEAM_RE.match(name):
        raise BadRequest(
            f"team name {name!r} is not allowed: 1-64 printable characters, no / \\ < >"
        )
    if session.scalars(select(Team).where(Team.name == name)).first() is not None:
        raise Conflict(f"a team named {name!r} exists already")
    team = Team(name=name)
    session.add(team)
    session.flush()
    token = issue_token(session, role=TEAM, team=team)
    return team, token


def rotate_team_token(session: Session, name: str) -> str:
    team = get_team(session, name)
    revoke_tokens(session, team=team)
    return issue_token(session, role=TEAM, team=team)


class TeamSummary(TypedDict):
    """A team and how many submissions it made."""

    id: int
    name: str
    created_at: datetime
    submissions: int


def list_teams(session: Session) -> list[TeamSummary]:
    """Every team by name, with its number of submissions."""
    rows = session.execute(
        select(Team, func.count(Submission.id))
        .outerjoin(Submission, Submission.team_id == Team.id)
        .group_by(Team.id)
        .order_by(Team.name)
    ).all()
    return [
        {"id": t.id, "name": t.name, "created_at": t.created_at, "submissions": n} for t, n in rows
    ]


def token_count(session: Session) -> int:
    return session.scalar(select(func.count(ApiToken.id))) or 0
