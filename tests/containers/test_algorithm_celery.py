"""Algorithm submissions under Celery, for real: Redis on 127.0.0.1:6379 (db 15, keys
under a prefix of the test's own), PostgreSQL on 127.0.0.1:5432, ``hecktor-eval worker
--takes ...`` processes started here, podman running the cases.

- an algorithm submission's ticket is published on the algorithm queue and a prediction
  archive's on the prediction queue (the Redis lists say so); a ``--takes predictions``
  worker judges the archive and never the algorithm, which stays queued until a
  ``--takes algorithms`` worker starts and judges it;
- an algorithm worker killed with SIGKILL (its whole process group) while a case's
  container runs: the ticket is re-delivered, a new worker claims the orphaned row
  again and scores it (attempt 2), and no container, loaded image, mounted output
  volume or job folder of the submission is left afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.algorithms.runtime import ContainerRuntime
from app.jobs.algorithm_job import container_prefix, image_repository
from app.jobs.celery_dispatcher import CeleryDispatcher
from app.main import create_app
from tests.app.conftest import (
    Api,
    Challenge,
    db_execute,
    make_settings,
    pg_database,
    truncate_all,
)
from tests.app.judge_hooks import pythonpath
from tests.app.test_celery import (
    READY_TIMEOUT,
    REDIS_URL,
    Worker,
    _final,
    _rows,
    _wait_for,
    broker_prefix,
)
from tests.containers.conftest import Images
from tests.containers.test_algorithm_judging import save

pytestmark = [
    pytest.mark.containers,
    pytest.mark.celery,
    pytest.mark.postgres,
    pytest.mark.timeout(240),
]

__all__ = ["broker_prefix", "pg_database"]  # fixtures used by this module's tests

ROOT = Path(__file__).resolve().parents[2]
WORKER_CMD = [sys.executable, "-m", "app", "worker"]  # = `hecktor-eval worker`
N_CASES = 4
PHASE = "final"


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Challenge:
    from evaluator.synth import generate_challenge

    root = tmp_path_factory.mktemp("algo-celery-challenge") / "c"
    generate_challenge(root, seed=5, small=True, n_cases=N_CASES)
    return Challenge(root)


@pytest.fixture(scope="module")
def tarballs(
    runtime: ContainerRuntime, images: Images, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The threshold algorithm and its slow variant (built on the threshold image)."""
    folder = tmp_path_factory.mktemp("celery-tarballs")
    threshold = images.get("threshold")  # first: slowthreshold is built FROM it
    return {
        "threshold": save(runtime, threshold, folder / "threshold"),
        "slowthreshold": save(runtime, images.get("slowthreshold"), folder / "slowthreshold"),
    }


@pytest.fixture
def pg(pg_database: str) -> str:
    """The session's database, emptied; submission ids start at a random 6-digit number,
    so that the containers and images named after them (``hecktor-s<id>-...``,
    ``sub-<id>``) are told apart from those of other tests sharing the runtime."""
    truncate_all(pg_database)
    start = 100_000 + secrets.randbelow(900_000)
    db_execute(pg_database, text(f"ALTER SEQUENCE submissions_id_seq RESTART WITH {start}"))
    return pg_database


class Cluster:
    """The service (an app publishing to Celery) and ``hecktor-eval worker`` processes,
    each the leader of its own process group."""

    def __init__(self, tmp_path: Path, db_url: str, prefix: str, synth: Challenge) -> None:
        self.tmp_path = tmp_path
        self.data_dir = tmp_path / "data"
        self.prefix = prefix
        tag = uuid.uuid4().hex[:8]
        self.queue = f"hecktor-test-{tag}"
        self.algorithm_queue = f"hecktor-test-algo-{tag}"
        self.common: dict[str, Any] = {
            "database_url": db_url,
            "broker_url": REDIS_URL,
            "broker_key_prefix": prefix,
            "celery_queue": self.queue,
            "algorithm_queue": self.algorithm_queue,
            "container_runtime": "podman",
            "job_timeout_seconds": 8,  # the scoring child's; the cases have their own
            "broker_visibility_timeout": 10,
            "broker_restore_interval": 1,
        }
        settings = make_settings(self.data_dir, db_url, dispatcher="celery", **self.common)
        self.client = TestClient(
            create_app(settings, dispatcher=CeleryDispatcher(settings)),
            raise_server_exceptions=False,
        )
        self.client.__enter__()
        self.api = Api(self.client, synth)
        self.workers: list[Worker] = []

    def queued_tickets(self) -> dict[str, int]:
        """Messages waiting in each queue's Redis list."""
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        try:
            return {
                "predictions": int(r.llen(self.prefix + self.queue)),
                "algorithms": int(r.llen(self.prefix + self.algorithm_queue)),
            }
        finally:
            r.close()

    def start_worker(self, takes: str) -> Worker:
        n = len(self.workers) + 1
        name = f"{takes}{n}-{uuid.uuid4().hex[:6]}@%h"
        env = {k: v for k, v in os.environ.items() if not k.startswith("HECKTOR_")}
        values = {
            **self.common,
            "data_dir": self.data_dir,
            "dispatcher": "celery",
            "log_level": "info",
        }
        env.update({f"HECKTOR_{k.upper()}": str(v) for k, v in values.items()})
        env["PYTHONPATH"] = pythonpath(ROOT)
        log = self.tmp_path / f"worker{n}-{takes}.log"
        args = ["--takes", takes, "--concurrency", "1", "--loglevel", "info", "--hostname", name]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*WORKER_CMD, *args],
                cwd=self.tmp_path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
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

    def kill(self, w: Worker) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(w.proc.pid, signal.SIGKILL)
        w.proc.wait(timeout=10)

    def stop(self) -> None:
        for w in self.workers:
            self.kill(w)
        self.client.__exit__(None, None, None)


@pytest.fixture
def cluster(
    tmp_path: Path, pg: str, broker_prefix: str, synth: Challenge, runtime: ContainerRuntime
) -> Iterator[Cluster]:
    c = Cluster(tmp_path, pg, broker_prefix, synth)
    c.api.create_phase(
        PHASE,
        kind="both",
        inputs=str(synth.root / "inputs"),
        tasks=[1],
        case_seconds=30,
        case_memory_mb=256,
        case_pids=64,
        case_tmp_mb=32,
        case_output_mb=32,
        parallel_cases=2,
        daily_limit=100,
    )
    try:
        yield c
    finally:
        c.stop()


def podman_lines(runtime: ContainerRuntime, *args: str) -> list[str]:
    res = subprocess.run(
        [runtime.executable, *args], capture_output=True, text=True, check=True, timeout=60
    )
    return res.stdout.split()


def containers_of(
    runtime: ContainerRuntime, data_dir: Path, sid: int, *, running: bool = False
) -> list[str]:
    """Names of the containers of submission ``sid`` (those running only, if asked)."""
    args = ["ps", "--format", "{{.Names}}"] + ([] if running else ["-a"])
    prefix = container_prefix(data_dir, sid)
    return [n for n in podman_lines(runtime, *args) if n.startswith(prefix)]


def images_of(runtime: ContainerRuntime, data_dir: Path, sid: int) -> list[str]:
    names = podman_lines(runtime, "images", "--format", "{{.Repository}}:{{.Tag}}")
    return [n for n in names if n == f"{image_repository(data_dir)}:sub-{sid}"]


def mounts_under(folder: Path) -> list[str]:
    return [
        line.split()[1]
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1].startswith(str(folder))
    ]


def test_each_kind_has_its_queue_and_its_workers(
    cluster: Cluster, pg: str, tarballs: dict[str, Path], synth: Challenge
) -> None:
    api = cluster.api
    tok = api.create_team("t")
    algo = api.submit_ok(tok, PHASE, 1, tarballs["threshold"])
    arch = api.submit_ok(tok, PHASE, 1, synth.archive("good", 1))
    assert [api.status(tok, s)["kind"] for s in (algo, arch)] == ["algorithm", "predictions"]
    # no worker yet: one ticket in each queue
    assert cluster.queued_tickets() == {"predictions": 1, "algorithms": 1}

    p = cluster.start_worker("predictions")
    _wait_for("the archive to be scored", lambda: _final(pg, [arch]), 60, [p])
    assert _rows(pg)[arch][:3] == ("scored", 1, 1)
    time.sleep(2)  # time enough to take the algorithm's ticket, were it listening there
    assert cluster.queued_tickets() == {"predictions": 0, "algorithms": 1}
    assert _rows(pg)[algo][:2] == ("queued", 0)
    assert p.scored() == [arch]
    assert "algorithm containers run with" not in p.log()

    a = cluster.start_worker("algorithms")
    _wait_for("the algorithm to be scored", lambda: _final(pg, [algo]), 90, [p, a])
    status, attempts, results, errors = _rows(pg)[algo]
    assert (status, attempts, results) == ("scored", 1, 1), errors
    assert a.scored() == [algo] and p.scored() == [arch]
    assert "algorithm containers run with podman" in a.log()
    assert cluster.queued_tickets() == {"predictions": 0, "algorithms": 0}
    doc = api.status(tok, algo)
    assert doc["result"]["metrics"] and len(doc["result"]["cases"]) == N_CASES


def test_an_algorithm_worker_killed_mid_case_is_redelivered_and_scored_once(
    cluster: Cluster, pg: str, tarballs: dict[str, Path], runtime: ContainerRuntime
) -> None:
    api = cluster.api
    tok = api.create_team("t")
    sid = api.submit_ok(tok, PHASE, 1, tarballs["slowthreshold"])  # waits in the queue
    a = cluster.start_worker("algorithms")
    seen: list[str] = []

    def case_running() -> bool:
        seen[:] = containers_of(runtime, cluster.data_dir, sid, running=True)
        return bool(seen)

    _wait_for("a case's container to run", case_running, 60, [a])
    assert all(n.startswith(container_prefix(cluster.data_dir, sid)) for n in seen), seen
    assert _rows(pg)[sid][:2] == ("running", 1)
    cluster.kill(a)  # the worker's process group: main process, pool, job, podman clients
    assert _rows(pg)[sid][:2] == ("running", 1)  # left behind by the dead worker
    # the case's container outlives the judge that started it (podman's conmon is not
    # in the worker's process group): something has to remove it
    assert set(seen) & set(containers_of(runtime, cluster.data_dir, sid)), (
        seen,
        containers_of(runtime, cluster.data_dir, sid),
    )

    b = cluster.start_worker("algorithms")
    _wait_for("the re-delivered job", lambda: _final(pg, [sid]), 90, [a, b])
    status, attempts, results, errors = _rows(pg)[sid]
    assert (status, attempts, results) == ("scored", 2, 1), errors
    assert b.scored() == [sid] and a.scored() == []
    assert f"submission {sid}: its judge (attempt 1) is gone; claimed it again" in b.log()
    doc = api.status(tok, sid)
    assert doc["status"] == "scored" and len(doc["result"]["cases"]) == N_CASES

    # nothing of either attempt is left: containers, the loaded image, output volumes,
    # job folders
    def left() -> dict[str, list[str]]:
        tmp = cluster.data_dir / "tmp"
        return {
            "containers": containers_of(runtime, cluster.data_dir, sid),
            "images": images_of(runtime, cluster.data_dir, sid),
            "mounts": mounts_under(cluster.data_dir),
            "job folders": sorted(p.name for p in tmp.glob(f"job-{sid}-*")),
        }

    deadline = time.monotonic() + 10
    while any(left().values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left() == {"containers": [], "images": [], "mounts": [], "job folders": []}
