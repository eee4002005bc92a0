"""``HECKTOR_DISPATCHER=celery``: the service publishes jobs to Redis; ``hecktor-eval
worker`` processes on any number of machines judge them.

Each message is a ticket, "judge one job", carrying only the id of the submission it
was published for; the worker that takes it judges the job that is the fairest to
start at that moment, chosen from the database (:func:`app.jobs.celery_app.judge_next`:
re-scoring last, a team's second job after another team's first). The database row
stays the source of truth: workers claim rows under a PostgreSQL advisory lock
(:mod:`app.jobs.locks`) with a conditional update, so any number of tickets lead to
one judging per row, and a ticket re-delivered after its worker died claims the
orphaned ``running`` row again.

Beside publishing, the dispatcher keeps a small maintenance thread in the service:

- ids whose publication failed (Redis down) are published again;
- **orphans**: a ``running`` row whose job lock nobody holds (its worker is gone) and
  that stays so for two looks in a row is published again. The broker re-delivers the
  message of a dead worker too, after the visibility timeout; this is the faster path,
  and the backstop for a message that was lost. Either way the claim decides, so the
  second copy is skipped.

At start-up (see :meth:`recover_pending`) ``queued`` rows and orphans are published
again *without* putting ``running`` rows back to ``queued``: workers on other machines
may be judging them right now.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from kombu.utils.url import maybe_sanitize_url
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.db.models import KIND_ALGORITHM, KIND_PREDICTIONS, QUEUED, Submission
from app.db.session import get_engine, session_factory, session_scope
from app.jobs.base import Dispatcher
from app.jobs.celery_app import algorithm_time_limit, make_celery_app, queue_of, send_judge
from app.jobs.claims import orphaned_running_ids, queued_ids
from app.settings import Settings

log = logging.getLogger(__name__)


def require_postgresql(settings: Settings) -> None:
    if make_url(settings.db_url).get_backend_name() != "postgresql":
        raise RuntimeError(
            "HECKTOR_DISPATCHER=celery needs PostgreSQL (HECKTOR_DATABASE_URL="
            "postgresql+psycopg://...): workers on several machines share one database, and "
            "the job of a worker that died is claimed again through a PostgreSQL lock; "
            "use HECKTOR_DISPATCHER=local with SQLite"
        )


class CeleryDispatcher(Dispatcher):
    """Publishes one ``hecktor.judge`` ticket per queued submission to the broker;
    judges nothing itself."""

    name = "celery"

    def __init__(self, settings: Settings, *, celery: Any = None) -> None:
        require_postgresql(settings)
        self.settings = settings
        self.celery = celery or make_celery_app(settings)
        self.queue = settings.celery_queue
        self._lock = threading.Lock()
        self._unsent: set[int] = set()
        self._suspects: set[int] = set()  # orphans seen at the previous look
        self._republished: dict[int, float] = {}  # orphan id -> when it was last published
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- Dispatcher ---------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        interval = self.settings.sweep_interval
        if interval > 0 and self._thread is None:
            self._thread = threading.Thread(
                target=self._maintain, args=(interval,), name="celery-dispatcher", daemon=True
            )
            self._thread.start()
        log.info(
            "celery dispatcher: queue %r on %s",
            self.queue,
            maybe_sanitize_url(self.settings.broker_url),
        )

    def _kind_of(self, submission_id: int) -> tuple[str, int | None]:
        """The submission's kind, and for an algorithm the hard time limit of its ticket."""
        sf = session_factory(get_engine(self.settings.db_url))
        with session_scope(sf) as s:
            sub = s.get(Submission, submission_id)
            if sub is None or sub.kind != KIND_ALGORITHM:
                return KIND_PREDICTIONS, None
            return KIND_ALGORITHM, algorithm_time_limit(self.settings, sub.phase)

    def submit(self, submission_id: int) -> None:
        try:
            kind, limit = self._kind_of(submission_id)
            send_judge(
                self.celery,
                submission_id,
                queue_of(self.settings, kind),
                kind,
                time_limit=limit,
            )
        except Exception:
            log.exception(
                "submission %d: could not publish its job; retrying in the background",
                submission_id,
            )
            with self._lock:
                self._unsent.add(submission_id)
            return
        with self._lock:
            self._unsent.discard(submission_id)

    @property
    def unsent(self) -> set[int]:
        """Ids whose publication failed and is retried by the maintenance thread."""
        with self._lock:
            return set(self._unsent)

    def shutdown(self, *, wait: bool = True) -> None:
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None and wait:
            t.join(timeout=5)

    def in_flight(self) -> set[int] | None:
        return None  # the broker holds the queue; recovery is done by `_maintain`

    def recover_pending(self, session: Session) -> list[int]:
        """Start-up: queued rows plus orphaned running rows, all left as they are."""
        queued = queued_ids(session)
        orphans = orphaned_running_ids(session)
        if orphans:
            log.warning(
                "%d submission(s) left running by a worker that is gone: %s",
                len(orphans),
                orphans[:20],
            )
        return sorted(set(queued) | set(orphans))

    # -- maintenance --------------------------------------------------------------------
    def _maintain(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.maintain_once()
            except Exception:
                log.exception("celery dispatcher: maintenance failed; retrying")

    def maintain_once(self) -> list[int]:
        """One look: publish failed publications and orphans seen twice. Returns the ids sent."""
        with self._lock:
            unsent = sorted(self._unsent)
        sf = session_factory(get_engine(self.settings.db_url))
        with session_scope(sf) as s:
            orphans = set(orphaned_running_ids(s))
            still_queued = (
                set(
                    s.scalars(
                        select(Submission.id).where(
                            Submission.id.in_(unsent), Submission.status == QUEUED
                        )
                    )
                )
                if unsent
                else set()
            )
        with self._lock:
            self._unsent &= still_queued | orphans
        now = time.monotonic()
        cooldown = self.settings.visibility_timeout  # no pile-up while no worker runs
        self._republished = {
            k: t for k, t in self._republished.items() if k in orphans and now - t < cooldown
        }
        confirmed = (orphans & self._suspects) - set(self._republished)
        self._suspects = orphans - confirmed
        self._republished.update(dict.fromkeys(confirmed, now))
        sent = sorted(still_queued | confirmed)
        for sid in sent:
            if sid in confirmed:
                log.warning("submission %d: its worker is gone; publishing its job again", sid)
            self.submit(sid)
        return sent
