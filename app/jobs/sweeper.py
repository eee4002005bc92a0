"""The sweeper: finds work that nobody does any more and leftovers that nobody owns.

It runs in the serving process, with either dispatcher, every ``sweep_interval``
seconds (:meth:`Sweeper.run`), and once at start-up (:meth:`Sweeper.startup`):

- **orphaned ``running`` rows**: a row whose judge is gone, i.e. no live judge holds
  it. A judge holds a row through any of: its PostgreSQL job lock
  (:func:`app.jobs.locks.held_submission_ids`), the ``flock`` on its job folder
  (:func:`app.jobs.locks.live_job_ids`, on this machine, also across processes), or
  the local dispatcher's own list of jobs in its pool (``Dispatcher.in_flight``). Seen
  orphaned at two looks in a row with the same attempt number, it goes back to
  ``queued`` and is dispatched again; after :data:`app.jobs.claims.MAX_LOST_JUDGES`
  attempts it is failed instead, as a platform failure (error kind ``platform``,
  refunded). Judges write their lock before they claim, and the rows are read before
  the locks, so a row claimed between two reads is never taken from a live judge;
  every change is conditional on the attempt number that was seen;
- **``queued`` rows nobody dispatches**: with the local dispatcher, rows its pool does
  not hold (queued by another process, e.g. ``admin phase rescore``, or left behind
  by a failed dispatch) are submitted; under Celery, where the broker holds the queue
  and cannot be asked cheaply, a row still ``queued`` ``queued_grace`` seconds after
  it was last published (a lost message, a flushed Redis) is published again. A
  duplicate message is harmless: the claim decides, and the second copy is skipped;
- **job folders** (``<data_dir>/tmp/job-<id>-*``) whose owner lock is free: left by a
  killed job;
- **partial uploads** (``<data_dir>/incoming/*.part``) untouched for an hour, and
  **submission folders without a row** (``<data_dir>/submissions/<id>/``, left by an
  upload whose row was never committed) older than ten minutes. At the start-up of a
  single-process service (SQLite) nothing else can be writing them, so all go.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import QUEUED, Submission
from app.db.session import session_scope
from app.jobs import claims
from app.jobs.base import Dispatcher
from app.jobs.claims import MAX_LOST_JUDGES
from app.jobs.locks import held_submission_ids, live_job_ids, remove_orphaned_job_dirs
from app.settings import Settings
from app.storage import remove_stale_parts

log = logging.getLogger(__name__)

QUEUED_GRACE = 300.0  # Celery: seconds a row may stay queued after its last publication
PART_GRACE = 3600.0  # a live upload writes at least every few seconds
FOLDER_GRACE = 600.0  # a submission folder's row is committed milliseconds after it is made
_ID_BATCH = 500


@dataclass
class SweepReport:
    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    dispatched: list[int] = field(default_factory=list)
    tmp_removed: int = 0
    parts_removed: int = 0
    folders_removed: int = 0

    def __bool__(self) -> bool:
        return bool(
            self.requeued
            or self.failed
            or self.dispatched
            or self.tmp_removed
            or self.parts_removed
            or self.folders_removed
        )


class Sweeper:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        dispatcher: Dispatcher,
        *,
        queued_grace: float = QUEUED_GRACE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.dispatcher = dispatcher
        self.queued_grace = queued_grace
        self.clock = clock
        self._running_suspects: dict[int, int] = {}  # id -> attempts at the last look
        self._queued_suspects: set[int] = set()  # local: queued, not held at the last look
        self._published: dict[int, float] = {}  # Celery: queued id -> last (re)publication

    # -- the loop -----------------------------------------------------------------------
    async def run(self, interval: float) -> None:
        """Sweep every ``interval`` seconds until cancelled; a failed look is logged."""
        from starlette.concurrency import run_in_threadpool

        while True:
            await asyncio.sleep(interval)
            try:
                await run_in_threadpool(self.sweep_once)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweeper failed; retrying in %.0f s", interval)

    def startup(self) -> SweepReport:
        """Once, before serving: leftovers of earlier processes (orphaned rows are the
        dispatcher's ``recover_pending``)."""
        single = self._single_process()
        report = SweepReport()
        report.tmp_removed = self.sweep_job_dirs()
        report.parts_removed = remove_stale_parts(
            self.settings.incoming_dir, older_than=0.0 if single else PART_GRACE
        )
        report.folders_removed = self.sweep_submission_folders(
            older_than=0.0 if single else FOLDER_GRACE
        )
        if report:
            log.info(
                "start-up sweep: removed %d job folder(s), %d partial upload(s), %d submission "
                "folder(s) without a row",
                report.tmp_removed,
                report.parts_removed,
                report.folders_removed,
            )
        return report

    def sweep_once(self) -> SweepReport:
        """One look at everything; returns what was done."""
        report = SweepReport()
        self.sweep_running(report)
        self.sweep_queued(report)
        report.tmp_removed = self.sweep_job_dirs()
        report.parts_removed = remove_stale_parts(self.settings.incoming_dir)
        report.folders_removed = self.sweep_submission_folders(older_than=FOLDER_GRACE)
        return report

    # -- rows ---------------------------------------------------------------------------
    def _single_process(self) -> bool:
        return self.settings.db_url.startswith("sqlite")

    def _live(self, held: set[int] | None) -> set[int]:
        live = set(held or ())
        live |= live_job_ids(self.settings.data_dir)
        live |= self.dispatcher.in_flight() or set()
        return live

    def sweep_running(self, report: SweepReport) -> None:
        with session_scope(self.sessions) as s:
            rows = claims.running_attempts(s)
            held = held_submission_ids(s) if rows else None  # after the rows: see the docstring
        live = self._live(held) if rows else set()
        orphans = {sid: a for sid, a in rows.items() if sid not in live}
        confirmed = {sid: a for sid, a in orphans.items() if self._running_suspects.get(sid) == a}
        self._running_suspects = {sid: a for sid, a in orphans.items() if sid not in confirmed}
        for sid, attempts in sorted(confirmed.items()):
            if attempts >= MAX_LOST_JUDGES:
                if self._fail(sid, attempts):
                    log.error(
                        "submission %d: its judge died %d times; failed (platform)", sid, attempts
                    )
                    report.failed.append(sid)
            elif self._requeue(sid, attempts):
                log.warning(
                    "submission %d: running (attempt %d) but no live judge holds it; queued again",
                    sid,
                    attempts,
                )
                report.requeued.append(sid)
                self._dispatch(sid, report)

    def _requeue(self, sid: int, attempts: int) -> bool:
        return claims.requeue(self.sessions, sid, attempts)

    def _fail(self, sid: int, attempts: int) -> bool:
        with session_scope(self.sessions) as s:
            return claims.give_up(s, sid, attempts)

    def _dispatch(self, sid: int, report: SweepReport) -> None:
        self._published[sid] = self.clock()
        self.dispatcher.submit(sid)
        report.dispatched.append(sid)

    def sweep_queued(self, report: SweepReport) -> None:
        with session_scope(self.sessions) as s:
            queued = list(
                s.scalars(
                    select(Submission.id)
                    .where(Submission.status == QUEUED)
                    .order_by(Submission.id)
                    .limit(10_000)
                )
            )
        done = set(report.dispatched)
        held = self.dispatcher.in_flight()
        if held is not None:  # the local pool: what it does not hold, nobody runs
            loose = {sid for sid in queued if sid not in held and sid not in done}
            confirmed = loose & self._queued_suspects
            self._queued_suspects = loose - confirmed
            for sid in sorted(confirmed):
                log.info("sweeper: submission %d is queued but not dispatched; dispatching", sid)
                self._dispatch(sid, report)
            return
        now = self.clock()  # the broker: publish again what waited too long since the last time
        self._published = {sid: t for sid, t in self._published.items() if sid in set(queued)}
        for sid in queued:
            if sid in done:
                continue
            last = self._published.setdefault(sid, now)
            if now - last >= self.queued_grace:
                log.warning(
                    "submission %d: queued for %.0f s since its last publication; publishing "
                    "its job again (a lost message is replaced, a duplicate is skipped)",
                    sid,
                    now - last,
                )
                self._dispatch(sid, report)

    # -- files --------------------------------------------------------------------------
    def sweep_job_dirs(self) -> int:
        """Remove job folders whose owner is gone (or that never got one)."""
        return remove_orphaned_job_dirs(self.settings.data_dir)

    def sweep_submission_folders(self, *, older_than: float) -> int:
        """Remove ``submissions/<id>/`` folders that no row has (older than ``older_than``)."""
        root = self.settings.submissions_dir
        try:
            entries = [p for p in root.iterdir() if p.name.isdigit() and p.is_dir()]
        except OSError:
            return 0
        cutoff = time.time() - older_than
        candidates: dict[int, Path] = {}
        for p in entries:
            try:
                if older_than <= 0 or p.stat().st_mtime < cutoff:
                    candidates[int(p.name)] = p
            except OSError:
                continue
        if not candidates:
            return 0
        ids = sorted(candidates)
        known: set[int] = set()
        with session_scope(self.sessions) as s:
            for i in range(0, len(ids), _ID_BATCH):
                batch = ids[i : i + _ID_BATCH]
                known |= set(s.scalars(select(Submission.id).where(Submission.id.in_(batch))))
        removed = 0
        for sid in ids:
            if sid in known:
                continue
            shutil.rmtree(candidates[sid], ignore_errors=True)
            if not candidates[sid].exists():
                log.warning("removed submissions/%d/: no submission row has it", sid)
                removed += 1
        return removed
