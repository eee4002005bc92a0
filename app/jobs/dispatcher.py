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

import abc
import logging
import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.db.models import FAILED, QUEUED, RUNNING, Submission, utcnow
from app.db.session import get_engine, session_factory, session_scope
from app.jobs.runner import run_job, warm_up
from app.services import recover_pending
from app.settings import Settings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2


class Dispatcher(abc.ABC):
    """Runs judging jobs somewhere. ``submit`` must not block on the job."""

    name = "abstract"

    def start(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources (pools, connections). Called once at service start-up."""

    @abc.abstractmethod
    def submit(self, submission_id: int) -> None:
        """Queue the job of a submission whose row is committed with status ``queued``."""

    def shutdown(self, *, wait: bool = True) -> None:  # noqa: B027 - optional hook
        """Release resources. Jobs not finished stay ``queued``/``running`` in the DB and
        are re-queued at the next start-up."""

    def in_flight(self) -> set[int] | None:
        """Ids this dispatcher holds (queued or running), or None when it cannot tell.

        The service's sweeper re-submits ``queued`` rows that no dispatcher holds (e.g.
        queued by ``admin phase rescore`` from another process); None turns it off.
        """
        return None

    def recover_pending(self, session: Session) -> list[int]:
        """Start-up: the ids to submit again. By default rows left ``running`` (by this
        service's own judges, which died with it) go back to ``queued``, and every
        ``queued`` row is returned."""
        return recover_pending(session)


class LocalDispatcher(Dispatcher):
    """A bounded ``ProcessPoolExecutor`` (spawn context by default) running ``run_job``.

    A worker that dies (out of memory, a crash in native code) breaks the pool: the pool
    is replaced, and each affected submission is queued again, or marked failed after
    ``MAX_ATTEMPTS`` attempts.
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
        self._futures: dict[Future[str], int] = {}
        self._closed = False

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
            self._closed = False
        log.info("local dispatcher: %d judging process(es)", self.max_workers)

    def submit(self, submission_id: int) -> None:
        with self._lock:
            if self._closed:
                log.warning("dispatcher closed; submission %d stays queued", submission_id)
                return
            if self._executor is None:
                raise RuntimeError("LocalDispatcher.start() was not called")
            try:
                fut = self._executor.submit(run_job, submission_id, self.settings_dict)
            except BrokenProcessPool:
                self._replace_executor_locked()
                fut = self._executor.submit(run_job, submission_id, self.settings_dict)
            self._futures[fut] = submission_id
        fut.add_done_callback(self._done)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._futures)

    def in_flight(self) -> set[int]:
        with self._lock:
            return set(self._futures.values())

    def _replace_executor_locked(self) -> None:
        old = self._executor
        self._executor = self.make_executor(self.max_workers, self.context, self.settings.log_level)
        self._owns_executor = True
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        log.warning("local dispatcher: judging pool broken; started a new one")

    def _done(self, fut: Future[str]) -> None:
        with self._lock:
            sid = self._futures.pop(fut, None)
        if sid is None or fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            return
        if isinstance(exc, BrokenProcessPool):
            self._after_crash(sid)
            return
        log.error("submission %d: job raised %r", sid, exc)
        self._mark_failed(sid, "internal error while scoring; the organizers have been notified")

    def _after_crash(self, sid: int) -> None:
        if self._closed:
            return
        sf = session_factory(get_engine(self.settings.db_url))
        with session_scope(sf) as s:
            sub = s.get(Submission, sid)
            if sub is None:
                return
            if sub.status == RUNNING and sub.attempts >= MAX_ATTEMPTS:
                sub.status = FAILED
                sub.finished_at = utcnow()
                sub.errors = [
                    {
                        "case": "",
                        "kind": "limit",
                        "message": "the judging process stopped unexpectedly while scoring this "
                        "submission (out of memory or a crash); check the image sizes and types",
                    }
                ]
                log.error("submission %d: judging process died %d times; failed", sid, sub.attempts)
                return
            if sub.status == RUNNING:
                sub.status = QUEUED
            requeue = sub.status == QUEUED
        if requeue:
            with self._lock:
                ex = self._executor
                if ex is not None and getattr(ex, "_broken", False):
                    self._replace_executor_locked()
            self.submit(sid)

    def _mark_failed(self, sid: int, message: str) -> None:
        try:
            sf = session_factory(get_engine(self.settings.db_url))
            with session_scope(sf) as s:
                s.execute(
                    update(Submission)
                    .where(Submission.id == sid, Submission.status.in_((QUEUED, RUNNING)))
                    .values(
                        status=FAILED,
                        finished_at=utcnow(),
                        errors=[{"case": "", "kind": "internal", "message": message}],
                    )
                )
        except Exception:
            log.exception("submission %d: could not mark failed", sid)

    def shutdown(self, *, wait: bool = True) -> None:
        with self._lock:
            self._closed = True
            ex, owns = self._executor, self._owns_executor
            futures = list(self._futures)
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


def make_dispatcher(settings: Settings) -> Dispatcher:
    if settings.dispatcher == "local":
        return LocalDispatcher(settings)
    if settings.dispatcher == "celery":
        try:
            from app.jobs.celery_dispatcher import CeleryDispatcher
        except ImportError as e:
            raise RuntimeError(
                f"HECKTOR_DISPATCHER=celery needs the worker extra ({e}); install "
                "hecktor-eval[worker], or use HECKTOR_DISPATCHER=local"
            ) from e
        return CeleryDispatcher(settings)
    raise RuntimeError(f"unknown dispatcher {settings.dispatcher!r}")
