"""Retention: the uploads of failed submissions and of dry runs are deleted after
``Phase.retention_days`` days; scored uploads are kept (re-scoring needs them).

What is deleted is the stored archive, the folder ``submissions/<id>/``; the row
stays, with its errors or its validation result, and ``Submission.purged_at`` says
when its upload went. A purged submission is never re-scored
(:func:`app.services.submissions.rescore` skips it).

Which uploads:

- dry runs that ended (``valid`` or ``failed``);
- real submissions that failed through their own fault. A failure of the platform
  (every error of a platform kind, :data:`app.services.allowances.PLATFORM_ERROR_KINDS`) keeps
  its upload, so that the organizers can re-score it once the platform is fixed.

Age counts from when the judging ended (``finished_at``, else ``submitted_at``).

A pass (:func:`purge`) marks a row purged with a conditional update first (still
finished, not purged yet), commits, and only then deletes the folder: a submission
queued again meanwhile (re-scoring) is left alone. If the folder cannot be deleted
the mark is taken back, and the next pass tries again. Each pass handles at most
``limit`` submissions; the service runs passes at start-up and every
``HECKTOR_RETENTION_INTERVAL`` seconds (:class:`RetentionThread`), and
``hecktor-eval admin purge`` runs them by hand.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import FAILED, VALID, Phase, Submission, Team, utcnow
from app.db.session import rowcount, session_scope
from app.services.allowances import is_team_failure
from app.settings import Settings

log = logging.getLogger(__name__)

# rows read per query while looking for uploads to delete
SCAN_BATCH = 500


@dataclass(frozen=True)
class Purged:
    """One deleted upload."""

    submission_id: int
    team: str
    phase: str
    task: int
    dry_run: bool
    status: str
    size_bytes: int
    ended_at: datetime
    path: str  # the folder, relative to the data dir


@dataclass
class PurgeReport:
    purged: list[Purged] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (id, reason) kept for now
    more: bool = False  # the pass stopped at its limit; more uploads are due

    @property
    def bytes(self) -> int:
        return sum(p.size_bytes for p in self.purged)


def _ended(sub: Submission) -> datetime:
    return sub.finished_at or sub.submitted_at


def _due(session: Session, now: datetime, limit: int) -> Iterator[tuple[Submission, str, str]]:
    """Submissions whose upload is due for deletion, oldest id first, with their team
    and phase names; at most ``limit``."""
    phases = session.execute(select(Phase.id, Phase.retention_days)).all()
    found = 0
    for phase_id, days in phases:
        if days is None or days < 0:
            continue
        cutoff = now - timedelta(days=int(days))
        after = 0
        while found < limit:
            rows = session.execute(
                select(Submission, Team.name, Phase.name)
                .join(Team, Team.id == Submission.team_id)
                .join(Phase, Phase.id == Submission.phase_id)
                .where(
                    Submission.phase_id == phase_id,
                    Submission.id > after,
                    Submission.purged_at.is_(None),
                    or_(
                        Submission.status == FAILED,
                        Submission.dry_run.is_(True) & (Submission.status == VALID),
                    ),
                    func.coalesce(Submission.finished_at, Submission.submitted_at) < cutoff,
                )
                .order_by(Submission.id)
                .limit(SCAN_BATCH)
            ).all()
            if not rows:
                break
            for sub, team, phase in rows:
                after = sub.id
                if not sub.dry_run and not is_team_failure(sub.errors):
                    continue  # a platform failure: kept for re-scoring
                yield sub, team, phase
                found += 1
                if found >= limit:
                    return


def purge(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    limit: int = 200,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PurgeReport:
    """Delete the uploads that are due (at most ``limit``); with ``dry_run`` only list
    them. Commits through ``sessions``, one transaction per upload."""
    now = now or utcnow()
    report = PurgeReport()
    due = _due_items(sessions, settings, now, limit + 1)
    report.more = len(due) > limit
    due = due[:limit]
    if dry_run:
        report.purged = due
        return report
    for item in due:
        _purge_one(sessions, settings, item, now, report)
    if report.purged:
        log.info(
            "retention: deleted %d upload(s) of failed submissions and dry runs (%d bytes)",
            len(report.purged),
            report.bytes,
        )
    return report


def _due_items(
    sessions: sessionmaker[Session], settings: Settings, now: datetime, limit: int
) -> list[Purged]:
    with session_scope(sessions) as s:
        return [
            Purged(
                submission_id=sub.id,
                team=team,
                phase=phase,
                task=sub.task,
                dry_run=sub.dry_run,
                status=sub.status,
                size_bytes=int(sub.size_bytes or 0),
                ended_at=_ended(sub),
                path=f"{settings.submissions_dir.name}/{sub.id}",
            )
            for sub, team, phase in _due(s, now, limit)
        ]


def _purge_one(
    sessions: sessionmaker[Session],
    settings: Settings,
    item: Purged,
    now: datetime,
    report: PurgeReport,
) -> None:
    """Mark the row purged (unless it changed meanwhile), then delete its folder; a
    folder that cannot be deleted unmarks the row and is reported."""
    with session_scope(sessions) as s:
        res = s.execute(
            update(Submission)
            .where(
                Submission.id == item.submission_id,
                Submission.status == item.status,
                Submission.purged_at.is_(None),
            )
            .values(purged_at=now)
        )
        if rowcount(res) != 1:
            return  # queued again, or purged by another process meanwhile
    folder = settings.submissions_dir / str(item.submission_id)
    try:
        if folder.exists():
            shutil.rmtree(folder)
    except OSError as exc:
        log.warning("submission %d: could not delete %s: %s", item.submission_id, folder, exc)
        report.failed.append((item.submission_id, str(exc)))
        with session_scope(sessions) as s:
            s.execute(
                update(Submission).where(Submission.id == item.submission_id).values(purged_at=None)
            )
        return
    report.purged.append(item)


class RetentionThread:
    """Runs :func:`purge` once at start and then every ``settings.retention_interval``
    seconds, in a daemon thread of the service (a pass at a time, each bounded by
    ``settings.retention_batch``; while a pass hits its bound the next one follows at
    once). ``retention_interval`` 0 turns it off."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings
        self.passes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.settings.retention_interval <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        wait = 0.0
        while not self._stop.wait(wait):
            try:
                report = purge(self.sessions, self.settings, limit=self.settings.retention_batch)
                more = report.more
            except Exception:
                log.exception("retention pass failed; retrying later")
                more = False
            self.passes += 1
            wait = 0.0 if more else self.settings.retention_interval

    def stop(self) -> None:
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None:
            t.join(timeout=10)
