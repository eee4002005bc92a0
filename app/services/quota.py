"""The daily submission quota: per team, phase and task over the last 24 hours."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import (
    QUEUED,
    RECEIVED,
    RUNNING,
    SCORED,
    Phase,
    Submission,
    utcnow,
)
from app.errors import QuotaExceeded, problem

log = logging.getLogger(__name__)


QUOTA_WINDOW = timedelta(hours=24)


COUNTED_STATES = (RECEIVED, QUEUED, RUNNING, SCORED)


def _fmt_delta(d: timedelta) -> str:
    secs = max(0, int(d.total_seconds()))
    h, rem = divmod(secs, 3600)
    m = rem // 60
    return f"{h} h {m:02d} min" if h else f"{m} min" if m else f"{secs} s"


def counted_submission_times(
    session: Session, phase: Phase, team_id: int, task: int, *, now: datetime | None = None
) -> list[datetime]:
    """When the submissions the quota counts now were made, oldest first: real ones
    (not dry runs) that did not fail, in the last 24 hours, per team, phase and task."""
    since = (now or utcnow()) - QUOTA_WINDOW
    return list(
        session.scalars(
            select(Submission.submitted_at)
            .where(
                Submission.team_id == team_id,
                Submission.phase_id == phase.id,
                Submission.task == task,
                Submission.dry_run.is_(False),
                Submission.status.in_(COUNTED_STATES),
                Submission.submitted_at > since,
            )
            .order_by(Submission.submitted_at)
        )
    )


def check_quota(
    session: Session, phase: Phase, team_id: int, task: int, *, now: datetime | None = None
) -> None:
    """Raise :class:`QuotaExceeded` naming when the next slot opens.

    The window is the last 24 hours, per team, phase and task; failed submissions and
    dry runs do not count.
    """
    now = now or utcnow()
    limit = phase.daily_limit
    times = counted_submission_times(session, phase, team_id, task, now=now)
    if len(times) < limit:
        return
    if limit == 0:
        raise QuotaExceeded(
            f"phase {phase.name!r} accepts no submissions for task {task} (daily limit 0)",
            [problem("daily limit is 0", kind="quota")],
        )
    opens = times[len(times) - limit] + QUOTA_WINDOW
    when = opens.isoformat(timespec="seconds").replace("+00:00", "Z")
    msg = (
        f"daily limit reached: {len(times)} of {limit} submissions for phase {phase.name!r}, "
        f"task {task} in the last 24 hours; the next slot opens at {when} "
        f"(in {_fmt_delta(opens - now)}). Failed submissions and dry runs do not count."
    )
    retry = max(1, int((opens - now).total_seconds()) + 1)
    raise QuotaExceeded(
        msg, [problem(msg, kind="quota")], headers={"Retry-After": str(retry), "X-Next-Slot": when}
    )
