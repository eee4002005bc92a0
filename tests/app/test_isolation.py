"""Per-job isolation (memory and time limits in a child process) and the claim rules
that make jobs safe to run any number of times: the local dispatcher, plain calls of
``run_job``, and the PostgreSQL job lock. The Celery workers are in test_celery.py."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from app.db.session import make_engine, session_factory
from app.jobs.claims import SKIPPED
from app.jobs.isolation import EXIT_ERROR, EXIT_MEMORY, run_in_child
from app.jobs.limits import crash_message, format_duration, memory_message, time_message
from app.jobs.local import LocalDispatcher
from app.jobs.locks import held_submission_ids, submission_lock
from app.jobs.runner import run_job
from tests.app.conftest import RecordingDispatcher, set_submission, submission_row
from tests.app.judge_hooks import TEST_HOOKS_ENV

pytestmark = pytest.mark.timeout(120)


# -- the isolation primitive ------------------------------------------------------------
def test_child_reports_back() -> None:
    out = run_in_child(lambda: {"status": "scored", "pid": os.getpid()}, timeout=10)
    assert out.report is not None and out.report["status"] == "scored"
    assert out.report["pid"] != os.getpid() and out.exit_code == 0 and not out.timed_out


def test_child_over_the_time_limit_is_killed() -> None:
    t0 = time.monotonic()
    out = run_in_child(lambda: time.sleep(30) or {}, timeout=0.5)  # type: ignore[func-returns-value]
    assert out.timed_out and out.report is None and out.signal == signal.SIGKILL
    assert time.monotonic() - t0 < 5
    assert out.ended == "stopped at the time limit"


def test_a_crashing_child_is_reported_not_raised() -> None:
    out = run_in_child(lambda: os.kill(os.getpid(), signal.SIGKILL) or {}, timeout=10)  # type: ignore[func-returns-value]
    assert out.report is None and out.signal == signal.SIGKILL
    assert "SIGKILL" in crash_message(out, 8192) and "8192 MB" in crash_message(out, 8192)
    gone = run_in_child(lambda: os._exit(3), timeout=10)
    assert gone.report is None and gone.exit_code == 3 and "exited with code 3" in gone.ended
    boom = run_in_child(lambda: 1 / 0, timeout=10)  # type: ignore[arg-type, return-value]
    assert boom.report is None and boom.exit_code == EXIT_ERROR  # the traceback goes to stderr
    hog = run_in_child(lambda: {"n": len(bytearray(1 << 50))}, timeout=10)  # a petabyte
    assert hog.report is None and hog.exit_code == EXIT_MEMORY


def test_limit_messages_name_the_limit() -> None:
    assert format_duration(1800) == "30 min"
    assert format_duration(5400) == "1 h 30 min"
    assert format_duration(7200) == "2 h"
    assert format_duration(2) == "2 s"
    assert time_message(1800).startswith("judging took longer than 30 min ")
    assert memory_message(8192).startswith("judging used more than 8192 MB of memory ")


def test_defaults_are_8_gib_and_30_min(tmp_path: Path) -> None:
    from app.settings import Settings

    s = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert s.job_memory_mb == 8192 and s.job_timeout_seconds == 1800
    assert s.visibility_timeout > s.job_timeout_seconds
    with pytest.raises(ValueError, match="must be longer than the job time limit"):
        Settings(_env_file=None, data_dir=tmp_path, broker_visibility_timeout=600)  # type: ignore[call-arg]


# -- the local dispatcher ---------------------------------------------------------------
@pytest.fixture(scope="module")
def hooks_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("hooks") / "hooks.json"
    path.write_text("{}")
    old = os.environ.get(TEST_HOOKS_ENV)
    os.environ[TEST_HOOKS_ENV] = str(path)
    yield path
    if old is None:
        os.environ.pop(TEST_HOOKS_ENV, None)
    else:
        os.environ[TEST_HOOKS_ENV] = old


@pytest.fixture(scope="module")
def hooked_pool(hooks_file: Path) -> Iterator[ProcessPoolExecutor]:
    """One judging process for this module, started with the hooks file in its environment."""
    ex = LocalDispatcher.make_executor(1, "spawn", "warning")
    yield ex
    ex.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def hooks(hooks_file: Path) -> Iterator[Any]:
    """``hooks({sid: {"sleep": s, "allocate_mb": n, "signal": "SIGKILL"}})``: test-only
    actions that the next jobs of these submissions run inside their limits."""

    def _set(actions: dict[int, dict[str, Any]]) -> None:
        hooks_file.write_text(json.dumps({str(k): v for k, v in actions.items()}))

    yield _set
    hooks_file.write_text("{}")


def _local(api: Any, pool: ProcessPoolExecutor, **overrides: Any) -> LocalDispatcher:
    settings = api.settings.model_copy(update=overrides)
    d = LocalDispatcher(settings, executor=pool)
    d.start()
    return d


def _wait(api: Any, tok: str, sid: int, timeout: float = 60) -> dict[str, Any]:
    return api.wait(tok, sid, timeout=timeout)  # type: ignore[no-any-return]


def test_local_job_over_the_memory_limit_fails_and_the_pool_keeps_serving(
    sqlite_url: str, app_factory: Any, challenge: Any, hooks: Any, hooked_pool: Any
) -> None:
    api = app_factory(sqlite_url, dispatcher=RecordingDispatcher())
    api.create_phase("p", tasks=[2])
    tok = api.create_team("t")
    hog = api.submit_ok(tok, "p", 2, challenge.archive("good", 2))
    ok = api.submit_ok(tok, "p", 2, challenge.archive("poor", 2))
    hooks({hog: {"allocate_mb": 4096}})
    d = _local(api, hooked_pool, job_memory_mb=2048)
    try:
        d.submit(hog)
        doc = _wait(api, tok, hog)
        pids = set(getattr(hooked_pool, "_processes", {}) or {})
        assert doc["status"] == "failed", doc
        msg = doc["errors"][0]["message"]
        assert msg.startswith("judging used more than 2048 MB of memory"), msg
        d.submit(ok)
        assert _wait(api, tok, ok)["status"] == "scored"
        assert d._executor is hooked_pool  # the judging process survived: no pool replaced
        assert set(getattr(hooked_pool, "_processes", {}) or {}) == pids
    finally:
        d.shutdown(wait=True)


def test_local_job_over_the_time_limit_fails_and_the_pool_keeps_serving(
    sqlite_url: str, app_factory: Any, challenge: Any, hooks: Any, hooked_pool: Any
) -> None:
    api = app_factory(sqlite_url, dispatcher=RecordingDispatcher())
    api.create_phase("p", tasks=[2])
    tok = api.create_team("t")
    slow = api.submit_ok(tok, "p", 2, challenge.archive("good", 2))
    crash = api.submit_ok(tok, "p", 2, challenge.archive("mediocre", 2))
    ok = api.submit_ok(tok, "p", 2, challenge.archive("poor", 2))
    hooks({slow: {"sleep": 60}, crash: {"signal": "SIGKILL"}})  # SIGKILL: like the OOM killer
    d = _local(api, hooked_pool, job_timeout_seconds=2, job_memory_mb=4096)
    try:
        t0 = time.monotonic()
        d.submit(slow)
        doc = _wait(api, tok, slow)
        assert time.monotonic() - t0 < 15
        assert doc["status"] == "failed"
        assert doc["errors"][0]["message"].startswith("judging took longer than 2 s "), doc
        d.submit(crash)
        doc = _wait(api, tok, crash)
        assert doc["status"] == "failed"
        msg = doc["errors"][0]["message"]
        assert "stopped unexpectedly (killed by signal SIGKILL)" in msg and "4096 MB" in msg
        d.submit(ok)
        assert _wait(api, tok, ok)["status"] == "scored"
    finally:
        d.shutdown(wait=True)


# -- claims: any number of runs, one judging ------------------------------------------------
def test_running_row_is_reclaimed_only_when_its_job_is_gone(
    db_url: str, app_factory: Any, challenge: Any
) -> None:
    api = app_factory(db_url, dispatcher=RecordingDispatcher())
    api.create_phase("p", tasks=[2])
    tok = api.create_team("t")
    sid = api.submit_ok(tok, "p", 2, challenge.archive("good", 2))
    settings = api.settings.to_dict()
    set_submission(db_url, sid, status="running", attempts=1)  # its judge died mid-job
    postgres = db_url.startswith("postgresql")
    if postgres:
        engine = make_engine(db_url)
        with submission_lock(engine, sid) as lock:  # ... no: a live judge holds the lock
            assert lock.acquired and lock.exclusive
            with session_factory(engine)() as s:
                assert held_submission_ids(s) == {sid}
            assert run_job(sid, settings) == SKIPPED
            assert submission_row(db_url, sid) == ("running", 1, 0)
        engine.dispose()
        # the lock is free: the row is an orphan and is judged again, once
        assert run_job(sid, settings) == "scored"
        assert submission_row(db_url, sid) == ("scored", 2, 1)
        assert run_job(sid, settings) == SKIPPED  # a duplicate message
        assert submission_row(db_url, sid) == ("scored", 2, 1)
        # a submission whose judges keep dying is failed after MAX_LOST_JUDGES claims
        set_submission(db_url, sid, status="running", attempts=3)
        assert run_job(sid, settings) == "failed"
        status = api.status(tok, sid)
        assert status["status"] == "failed"
        assert "stopped unexpectedly 3 times" in status["errors"][0]["message"]
    else:  # SQLite: no lock, so a running row is never taken from its owner
        assert run_job(sid, settings) == SKIPPED
        assert submission_row(db_url, sid) == ("running", 1, 0)


@pytest.mark.postgres
def test_celery_dispatcher_recovers_orphans_without_touching_live_jobs(
    pg_database: str, app_factory: Any, challenge: Any
) -> None:
    from tests.app.conftest import truncate_all

    truncate_all(pg_database)
    from app.jobs.celery_dispatcher import CeleryDispatcher

    api = app_factory(pg_database, dispatcher=RecordingDispatcher())
    api.create_phase("p", tasks=[2])
    tok = api.create_team("t")
    live, orphan, queued = (
        api.submit_ok(tok, "p", 2, challenge.archive(t, 2)) for t in ("good", "poor", "mediocre")
    )
    set_submission(pg_database, live, status="running", attempts=1)
    set_submission(pg_database, orphan, status="running", attempts=1)

    class Sent:
        def __init__(self) -> None:
            self.ids: list[int] = []
            self.down = False

        def send_task(self, name: str, args: list[int], **_: Any) -> None:
            if self.down:
                raise ConnectionError("redis is down")
            self.ids.append(args[0])

    settings = api.settings.model_copy(update={"dispatcher": "celery"})
    sent = Sent()
    d = CeleryDispatcher(settings, celery=sent)
    engine = make_engine(pg_database)
    with submission_lock(engine, live):
        with session_factory(engine)() as s:
            assert d.recover_pending(s) == sorted([orphan, queued])
        assert submission_row(pg_database, live)[0] == "running"  # never put back to queued
        assert d.maintain_once() == []  # first look: a suspect
        assert d.maintain_once() == [orphan]  # second look: confirmed, published again
        assert d.maintain_once() == []  # not again before the visibility timeout
    engine.dispose()
    assert sent.ids == [orphan]
    # a publication that failed (broker down) is retried by the next look
    sent.down = True
    d.submit(queued)
    assert d.unsent == {queued} and sent.ids == [orphan]
    sent.down = False
    assert queued in d.maintain_once()
    assert d.unsent == set() and sent.ids == [orphan, queued]
