"""A signed-in team's standing in a phase, task by task: the quota left today and its
row on the leaderboard (rank and ranked score), as the home page shows them."""

from __future__ import annotations

from typing import Any, TypedDict

from sqlalchemy.orm import Session

from app.db.models import Phase
from app.services.quota import counted_submission_times
from app.services.records import Board

__all__ = ["TaskStanding", "quota_used", "task_standing"]


class TaskStanding(TypedDict):
    task: int
    used: int
    limit: int
    left: int
    rank: float | None
    metric: str | None
    score: Any
    submission_id: int | None


def quota_used(session: Session, phase: Phase, team_id: int, task: int) -> int:
    """Real submissions the daily quota counts now (as
    :func:`app.services.quota.check_quota` counts them)."""
    return len(counted_submission_times(session, phase, team_id, task))


def task_standing(
    session: Session,
    phase: Phase,
    team_id: int,
    team: str,
    task: int,
    board: Board | None,
    ranked_metric: str | None,
) -> TaskStanding:
    """The quota of ``team`` for ``task`` and its row of ``board`` (None: the board is
    not visible to it); ``ranked_metric`` is the score shown beside the rank."""
    used = quota_used(session, phase, team_id, task)
    rows = board["rows"] if board is not None else []
    row = next((r for r in rows if r["team"] == team), None)
    return {
        "task": task,
        "used": used,
        "limit": phase.daily_limit,
        "left": max(0, phase.daily_limit - used),
        "rank": row["rank"] if row is not None else None,
        "metric": ranked_metric if row is not None else None,
        "score": row["metrics"].get(ranked_metric) if row is not None and ranked_metric else None,
        "submission_id": row["submission_id"] if row is not None else None,
    }
