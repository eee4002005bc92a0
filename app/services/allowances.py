"""Daily allowances of judging work beside the quota: dry runs and failed submissions.

The quota (``Phase.daily_limit``, :func:`app.services.quota.check_quota`) counts a team's
real submissions that did not fail. Two more allowances bound what a team can make
the judges do in the same window (the last 24 hours, per team, phase and task):

- **dry runs**: at most ``Phase.dry_run_limit`` dry runs, of at most
  ``Phase.dry_run_bytes`` uploaded bytes in all (the sum of ``size_bytes``, this
  upload's own size included when it is known);
- **failed submissions**: a real submission is refused once the team's failed real
  submissions of the window reach ``Phase.failed_limit`` or ``Phase.failed_bytes``.
  The refusal points to dry runs, which list every problem of an archive at no cost
  to the quota.

Only failures that are the submission's fault count: a failure whose every error is
of a platform kind (:data:`PLATFORM_ERROR_KINDS`: the judge could not write its
result, the ground truth could not be loaded, an internal error) costs the team
nothing, nor does a dry run that failed that way.

A failure is known only once its job has run, so up to ``daily_limit`` real
submissions may be judged (and fail) while the count of failures is below its limit:
failures of a window never exceed ``failed_limit - 1 + daily_limit``. Dry runs are
counted when they are uploaded, so their allowance holds exactly, also under
concurrent uploads: the caller checks under the same lock as the quota (see
:func:`app.services.submissions.register_submission`).

Functions here read through the session they are given and never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import FAILED, Phase, Submission, utcnow
from app.errors import QuotaExceeded, TooLarge, problem
from app.services.quota import _fmt_delta
from evaluator.io.sizes import human_size

WINDOW = timedelta(hours=24)
# error kinds that say the platform failed, not the submission
PLATFORM_ERROR_KINDS = frozenset({"internal", "platform"})


def is_team_failure(errors: Sequence[dict[str, Any]] | None) -> bool:
    """True when a failed submission's errors hold at least one that is its own fault."""
    return any(str(e.get("kind", "")) not in PLATFORM_ERROR_KINDS for e in errors or ())


@dataclass(frozen=True)
class Usage:
    """What a team used of one allowance in the window: uploads oldest first."""

    uploads: tuple[tuple[datetime, int], ...]  # (submitted_at, size_bytes)

    @property
    def count(self) -> int:
        return len(self.uploads)

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.uploads)

    def full(self, limit: int, byte_limit: int, *, extra: int | None) -> bool:
        """No room for one more upload of ``extra`` bytes (None: size not known yet,
        so only the bytes used so far are compared with the limit)."""
        if self.count >= limit:
            return True
        if extra is None:
            return self.bytes >= byte_limit
        return self.bytes + extra > byte_limit

    def opens_at(self, limit: int, byte_limit: int, *, extra: int | None) -> datetime | None:
        """When enough uploads have left the window for one more (None: never, within
        this window's uploads; the caller checks ``extra`` against the limit itself)."""
        for i, (at, _) in enumerate(self.uploads):
            rest = Usage(self.uploads[i + 1 :])
            if not rest.full(limit, byte_limit, extra=extra):
                return at + WINDOW
        return None


def _usage(
    session: Session,
    phase_id: int,
    team_id: int,
    task: int,
    *,
    dry_run: bool,
    failed_only: bool,
    since: datetime,
) -> Usage:
    q = select(
        Submission.submitted_at, Submission.size_bytes, Submission.status, Submission.errors
    ).where(
        Submission.team_id == team_id,
        Submission.phase_id == phase_id,
        Submission.task == task,
        Submission.dry_run.is_(dry_run),
        Submission.submitted_at > since,
    )
    if failed_only:
        q = q.where(Submission.status == FAILED)
    rows = session.execute(q.order_by(Submission.submitted_at, Submission.id)).all()
    return Usage(
        tuple(
            (r.submitted_at, int(r.size_bytes or 0))
            for r in rows
            if r.status != FAILED or is_team_failure(r.errors)
        )
    )


def dry_run_usage(
    session: Session, phase: Phase, team_id: int, task: int, *, now: datetime | None = None
) -> Usage:
    """The team's dry runs of the window (all states but platform failures)."""
    since = (now or utcnow()) - WINDOW
    return _usage(session, phase.id, team_id, task, dry_run=True, failed_only=False, since=since)


def failed_usage(
    session: Session, phase: Phase, team_id: int, task: int, *, now: datetime | None = None
) -> Usage:
    """The team's real submissions of the window that failed through their own fault."""
    since = (now or utcnow()) - WINDOW
    return _usage(session, phase.id, team_id, task, dry_run=False, failed_only=True, since=since)


def _when(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _in(at: datetime, now: datetime) -> str:
    return _fmt_delta(at - now)


def _refuse(msg: str, kind: str, opens: datetime | None, now: datetime) -> QuotaExceeded:
    headers = None
    if opens is not None:
        retry = max(1, int((opens - now).total_seconds()) + 1)
        headers = {"Retry-After": str(retry), "X-Next-Slot": _when(opens)}
    return QuotaExceeded(msg, [problem(msg, kind=kind)], headers=headers)


def _used(usage: Usage, limit: int, byte_limit: int, noun: str) -> str:
    return (
        f"{usage.count} of {limit} {noun}, {human_size(usage.bytes)} of "
        f"{human_size(byte_limit)} uploaded"
    )


def check_dry_run_allowance(
    session: Session,
    phase: Phase,
    team_id: int,
    task: int,
    *,
    size: int | None = None,
    now: datetime | None = None,
) -> None:
    """Refuse a dry run (429 with ``Retry-After``) when the team's dry runs of the window
    reach ``dry_run_limit`` or would exceed ``dry_run_bytes`` with this upload's ``size``."""
    now = now or utcnow()
    limit, byte_limit = phase.dry_run_limit, phase.dry_run_bytes
    where = f"phase {phase.name!r}, task {task}"
    if limit <= 0:
        msg = (
            f"{where} accepts no dry runs (dry-run allowance 0); submit without "
            "?dry_run=true, or ask the organizers"
        )
        raise _refuse(msg, "dry_run_allowance", None, now)
    if size is not None and size > byte_limit:
        msg = (
            f"this dry run ({human_size(size)}) is larger than the daily dry-run allowance "
            f"of {human_size(byte_limit)} for {where}; dry-run a smaller archive (e.g. a "
            "subset of the cases), or ask the organizers"
        )
        raise TooLarge(msg, [problem(msg, kind="dry_run_allowance")])
    usage = dry_run_usage(session, phase, team_id, task, now=now)
    if not usage.full(limit, byte_limit, extra=size):
        return
    opens = usage.opens_at(limit, byte_limit, extra=size)
    msg = (
        f"dry-run allowance reached: {_used(usage, limit, byte_limit, 'dry runs')} for "
        f"{where} in the last 24 hours"
    )
    if opens is not None:
        msg += f"; the next dry run is accepted from {_when(opens)} (in {_in(opens, now)})"
    raise _refuse(msg + ".", "dry_run_allowance", opens, now)


def check_failed_allowance(
    session: Session, phase: Phase, team_id: int, task: int, *, now: datetime | None = None
) -> None:
    """Refuse a real submission (429 with ``Retry-After``) once the team's failed
    submissions of the window reach ``failed_limit`` or ``failed_bytes``."""
    now = now or utcnow()
    limit, byte_limit = phase.failed_limit, phase.failed_bytes
    where = f"phase {phase.name!r}, task {task}"
    usage = failed_usage(session, phase, team_id, task, now=now)
    if not usage.full(limit, byte_limit, extra=None):
        return
    opens = usage.opens_at(limit, byte_limit, extra=None)
    msg = (
        f"too many failed submissions: {_used(usage, limit, byte_limit, 'failed submissions')} "
        f"for {where} in the last 24 hours"
    )
    if limit <= 0:
        msg = f"{where} accepts no failed submissions (failed-submission allowance 0)"
    dry = dry_run_usage(session, phase, team_id, task, now=now)
    dry_open = phase.dry_run_limit > 0 and not dry.full(
        phase.dry_run_limit, phase.dry_run_bytes, extra=None
    )
    if dry_open:
        msg += (
            "; check the archive with a dry run first (?dry_run=true, or `hecktor-eval submit "
            "--dry-run`): it lists every problem without being scored "
            f"({dry.count} of {phase.dry_run_limit} dry runs used)"
        )
        if opens is not None:
            msg += f". Submissions are accepted again from {_when(opens)} (in {_in(opens, now)})"
    else:
        dry_opens = (
            dry.opens_at(phase.dry_run_limit, phase.dry_run_bytes, extra=None)
            if phase.dry_run_limit > 0
            else None
        )
        parts = []
        if dry_opens is not None:
            parts.append(f"the next dry run from {_when(dry_opens)} (in {_in(dry_opens, now)})")
        if opens is not None:
            parts.append(f"the next submission from {_when(opens)} (in {_in(opens, now)})")
        used = _used(dry, phase.dry_run_limit, phase.dry_run_bytes, "dry runs")
        msg += f"; the dry runs are used up too ({used})"
        if parts:
            msg += "; accepted again: " + ", ".join(parts)
        candidates = [t for t in (opens, dry_opens) if t is not None]
        opens = min(candidates) if candidates else None
    raise _refuse(msg + ".", "failed_allowance", opens, now)


def check_allowances(
    session: Session,
    phase: Phase,
    team_id: int,
    task: int,
    *,
    dry_run: bool,
    size: int | None = None,
    now: datetime | None = None,
) -> None:
    """The allowance of an upload: dry runs have their own; real submissions are refused
    after too many failures. ``size`` is None before the upload body is read."""
    if dry_run:
        check_dry_run_allowance(session, phase, team_id, task, size=size, now=now)
    else:
        check_failed_allowance(session, phase, team_id, task, now=now)


class AllowanceUse(TypedDict):
    """Uploads and bytes used of one allowance, and its limits."""

    used: int
    limit: int
    bytes: int
    byte_limit: int


class AllowanceSummary(TypedDict):
    dry_runs: AllowanceUse
    failed: AllowanceUse


def allowance_summary(
    session: Session, phase: Phase, team_id: int, task: int, *, now: datetime | None = None
) -> AllowanceSummary:
    """What a team used of each allowance in the window (for pages and the CLI)."""
    now = now or utcnow()
    dry = dry_run_usage(session, phase, team_id, task, now=now)
    failed = failed_usage(session, phase, team_id, task, now=now)
    return {
        "dry_runs": {
            "used": dry.count,
            "limit": phase.dry_run_limit,
            "bytes": dry.bytes,
            "byte_limit": phase.dry_run_bytes,
        },
        "failed": {
            "used": failed.count,
            "limit": phase.failed_limit,
            "bytes": failed.bytes,
            "byte_limit": phase.failed_bytes,
        },
    }
