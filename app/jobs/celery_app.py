"""The Celery application of the judging workers (``HECKTOR_DISPATCHER=celery``).

``celery -A app.jobs.celery_app ...`` finds ``app`` here (configured from the
``HECKTOR_*`` environment); ``hecktor-eval worker`` starts a worker on an app made by
:func:`make_celery_app` from its settings. The one task, ``hecktor.judge``, is a
ticket: "judge one job". It carries the id of the submission whose upload published
it, but the worker judges whichever job is the fairest to start *when it takes the
ticket* (:func:`judge_next`), with the worker's own settings (database, data dir, job
limits).

Why tickets: the broker's queue is first in, first out, and its messages cannot be
reordered, so two slow jobs of team A published before team B's one would make B wait
for both. Instead every upload publishes one ticket, and a worker taking a ticket
chooses among the ``queued`` rows of the database by the same key as the local
dispatcher (:class:`app.jobs.local.LocalDispatcher`):

    (priority, the team's jobs running now, when the team last got a judge, id)

so an organizer's re-scoring (``PRIORITY_RESCORE``) waits for the teams' own
submissions, and a team's second job never starts while another team's first waits.
Tickets are interchangeable: each judges at most one job, and there are always at
least as many tickets as ``queued`` rows (one per upload, re-scoring or recovery), so
no row is left behind; a ticket that finds nothing to do is skipped.

Delivery guarantees, and where exactly-once comes from:

- ``task_acks_late``: the message is acknowledged after the job returns, so a worker
  that dies mid-job leaves it unacknowledged; Redis hands it out again once the
  visibility timeout has passed (``broker_visibility_timeout``, above the job time
  limit so that a job still running is never handed to a second worker), checked by
  every live worker each ``broker_restore_interval`` seconds. The re-delivered ticket
  first claims its own submission again if that row was left ``running`` by a judge
  that is gone, then any other such orphan, before it looks at ``queued`` rows;
- ``task_reject_on_worker_lost``: a pool process that dies (killed, out of memory)
  puts its message back at once instead of acknowledging it;
- ``worker_prefetch_multiplier = 1``: a worker reserves only the jobs it runs, so a
  long job never holds others hostage;
- the database decides who judges: :func:`~app.jobs.runner.run_job` claims the row
  under a PostgreSQL advisory lock (:mod:`app.jobs.locks`) with a conditional update
  (``queued -> running``), so two workers that chose the same row judge it once: the
  loser's ``run_job`` returns ``skipped`` and its ticket chooses again.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_init
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import KIND_ALGORITHM, KIND_PREDICTIONS, QUEUED, RUNNING, Submission
from app.settings import Settings, get_settings

log = logging.getLogger(__name__)

TASK_NAME = "hecktor.judge"
# seconds a task may outlive the job limit before Celery kills its pool process (the
# job's own parent enforces the limit; this is the backstop if the parent is stuck)
HARD_LIMIT_GRACE = 300
# queued rows a ticket looks at to find each team's next job (oldest first)
QUEUED_SCAN = 10_000


@worker_process_init.connect
def _preload_scorer(**_: Any) -> None:
    """Each pool process imports the scorer once, so that its jobs' forked children
    inherit it (as the local dispatcher's pool initializer does)."""
    from app.jobs.judge_cache import preload_scorer

    preload_scorer()


# choices a ticket makes before giving up when other workers keep winning the claim
MAX_CLAIM_TRIES = 20


def fair_candidates(
    session: Session, *, exclude: Collection[int] = (), kind: str | None = None
) -> list[int]:
    """``queued`` submissions in the order judges should take them: each team's next
    job (lowest priority, then oldest), teams ordered by (its priority, the team's
    ``running`` jobs, the team's latest start, id). Only each team's next job is
    listed: a team's later jobs never come before it. ``kind``: only submissions of
    that kind (a worker of the algorithm queue takes algorithms only, and the others
    take none)."""
    where = [Submission.status == QUEUED]
    if kind is not None:
        where.append(Submission.kind == kind)
    queued = session.execute(
        select(Submission.id, Submission.team_id, Submission.priority)
        .where(*where)
        .order_by(Submission.priority, Submission.id)
        .limit(QUEUED_SCAN)
    ).all()
    heads: dict[int, tuple[int, int]] = {}
    for sid, team, priority in queued:
        if sid not in exclude and team not in heads:
            heads[team] = (int(priority or 0), int(sid))
    if not heads:
        return []
    running = dict(
        session.execute(
            select(Submission.team_id, func.count(Submission.id))
            .where(Submission.status == RUNNING, Submission.team_id.in_(list(heads)))
            .group_by(Submission.team_id)
        ).all()
    )
    served = dict(
        session.execute(
            select(Submission.team_id, func.max(Submission.started_at))
            .where(Submission.team_id.in_(list(heads)), Submission.started_at.is_not(None))
            .group_by(Submission.team_id)
        ).all()
    )
    never = datetime.min.replace(tzinfo=UTC)

    def key(team: int) -> tuple[int, int, datetime, int]:
        priority, sid = heads[team]
        last = served.get(team) or never
        if last.tzinfo is None:  # SQLite hands back naive UTC from an aggregate
            last = last.replace(tzinfo=UTC)
        return priority, int(running.get(team, 0)), last, sid

    return [heads[t][1] for t in sorted(heads, key=key)]


def judge_next(settings: Settings, hint: int | None = None, kind: str = KIND_PREDICTIONS) -> str:
    """Take one ticket: judge the fairest job of ``kind`` and return its outcome
    (``skipped`` when there was nothing to judge). ``hint`` is the submission the ticket
    was published for: claimed again first if its row was left ``running`` by a judge
    that is gone."""
    from app.db.session import get_engine, session_factory, session_scope
    from app.jobs.claims import SKIPPED, orphaned_running_ids, status_of
    from app.jobs.runner import run_job

    sd = settings.to_dict()
    sf = session_factory(get_engine(settings.db_url))
    with session_scope(sf) as s:
        hint_running = hint is not None and status_of(s, hint) == RUNNING
    if hint_running and hint is not None:  # a re-delivered ticket, or a duplicate
        outcome = run_job(hint, sd)
        if outcome != SKIPPED:
            return outcome
    tried: set[int] = set()
    with session_scope(sf) as s:
        orphans = of_kind(s, orphaned_running_ids(s), kind)
    for sid in orphans:  # left by a dead judge whose ticket went elsewhere
        tried.add(sid)
        outcome = run_job(sid, sd)
        if outcome != SKIPPED:
            return outcome
    for _ in range(MAX_CLAIM_TRIES):
        with session_scope(sf) as s:
            candidates = fair_candidates(s, exclude=tried, kind=kind)
        if not candidates:
            break
        sid = candidates[0]
        outcome = run_job(sid, sd)
        if outcome != SKIPPED:
            return outcome
        tried.add(sid)  # another worker won it (or it finished meanwhile): choose again
    log.info(
        "ticket of submission %s: no queued submission left to judge; skipped",
        hint if hint is not None else "-",
    )
    return SKIPPED


def of_kind(session: Session, ids: list[int], kind: str) -> list[int]:
    """Those of ``ids`` whose submission is of ``kind``."""
    if not ids:
        return []
    found = set(
        session.scalars(
            select(Submission.id).where(Submission.id.in_(ids), Submission.kind == kind)
        )
    )
    return [i for i in ids if i in found]


def judge(task: Task, submission_id: int, kind: str = KIND_PREDICTIONS) -> str:
    """The task: take one ticket (judge the fairest job of the ticket's kind: the queue
    it came from) with this worker's settings."""
    from sqlalchemy.exc import DBAPIError

    settings: Settings = getattr(task.app, "hecktor_settings", None) or get_settings()
    try:
        return judge_next(settings, int(submission_id), kind)
    except DBAPIError as exc:  # database unreachable: try again later, keep the message
        countdown = min(60, 2 ** min(task.request.retries, 6))
        log.warning(
            "submission %s: database error (%s); retrying in %d s", submission_id, exc, countdown
        )
        raise task.retry(exc=exc, countdown=countdown, max_retries=30) from exc


def make_celery_app(settings: Settings) -> Celery:
    """A Celery app for ``settings``: broker, queue, delivery options, the judge task."""
    app = Celery("hecktor_eval", broker=settings.broker_url, set_as_current=False)
    hard_limit = (
        settings.job_timeout_seconds + HARD_LIMIT_GRACE if settings.job_timeout_seconds else None
    )
    conf: dict[str, Any] = {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": settings.celery_queue,
        "task_routes": {TASK_NAME: {"queue": settings.celery_queue}},  # algorithms: queue_of
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "task_time_limit": hard_limit,
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": settings.broker_restore_interval,
            "unacked_restore_throttle": 1,
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            "health_check_interval": 30,
            **(
                {"global_keyprefix": settings.broker_key_prefix}
                if settings.broker_key_prefix
                else {}
            ),
        },
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 5,
        # a lost broker connection leaves the running job alone: its result is stored
        # by the database write; the re-delivered message then finds it done
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_hijack_root_logger": True,
        "worker_redirect_stdouts": False,
        "task_send_sent_event": False,
        "worker_send_task_events": False,
        "timezone": "UTC",
    }
    app.conf.update(conf)
    app.hecktor_settings = settings  # read by the task (the worker's own settings)
    app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)(judge)
    return app


def queue_of(settings: Settings, kind: str) -> str:
    """The queue a ticket of a submission of ``kind`` goes to."""
    return settings.algorithm_queue if kind == KIND_ALGORITHM else settings.celery_queue


def algorithm_time_limit(settings: Settings, phase: Any) -> int:
    """Seconds a ticket of an algorithm submission of ``phase`` may run before Celery
    kills it: every case at its limit, ``parallel_cases`` at once, plus a minute per
    case for loading, starting and removing, plus the scoring job's own limit."""
    cases = max(1, int(phase.n_inputs or 1))
    rounds = -(-cases // max(1, int(phase.parallel_cases)))
    scoring = settings.job_timeout_seconds or 3600
    return rounds * (int(phase.case_seconds) + 60) + scoring + HARD_LIMIT_GRACE


def send_judge(
    celery: Celery,
    submission_id: int,
    queue: str,
    kind: str = KIND_PREDICTIONS,
    *,
    time_limit: int | None = None,
) -> None:
    """Publish one ticket (for the submission id it carries; see :func:`judge_next`) on
    ``queue``, for a submission of ``kind``; ``time_limit`` replaces the configured hard
    limit (an algorithm's cases take longer than one scoring job); bounded retries if
    Redis is down."""
    extra: dict[str, Any] = {} if time_limit is None else {"time_limit": time_limit}
    celery.send_task(
        TASK_NAME,
        args=[int(submission_id), kind],
        **extra,
        queue=queue,
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
    )


_default: Celery | None = None


def __getattr__(name: str) -> Any:
    """``app`` (what ``celery -A app.jobs.celery_app`` looks for), built on first use from
    the environment, so that importing this module reads no settings."""
    global _default
    if name in ("app", "celery"):
        if _default is None:
            _default = make_celery_app(get_settings())
        return _default
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
