"""Dispatch of judging jobs. The interface is :class:`Dispatcher`; the job is
:func:`app.jobs.runner.run_job`, which takes only a submission id and the settings.

``local`` (implemented here): a bounded process pool inside the service.

``celery`` (:mod:`app.jobs.celery_dispatcher`): ``CeleryDispatcher(settings)``
publishes the submission id to Redis; ``hecktor-eval worker`` processes judge.

Either way every job runs in a child process of its own with the memory and time
limits (:mod:`app.jobs.isolation`). Correctness does not depend on the dispatcher: the
database row is the source of truth, jobs claim their row (``queued -> running``, or a
``running`` row whose judge is gone) and are safe to run twice, and the service
recovers unfinished rows on start-up (:meth:`Dispatcher.recover_pending`).
"""

from __future__ import annotations

import heapq
import logging
import multiprocessing
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from sqlalchemy import select

from app.db.models import PRIORITY_NORMAL, Submission
from app.db.session import get_engine, session_factory, session_scope
from app.jobs import claims
from app.jobs.base import Dispatcher
from app.jobs.judge_cache import judging_process_ready, warm_up
from app.jobs.outcomes import INTERNAL_ERROR
from app.jobs.runner import run_job
from app.settings import Settings

log = logging.getLogger(__name__)


class LocalDispatcher(Dispatcher):
    """A bounded ``ProcessPoolExecutor`` (spawn context by default) running ``run_job``,
    with the queue kept here, not in the pool, so that the order is fair across teams.

    The pool only ever holds as many jobs as it has processes (one per judge); the
    others wait in the pending set. Whenever a judge is free it takes the pending job
    with the smallest key

        (priority, jobs of its team running now, when its team last got a judge, id)

    - ``priority`` first: an organizer's re-scoring (``PRIORITY_RESCORE``) waits for
      every team's own submissions;
    - then the team with the fewest jobs running: with several judges, a team's
      second job never starts while another team's first waits;
    - then the team served least recently: with one judge, team A's second job waits
      behind team B's first even though A's first has finished (A got a judge more
      recently than B, which never did);
    - then the submission id, i.e. first come first served within a team (only each
      team's oldest pending job of the lowest priority can be the smallest).

    A worker that dies (out of memory, a crash in native code) breaks the pool: the pool
    is replaced, and each affected submission is queued again, or marked failed after
    :data:`app.jobs.claims.MAX_POOL_CRASHES` attempts.
    """

    name = "local"

    def __init__(
        self,
        settings: Settings,
        *,
        max_workers: int | None = None,
        context: str = "spawn",
        executor: ProcessPoolExecutor | None = None,
    ) -> None:
        self.settings = settings
        self.settings_dict = settings.to_dict()
        self.max_workers = max_workers or settings.n_workers
        self.context = context
        self._executor = executor
        self._owns_executor = executor is None
        self._lock = threading.Lock()
        self._futures: dict[Future[str], tuple[int, int]] = {}  # running: -> (id, team)
        self._waiting: dict[int, list[tuple[int, int]]] = {}  # team -> heap (priority, id)
        self._waiting_ids: set[int] = set()
        self._running_per_team: Counter[int] = Counter()
        self._served: dict[int, int] = {}  # team -> sequence number of its last start
        self._starts = 0
        self._closed = False
        self._warming: list[Future[int]] = []
        # called with the id of each job judged (from the pool's callback thread)
        self.on_finished: Callable[[int], None] | None = None

    @staticmethod
    def make_executor(
        max_workers: int, context: str = "spawn", log_level: str = "info"
    ) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=max_workers,
            mp_context=multiprocessing.get_context(context),
            initializer=warm_up,
            initargs=(log_level,),
        )

    def start(self) -> None:
        with self._lock:
            if self._executor is None:
                self._executor = self.make_executor(
                    self.max_workers, self.context, self.settings.log_level
                )
                self._owns_executor = True
                self._warm_locked()
            self._closed = False
        log.info("local dispatcher: %d judging process(es)", self.max_workers)

    def _warm_locked(self) -> None:
        """Start every judging process now, so that each imports the scorer
        (:func:`app.jobs.judge_cache.warm_up`) while the server starts, not while the
        first submissions wait: the pool starts a process per task it cannot hand to an
        idle one, so one no-op task per process starts them all."""
        assert self._executor is not None
        self._warming = [
            self._executor.submit(judging_process_ready) for _ in range(self.max_workers)
        ]

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until every judging process started at :meth:`start` has imported the
        scorer; whether they all did within ``timeout`` seconds."""
        from concurrent.futures import wait

        with self._lock:
            warming = list(self._warming)
        done, not_done = wait(warming, timeout=timeout)
        return not not_done and all(f.exception() is None for f in done)

    def _lookup(self, submission_id: int) -> tuple[int, int]:
        """(priority, team id) of a submission; unknown rows sort as normal, team -1."""
        try:
            sf = session_factory(get_engine(self.settings.db_url))
            with session_scope(sf) as s:
                row = s.execute(
                    select(Submission.priority, Submission.team_id).where(
                        Submission.id == submission_id
                    )
                ).first()
        except Exception:
            log.warning("submission %d: could not read its team and priority", submission_id)
            row = None
        if row is None:
            return PRIORITY_NORMAL, -1
        return int(row.priority or 0), int(row.team_id)

    def submit(self, submission_id: int) -> None:
        priority, team = self._lookup(submission_id)
        with self._lock:
            if self._closed:
                log.warning("dispatcher closed; submission %d stays queued", submission_id)
                return
            if self._executor is None:
                raise RuntimeError("LocalDispatcher.start() was not called")
            if submission_id in self._waiting_ids:
                return  # already waiting for a judge
            self._waiting_ids.add(submission_id)
            heapq.heappush(self._waiting.setdefault(team, []), (priority, submission_id))
            started = self._fill_locked()
        self._watch(started)

    def _next_locked(self) -> int | None:
        """The team whose next job is the fairest to start (see the class docstring)."""
        best: tuple[int, int, int, int] | None = None
        best_team = None
        for team, heap in self._waiting.items():
            if not heap:
                continue
            priority, sid = heap[0]
            key = (priority, self._running_per_team[team], self._served.get(team, -1), sid)
            if best is None or key < best:
                best, best_team = key, team
        return best_team

    def _fill_locked(self) -> list[Future[str]]:
        """Start pending jobs while a judge is free. Returns the new futures, whose
        callbacks the caller adds after releasing the lock (a future that is done
        already runs its callback at once, which takes the lock)."""
        started: list[Future[str]] = []
        while len(self._futures) < self.max_workers:
            team = self._next_locked()
            if team is None:
                break
            _, sid = heapq.heappop(self._waiting[team])
            self._waiting_ids.discard(sid)
            if not self._waiting[team]:
                del self._waiting[team]
            assert self._executor is not None
            try:
                fut = self._executor.submit(run_job, sid, self.settings_dict)
            except BrokenProcessPool:
                self._replace_executor_locked()
                fut = self._executor.submit(run_job, sid, self.settings_dict)
            self._futures[fut] = (sid, team)
            self._running_per_team[team] += 1
            self._starts += 1
            self._served[team] = self._starts
            started.append(fut)
        return started

    def _watch(self, futures: list[Future[str]]) -> None:
        for fut in futures:
            fut.add_done_callback(self._done)

    @property
    def pending(self) -> int:
        """Jobs held: running and waiting for a judge."""
        with self._lock:
            return len(self._futures) + len(self._waiting_ids)

    def in_flight(self) -> set[int]:
        with self._lock:
            return {sid for sid, _ in self._futures.values()} | self._waiting_ids

    def _replace_executor_locked(self) -> None:
        old = self._executor
        self._executor = self.make_executor(self.max_workers, self.context, self.settings.log_level)
        self._owns_executor = True
        self._warm_locked()
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        log.warning("local dispatcher: judging pool broken; started a new one")

    def _done(self, fut: Future[str]) -> None:
        with self._lock:
            sid, team = self._futures.pop(fut, (None, -1))
            if sid is not None:
                self._running_per_team[team] -= 1
                if self._running_per_team[team] <= 0:
                    del self._running_per_team[team]
            started = [] if self._closed or self._executor is None else self._fill_locked()
        self._watch(started)
        if sid is None or fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            if self.on_finished is not None:
                self.on_finished(sid)
            return
        if isinstance(exc, BrokenProcessPool):
            self._after_crash(sid)
            return
        log.error("submission %d: job raised %r", sid, exc)
        self._mark_failed(sid, INTERNAL_ERROR)

    def _after_crash(self, sid: int) -> None:
        if self._closed:
            return
        if claims.after_pool_crash(session_factory(get_engine(self.settings.db_url)), sid):
            with self._lock:
                ex = self._executor
                if ex is not None and getattr(ex, "_broken", False):
                    self._replace_executor_locked()
            self.submit(sid)

    def _mark_failed(self, sid: int, message: str) -> None:
        try:
            claims.fail_unfinished(session_factory(get_engine(self.settings.db_url)), sid, message)
        except Exception:
            log.exception("submission %d: could not mark failed", sid)

    def shutdown(self, *, wait: bool = True) -> None:
        with self._lock:
            self._closed = True
            ex, owns = self._executor, self._owns_executor
            futures = list(self._futures)
            self._waiting.clear()  # they stay queued in the database
            self._waiting_ids.clear()
        for f in futures:
            f.cancel()
        if ex is None or not owns:
            return
        if wait:
            ex.shutdown(wait=True, cancel_futures=True)
            return
        processes: dict[Any, Any] = dict(getattr(ex, "_processes", None) or {})
        ex.shutdown(wait=False, cancel_futures=True)
        for p in processes.values():  # running jobs are re-queued at the next start-up
            if p.is_alive():
                p.terminate()
        for p in processes.values():
            p.join(timeout=5)
