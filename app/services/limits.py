"""What an upload may be before it is sent: the phase's size cap, the accepted types of
the task, the quota and allowances left. A client asks first, so that an upload the
server would refuse is refused before its bytes travel."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.db.models import utcnow
from app.security import Principal
from app.services.allowances import allowance_summary
from app.services.quota import counted_submission_times
from app.services.submissions import precheck_submission
from app.settings import Settings

# what the upload may be, per task (recognised by its first bytes, not its name)
_ARCHIVES = ["application/zip", "application/x-tar", "application/gzip (a .tar.gz)"]
ACCEPTED_TYPES: dict[int, list[str]] = {
    1: _ARCHIVES,
    2: ["text/csv", "application/json", *_ARCHIVES],
    3: ["text/csv", "application/json", *_ARCHIVES],
}


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
    used = len(counted_submission_times(session, phase, team_id, task, now=now))
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
