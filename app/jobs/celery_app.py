"""The Celery application of the judging workers (``HECKTOR_DISPATCHER=celery``).

``celery -A app.jobs.celery_app ...`` finds ``app`` here (configured from the
``HECKTOR_*`` environment); ``hecktor-eval worker`` starts a worker on an app made by
:func:`make_celery_app` from its settings. The one task,
``hecktor.judge``, takes only a submission id and calls :func:`app.jobs.runner.run_job`
with the worker's own settings (database, data dir, job limits).

Delivery guarantees, and where exactly-once comes from:

- ``task_acks_late``: the message is acknowledged after the job returns, so a worker
  that dies mid-job leaves it unacknowledged; Redis hands it out again once the
  visibility timeout has passed (``broker_visibility_timeout``, above the job time
  limit so that a job still running is never handed to a second worker), checked by
  every live worker each ``broker_restore_interval`` seconds;
- ``task_reject_on_worker_lost``: a pool process that dies (killed, out of memory)
  puts its message back at once instead of acknowledging it;
- ``worker_prefetch_multiplier = 1``: a worker reserves only the jobs it runs, so a
  long job never holds others hostage;
- the database decides who judges: :func:`~app.jobs.runner.run_job` claims the row
  under a PostgreSQL advisory lock (:mod:`app.jobs.locks`), so duplicates are skipped
  and the row of a dead worker is claimed again by the re-delivered message.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_init

from app.settings import Settings, get_settings

log = logging.getLogger(__name__)

TASK_NAME = "hecktor.judge"
# seconds a task may outlive the job limit before Celery kills its pool process (the
# job's own parent enforces the limit; this is the backstop if the parent is stuck)
HARD_LIMIT_GRACE = 300


@worker_process_init.connect
def _preload_scorer(**_: Any) -> None:
    """Each pool process imports the scorer once, so that its jobs' forked children
    inherit it (as the local dispatcher's pool initializer does)."""
    from app.jobs.runner import preload_scorer

    preload_scorer()


def judge(task: Task, submission_id: int) -> str:
    """The task: judge one submission with this worker's settings."""
    from sqlalchemy.exc import DBAPIError

    from app.jobs.runner import run_job

    settings: Settings = getattr(task.app, "hecktor_settings", None) or get_settings()
    try:
        return run_job(int(submission_id), settings.to_dict())
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
        "task_routes": {TASK_NAME: {"queue": settings.celery_queue}},
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


def send_judge(celery: Celery, submission_id: int, queue: str) -> None:
    """Publish one job: only the submission id travels; bounded retries if Redis is down."""
    celery.send_task(
        TASK_NAME,
        args=[int(submission_id)],
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
