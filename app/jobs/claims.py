"""The submission row as a job: the state transitions judges and dispatchers share."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import RUNNING, Submission
from app.jobs.locks import held_submission_ids


def orphaned_running_ids(session: Session) -> list[int]:
    """``running`` rows whose job lock is not held by anyone (their judge is gone)."""
    held = held_submission_ids(session)
    if held is None:
        return []
    running = session.scalars(
        select(Submission.id).where(Submission.status == RUNNING).order_by(Submission.id)
    )
    return [sid for sid in running if sid not in held]
