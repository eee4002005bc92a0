"""The local dispatcher's failure handling and the job's limits."""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from app.jobs.factory import make_dispatcher
from app.jobs.limits import JobTimeout, time_limit
from app.jobs.local import LocalDispatcher
from tests.app.conftest import RecordingDispatcher, make_settings, set_submission


def test_time_limit_interrupts_a_job() -> None:
    t0 = time.monotonic()
    with pytest.raises(JobTimeout), time_limit(1):
        time.sleep(5)
    assert time.monotonic() - t0 < 3
    with time_limit(0):  # 0 = no limit
        pass


def test_a_crashed_judge_is_retried_once_then_failed(
    sqlite_url: str, app_factory: Any, pool: ProcessPoolExecutor, challenge: Any
) -> None:
    api = app_factory(sqlite_url, dispatcher=RecordingDispatcher())
    api.create_phase("p", tasks=[2])
    tok = api.create_team("t")
    a = api.submit_ok(tok, "p", 2, challenge.archive("good", 2))
    b = api.submit_ok(tok, "p", 2, challenge.archive("poor", 2))
    d = LocalDispatcher(api.settings, executor=pool)
    d.start()
    # a: its worker died on the first attempt -> queued again and judged
    set_submission(sqlite_url, a, status="running", attempts=1)
    d._after_crash(a)
    assert api.wait(tok, a)["status"] == "scored"
    # b: its worker died on the last allowed attempt -> failed, with a message
    set_submission(sqlite_url, b, status="running", attempts=2)
    d._after_crash(b)
    doc = api.status(tok, b)
    assert doc["status"] == "failed" and "stopped unexpectedly" in doc["errors"][0]["message"]
    d.shutdown(wait=True)


def test_dispatcher_factory(tmp_path: Any) -> None:
    from app.jobs.celery_dispatcher import CeleryDispatcher

    assert isinstance(make_dispatcher(make_settings(tmp_path, "sqlite://")), LocalDispatcher)
    pg = "postgresql+psycopg://postgres@127.0.0.1:5432/unused"
    d = make_dispatcher(make_settings(tmp_path, pg, dispatcher="celery"))
    assert isinstance(d, CeleryDispatcher) and d.in_flight() is None  # nothing sent yet
    # Celery workers share one database across machines: SQLite is refused, by name
    with pytest.raises(RuntimeError, match="HECKTOR_DISPATCHER=celery needs PostgreSQL"):
        make_dispatcher(make_settings(tmp_path, "sqlite://", dispatcher="celery"))


def _not_imported(modules: tuple[str, ...]) -> list[str]:
    import sys

    return [m for m in modules if m not in sys.modules]


def test_judging_processes_import_what_jobs_need_up_front(pool: ProcessPoolExecutor) -> None:
    """Each job runs in a child forked from a judging process: what that process has
    imported the child inherits, what it has not the child imports every time (lifelines
    alone takes about a second)."""
    needed = (
        "evaluator.pipeline.task1",
        "evaluator.metrics.survival",
        "lifelines.utils",
        "sklearn.metrics",
    )
    assert pool.submit(_not_imported, needed).result(timeout=60) == []
