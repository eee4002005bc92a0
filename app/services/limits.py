"""What an upload may be before it is sent: the phase's size cap, the accepted types of
the task, the quota and allowances left. A client asks first, so that an upload the
server would refuse is refused before its bytes travel."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import Submission, utcnow
from app.security import Principal
from app.services.allowances import allowance_summary
from app.services.quota import COUNTED_STATES, QUOTA_WINDOW
from app.services.submissions import precheck_submission
from app.settings import Settings

# what the upload may be, per task (recognised by its first bytes, not its name)
_ARCHIVES = ["application/zip", "application/x-tar", "application/gzip (a .tar.gz)"]
ACCEPTED_TYPES: dict[int, list[str]] = {
    1: _ARCHIVES,
    2: ["text/csv", "application/json", *_ARCHIVES],
    3: ["text/csv", "application/json", *_ARCHIVES],
}


def _quota_used(session: Session, phase_id: int, team_id: int, task: int, now: datetime) -> int:
    """Real submissions counted by the daily quota in the window (as
    :func:`app.services.quota.check_quota` counts them)."""
    return int(
        session.scalar(
            select(func.count(Submission.id)).where(
                Submission.team_id == team_id,
                Submission.phase_id == phase_id,
                Submission.task == task,
                Submission.dry_run.is_(False),
                Submission.status.in_(COUNTED_STATES),
                Submission.submitted_at > now - QUOTA_WINDOW,
            )
        )
        or 0
    )


def submission_limits(
    session: Session,
    settings: Settings,
    principal: Principal,
    phase_name: str,
    task: int,
    *,
    dry_run: bool,
    size: int | None = None,
) -> dict[str, Any]:
    """The limits an upload of ``principal`` to ``phase_name``/``task`` meets; raises the
    error the upload itself would get (unknown phase or task, closed phase, quota,
    allowances, with ``size`` the dry-run bytes) before any byte is sent."""
    phase = precheck_submission(session, principal, phase_name, task, dry_run=dry_run, size=size)
    team_id = principal.team_id or 0
    now = utcnow()
    used = _quota_used(session, phase.id, team_id, task, now)
    allowances = allowance_summary(session, phase, team_id, task, now=now)
    return {
        "phase": phase.name,
        "task": task,
        "dry_run": dry_run,
        "max_upload_bytes": settings.max_upload_bytes,
        "accepted_types": ACCEPTED_TYPES[task],
        "quota": {
            "limit": phase.daily_limit,
            "used": used,
            "left": max(0, phase.daily_limit - used),
        },
        "dry_runs": allowances["dry_runs"],
        "failed": allowances["failed"],
    }
