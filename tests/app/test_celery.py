"""Celery workers for real: Redis on 127.0.0.1:6379 (db 15; each test's keys under a
prefix of its own, deleted around it: a FLUSHDB would wipe the queues of a test session
running beside this one),
PostgreSQL on 127.0.0.1:5432, and ``hecktor-eval worker`` processes started here
(prefork pool, concurrency 1, a unique node name each, killed at teardown).

- two workers, twenty submissions, every message sent twice: each submission is
  scored exactly once (one result row, one claim, one "scored" line in the logs);
- a worker killed with SIGKILL mid-job: its processes die with it, the message is
  re-delivered, the orphaned row is claimed again and scored once;
- a job over its memory limit and one over its time limit fail with the limit named,
  and the same worker scores the next submission.

Slow jobs and memory hogs come from the test-only hooks file (``HECKTOR_TEST_HOOKS``)
read by the job inside its limits.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.db.models import CaseResult, Result, Submission
from app.db.session import make_engine, session_factory
from app.jobs.celery_dispatcher import CeleryDispatcher
from tests.app.conftest import truncate_all
from tests.app.judge_hooks import TEST_HOOKS_ENV, pythonpath

pytestmark = [pytest.mark.celery, pytest.mark.postgres, pytest.mark.timeout(180)]

REDIS_URL = "redis://127.0.0.1:6379/15"
ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 60.0
WORKER_CMD = [sys.executable, "-m", "app", "worker"]  # = `hecktor-eval worker`


def _redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def broker_prefix() -> Iterator[str]:
    """A key prefix of this test's own in the dedicated Redis db, emptied before and after."""
    if not _redis_available():
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    import redis

    prefix = f"hecktor-test-{uuid.uuid4().hex[:10]}:"
    r = redis.Redis.from_url(REDIS_URL)

    def flush() -> None:
        keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            r.delete(*keys)

    flush()
    yield prefix
    flush()
    r.close()


@pytest.fixture
def pg(pg_database: str) -> str:
    truncate_all(pg_database)
    return pg_database


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live process (zombies excluded), from /proc."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(d.name)] = int(fields[1])
    return parents


class Worker:
    def __init__(self, name: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.name, self.proc, self.log_path = name, proc, log

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def scored(self) -> list[int]:
        return [int(m) for m in re.findall(r"submission (\d+): scored in", self.log())]

    def children(self) -> set[int]:
        """Pids of the main process's own children (the prefork pool)."""
        return {p for p, pp in _parents().items() if pp == self.proc.pid}

    def descendants(self) -> set[int]:
        """Pids of this worker's process tree below its main process (from /proc)."""
        parents = _parents()
        found: set[int] = set()
        frontier = {self.proc.pid}
        while frontier:
            frontier = {p for p, pp in parents.items() if pp in frontier} - found
            found |= frontier
        return found


class Cluster:
    """The service side (an app publishing to Celery) plus worker processes."""

    def __init__(self, tmp_path: Path, db_url: str, prefix: str, app_factory: Any) -> None:
        self.tmp_path = tmp_path
        self.data_dir = tmp_path / "data"
        self.hooks_file = tmp_path / "hooks.json"
        self.hooks_file.write_text("{}")
        self.queue = f"hecktor-test-{uuid.uuid4().hex[:8]}"
        self.common = {
            "database_url": db_url,
            "broker_url": REDIS_URL,
            "broker_key_prefix": prefix,
            "celery_queue": self.queue,
            "job_timeout_seconds": 8,
            "broker_visibility_timeout": 10,
            "broker_restore_interval": 1,
        }
        self.api = app_factory(
            db_url, dispatcher=CeleryDispatcher, data_dir=self.data_dir, **self.common
        )
        self.workers: list[Worker] = []

    def hooks(self, actions: dict[int, dict[str, Any]]) -> None:
        self.hooks_file.write_text(json.dumps({str(k): v for k, v in actions.items()}))

    def start_worker(self, *, hooks: bool = False, **settings: Any) -> Worker:
        name = f"w{len(self.workers) + 1}-{uuid.uuid4().hex[:6]}@%h"
        env = {k: v for k, v in os.environ.items() if not k.startswith("HECKTOR_")}
        values = {
            **self.common,
            "data_dir": self.data_dir,
            "dispatcher": "celery",
            "log_level": "info",
            **settings,
        }
        env.update({f"HECKTOR_{k.upper()}": str(v) for k, v in values.items()})
        if hooks:
            env[TEST_HOOKS_ENV] = str(self.hooks_file)
        env["PYTHONPATH"] = pythonpath(ROOT)
        log = self.tmp_path / f"worker{len(self.workers) + 1}.log"
        out = log.open("wb")
        proc = subprocess.Popen(
            [*WORKER_CMD, "--concurrency", "1", "--loglevel", "info", "--hostname", name],
            cwd=self.tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        w = Worker(name, proc, log)
        self.workers.append(w)
        return w

    def wait_ready(self, *workers: Worker) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        for w in workers:
            while " ready." not in w.log():
                assert w.proc.poll() is None, f"worker {w.name} exited:\n{w.log()[-3000:]}"
                assert time.monotonic() < deadline, f"worker {w.name} not ready:\n{w.log()[-3000:]}"
                time.sleep(0.1)

    def stop(self) -> None:
        for w in self.workers:  # each worker leads its own process group: pool and jobs too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(w.proc.pid, signal.SIGKILL)
            w.proc.wait(timeout=10)


@pytest.fixture
def cluster(tmp_path: Path, pg: str, broker_prefix: str, app_factory: Any) -> Iterator[Cluster]:
    c = Cluster(tmp_path, pg, broker_prefix, app_factory)
    try:
        yield c
    finally:
        c.stop()


def _rows(db_url: str) -> dict[int, tuple[str, int, int, list[dict[str, Any]] | None]]:
    """id -> (status, attempts, number of result rows, errors)."""
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        results = dict(
            s.execute(
                select(Result.submission_id, func.count()).group_by(Result.submission_id)
            ).all()
        )
        out = {
            sub.id: (sub.status, sub.attempts, int(results.get(sub.id, 0)), sub.errors)
            for sub in s.scalars(select(Submission))
        }
    engine.dispose()
    return out


def _wait_for(what: str, check: Callable[[], bool], timeout: float, workers: list[Worker]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.name}\n{w.log()[-4000:]}" for w in workers)
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")
        time.sleep(0.2)


def _final(db_url: str, ids: list[int]) -> bool:
    rows = _rows(db_url)
    return all(rows[i][0] in ("scored", "failed", "valid") for i in ids)


def test_two_workers_score_twenty_submissions_exactly_once(cluster: Cluster, pg: str) -> None:
    api = cluster.api
    w1, w2 = cluster.start_worker(), cluster.start_worker()
    api.create_phase("p", tasks=[1, 2, 3], daily_limit=100)
    teams = ("perfect", "good", "mediocre", "poor")
    tokens = {t: api.create_team(t) for t in teams}
    cluster.wait_ready(w1, w2)
    plan = [(t, task) for task in (1, 2, 3) for t in teams] + [
        (t, task) for task in (2, 3) for t in teams
    ]
    assert len(plan) == 20
    ids = [api.submit_ok(tokens[t], "p", task, api.challenge.archive(t, task)) for t, task in plan]
    for sid in ids:  # every message twice: a duplicate delivery for each submission
        api.dispatcher.submit(sid)
    _wait_for("20 scored submissions", lambda: _final(pg, ids), 90, [w1, w2])

    def consumed() -> bool:  # the 20 duplicates were delivered and skipped
        return sum(w.log().count("; skipped") for w in (w1, w2)) >= 20

    _wait_for("the duplicates to be skipped", consumed, 30, [w1, w2])
    rows = _rows(pg)
    for sid in ids:
        status, attempts, results, errors = rows[sid]
        assert (status, attempts, results) == ("scored", 1, 1), (sid, rows[sid])
        assert errors is None
    scored = w1.scored() + w2.scored()
    assert sorted(scored) == sorted(ids), "each submission scored once, by one worker"
    assert w1.scored() and w2.scored(), "both workers judged"
    # each pool process imported the scorer before its first job (its jobs' children
    # inherit it instead of importing lifelines again)
    assert all("judging process ready: scorer imported" in w.log() for w in (w1, w2))
    engine = make_engine(pg)
    with session_factory(engine)() as s:
        n_cases = s.scalar(select(func.count()).select_from(CaseResult))
    engine.dispose()
    assert n_cases and n_cases > 0
    assert all(w.proc.poll() is None for w in (w1, w2))


def test_a_worker_killed_mid_job_is_redelivered_and_scored_once(cluster: Cluster, pg: str) -> None:
    api = cluster.api
    api.create_phase("p", tasks=[1], daily_limit=100)
    tok = api.create_team("t")
    sid = api.submit_ok(tok, "p", 1, api.challenge.archive("good", 1))  # waits in the queue
    cluster.hooks({sid: {"sleep": 6}})  # slow enough to be killed mid-job
    a = cluster.start_worker(hooks=True)
    _wait_for("the job to start", lambda: _rows(pg)[sid][0] == "running", 30, [a])
    _wait_for("the judging process", lambda: len(a.descendants()) >= 2, 10, [a])
    tree = a.descendants()  # the pool process and the job's own process
    os.kill(a.proc.pid, signal.SIGKILL)
    a.proc.wait(timeout=10)

    def tree_gone() -> bool:
        return not any(Path(f"/proc/{p}").exists() and _alive(p) for p in tree)

    _wait_for("the killed worker's processes to die with it", tree_gone, 10, [a])
    assert _rows(pg)[sid][:2] == ("running", 1)  # left behind by the dead worker

    b = cluster.start_worker()  # no hooks: fast
    _wait_for("the re-delivered job", lambda: _final(pg, [sid]), 60, [a, b])
    status, attempts, results, _errors = _rows(pg)[sid]
    assert (status, attempts, results) == ("scored", 2, 1)
    assert b.scored() == [sid] and a.scored() == []
    assert f"submission {sid}: its judge (attempt 1) is gone; claimed it again" in b.log()
    doc = api.status(tok, sid)
    assert doc["status"] == "scored" and doc["result"]["metrics"]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_jobs_over_their_limits_fail_by_name_and_the_worker_keeps_serving(
    cluster: Cluster, pg: str
) -> None:
    api = cluster.api
    api.create_phase("p", tasks=[2], daily_limit=100)
    tok = api.create_team("t")
    hog = api.submit_ok(tok, "p", 2, api.challenge.archive("good", 2))
    slow = api.submit_ok(tok, "p", 2, api.challenge.archive("mediocre", 2))
    ok = api.submit_ok(tok, "p", 2, api.challenge.archive("poor", 2))
    cluster.hooks({hog: {"allocate_mb": 4096}, slow: {"sleep": 60}})
    w = cluster.start_worker(hooks=True, job_memory_mb=2048, job_timeout_seconds=3)
    cluster.wait_ready(w)
    pool = w.children()
    assert len(pool) == 1
    _wait_for("three finished jobs", lambda: _final(pg, [hog, slow, ok]), 60, [w])
    rows = _rows(pg)
    assert rows[hog][0] == "failed"
    assert rows[hog][3] is not None
    assert rows[hog][3][0]["message"].startswith("judging used more than 2048 MB of memory")
    assert rows[slow][0] == "failed"
    assert rows[slow][3] is not None
    assert rows[slow][3][0]["message"].startswith("judging took longer than 3 s")
    assert rows[ok][:3] == ("scored", 1, 1)
    assert w.proc.poll() is None and w.scored() == [ok]
    assert w.children() == pool  # the same pool process served all three
    assert "WorkerLostError" not in w.log()
