"""The compose deployment brought up for real: docker-compose.yml plus the registry-less
override (docker/local/compose.override.yml) with docker-compose 1.29 against podman's
API socket, healthchecks run by the host-side ticker. The README's organizer steps
through ``compose exec`` and the published port: a phase from ``hecktor-eval synth
--small``, four teams, uploads over HTTP for the three tasks judged by two worker
containers (both used), the leaderboards in the synthetic challenge's expected order
with the host scorer's numbers; a worker container killed mid-job and the job judged
exactly once; a backup (``pg_dump`` and the data volume) restored into a stack rebuilt
from nothing; ``down -v`` leaves no container, volume or network of the project.

The tests run in file order and share the stack (one scenario)."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.conftest import ROOT, SERVICE_IMAGE, SOCKET, podman, require_image, run

pytestmark = pytest.mark.deploy
PROJECT = "hecktordeploy"
PHASE = "validation"
TEAMS = ("perfect", "good", "mediocre", "poor")
SUBMISSION = {1: "task1.zip", 2: "task2.csv", 3: "task3.csv"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    env_file: Path
    challenge: Path  # hecktor-eval synth --small output, inside the ground-truth host dir
    port: int
    organizer: str
    tokens: dict[str, str] = field(default_factory=dict)
    boards: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def compose(self, *args: str, timeout: float = 600, check: bool = True, **kw: Any) -> Any:
        tool = shutil.which("docker-compose")
        assert tool, "docker-compose is not installed: run docker/local/setup-runtime.sh"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("HECKTOR_", "POSTGRES_", "REDIS_", "COMPOSE_", "DOCKER_"))
        }
        env["DOCKER_HOST"] = f"unix://{SOCKET}"
        cmd = [tool, "-p", PROJECT, "--env-file", str(self.env_file), "-f",
               str(ROOT / "docker-compose.yml"), "-f",
               str(ROOT / "docker" / "local" / "compose.override.yml"), *args]  # fmt: skip
        return run(cmd, timeout=timeout, check=check, cwd=ROOT, env=env, **kw)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def containers(self, service: str | None = None, *, all_: bool = False) -> dict[str, str]:
        """Name -> status of the project's containers (of one service)."""
        label = f"label=com.docker.compose.project={PROJECT}"
        args = [podman(), "ps", "--filter", label, "--format", "{{.Names}}\t{{.Status}}"]
        if service:
            args += ["--filter", f"label=com.docker.compose.service={service}"]
        if all_:
            args.append("-a")
        out = run(args).stdout
        return dict(ln.split("\t", 1) for ln in out.splitlines() if ln.strip())

    def psql(self, sql: str) -> str:
        (name,) = self.containers("postgres")
        res = run([podman(), "exec", name, "psql", "-U", "hecktor", "-d", "hecktor", "-Atc", sql])
        return str(res.stdout).strip()

    def wait_scored(self, ids: list[int], *, timeout: float = 300) -> dict[int, dict[str, Any]]:
        done: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        with self.http(self.organizer) as c:
            while len(done) < len(ids):
                for sid in set(ids) - set(done):
                    doc = c.get(f"/api/v1/submissions/{sid}").json()
                    if doc["status"] in ("scored", "failed", "valid"):
                        done[sid] = doc
                assert time.monotonic() < deadline, (
                    f"not judged in {timeout} s: {set(ids) - set(done)}"
                )
                time.sleep(0.3)
        return done

    def worker_logs(self) -> dict[str, str]:
        return {
            name: run(
                [podman(), "logs", name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            ).stdout
            for name in self.containers("worker", all_=True)
        }


def wait_until(what: str, check: Any, timeout: float = 180, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(every)


def project_leftovers() -> dict[str, list[str]]:
    label = f"label=com.docker.compose.project={PROJECT}"
    name = f"name={PROJECT}"
    return {
        "containers": run([podman(), "ps", "-a", "-q", "--filter", label]).stdout.split()
        + run([podman(), "ps", "-a", "-q", "--filter", name]).stdout.split(),
        "volumes": run([podman(), "volume", "ls", "-q", "--filter", name]).stdout.split(),
        "networks": [
            n
            for n in run([podman(), "network", "ls", "--format", "{{.Name}}"]).stdout.split()
            if n.startswith(PROJECT)
        ],
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for image in (SERVICE_IMAGE, "localhost/hecktor-postgres:15", "localhost/hecktor-redis:7"):
        require_image(image)
    base = tmp_path_factory.mktemp("compose")
    gt = base / "ground-truth"
    gt.mkdir()
    run([sys.executable, "-m", "evaluator.cli", "synth", "--small", "--out",
         str(gt / PHASE)], timeout=300)  # fmt: skip
    run(["chmod", "-R", "a+rX", str(base)])  # read by uid 10001 in the containers
    organizer = secrets.token_urlsafe(32)
    port = free_port()
    env_file = base / "deploy.env"
    env_file.write_text(
        f"HECKTOR_ORGANIZER_TOKEN={organizer}\n"
        f"POSTGRES_PASSWORD={secrets.token_urlsafe(24)}\n"
        f"REDIS_PASSWORD={secrets.token_urlsafe(24)}\n"
        "HECKTOR_PUBLIC_URL=https://challenge.example.org\n"
        f"HECKTOR_GROUND_TRUTH_HOST_DIR={gt}\n"
        f"HECKTOR_HTTP_PORT={port}\n"
    )
    s = Stack(env_file=env_file, challenge=gt / PHASE, port=port, organizer=organizer)
    s.compose("down", "-v", "--remove-orphans", check=False, timeout=300)  # an earlier run's
    yield s
    s.compose("down", "-v", "--remove-orphans", check=False, timeout=300)


@pytest.mark.timeout(900)
def test_up_migrates_once_then_api_and_two_healthy_workers(stack: Stack) -> None:
    t0 = time.monotonic()
    stack.compose("up", "-d", "--scale", "worker=2")
    migrate = stack.containers("migrate", all_=True)
    assert len(migrate) == 1 and all(st.startswith("Exited (0)") for st in migrate.values()), (
        migrate
    )

    def healthy() -> bool:
        states = stack.containers()
        wanted = {"api", "worker", "postgres", "redis"}
        return (
            len(stack.containers("worker")) == 2
            and all(st.endswith("(healthy)") for st in states.values())
            and all(any(f"_{w}_" in n for n in states) for w in wanted)
        )

    wait_until("every container healthy (the ticker runs the healthchecks)", healthy, 240)
    assert httpx.get(f"{stack.url}/healthz", timeout=10).status_code == 200
    print(f"up: {time.monotonic() - t0:.1f} s")
    # the schema is at the head revision of the migrations, made by that one run
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(ROOT / "app" / "db" / "migrations")).get_current_head()
    assert stack.psql("select version_num from alembic_version") == head


@pytest.mark.timeout(900)
def test_organizer_steps_all_tasks_judged_by_both_workers(stack: Stack) -> None:
    for team in TEAMS:
        out = stack.compose("exec", "-T", "api", "hecktor-eval", "admin", "team", "create",
                            "--name", team).stdout  # fmt: skip
        stack.tokens[team] = out.strip().splitlines()[-1]
    phase = {"name": PHASE, "ground_truth": f"/ground-truth/{PHASE}/ground_truth",
             "tasks": [1, 2, 3]}  # fmt: skip
    with stack.http(stack.organizer) as c:
        r = c.post("/api/v1/admin/phases", json=phase)
        assert r.status_code == 201, r.text
    workers = sorted(stack.containers("worker"))
    assert len(workers) == 2
    # the uploads wait in the queue while both workers are paused: each takes work
    run([podman(), "pause", *workers])
    ids: dict[int, tuple[str, int]] = {}
    try:
        for team in TEAMS:
            with stack.http(stack.tokens[team]) as c:
                for task, name in SUBMISSION.items():
                    path = stack.challenge / "submissions" / team / name
                    with path.open("rb") as f:
                        r = c.post(
                            "/api/v1/submissions",
                            data={"task": str(task), "phase": PHASE},
                            files={"file": (name, f)},
                        )
                    assert r.status_code == 202, r.text
                    ids[r.json()["id"]] = (team, task)
    finally:
        run([podman(), "unpause", *workers])
    results = stack.wait_scored(list(ids))
    assert {sid: d["status"] for sid, d in results.items()} == dict.fromkeys(ids, "scored")

    judged: dict[int, list[str]] = {}
    for name, log in stack.worker_logs().items():
        for sid in re.findall(r"submission (\d+): scored in", log):
            judged.setdefault(int(sid), []).append(name)
    assert {sid: len(v) for sid, v in judged.items()} == dict.fromkeys(ids, 1), judged
    used = {w for v in judged.values() for w in v}
    assert used == set(workers), f"judged by {used}, workers {workers}"

    expected = json.loads((stack.challenge / "manifest.json").read_text())["expected_order"]
    for task in SUBMISSION:
        board = httpx.get(f"{stack.url}/api/v1/leaderboards/{PHASE}/{task}", timeout=30).json()
        stack.boards[task] = board["rows"]
        assert [row["team"] for row in board["rows"]] == expected[f"task{task}"], board
        # the numbers are the host scorer's, to the last digit
        for row in board["rows"]:
            reference = host_score(stack, row["team"], task)
            assert row["metrics"] == {k: reference[k] for k in row["metrics"]}, row["team"]


def host_score(stack: Stack, team: str, task: int) -> dict[str, Any]:
    out = stack.env_file.parent / f"score-{team}-{task}.json"
    if not out.exists():
        run([sys.executable, "-m", "evaluator.cli", "score", "--task", str(task),
             "--ground-truth", str(stack.challenge / "ground_truth" / f"Task {task}"),
             "--predictions", str(stack.challenge / "submissions" / team / SUBMISSION[task]),
             "--output", str(out), "-q"])  # fmt: skip
    doc: dict[str, Any] = json.loads(out.read_text())["metrics"]
    return doc


def repacked(stack: Stack, team: str, tag: str) -> Path:
    """The team's Task 1 archive with the same predictions in a zip of other bytes
    (stored, not deflated): the service refuses a byte-identical resubmission."""
    src = stack.challenge / "submissions" / team / SUBMISSION[1]
    dest = stack.env_file.parent / f"{team}-{tag}-task1.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    return dest


def started_at(container: str) -> str:
    return str(run([podman(), "inspect", "--format", "{{.State.StartedAt}}", container]).stdout)


def job_holder(stack: Stack, sid: int) -> str | None:
    """The worker container holding the job's PostgreSQL lock (by its address)."""
    addr = stack.psql(
        "select a.client_addr from pg_locks l join pg_stat_activity a on a.pid = l.pid "
        f"where l.locktype = 'advisory' and l.objid = {sid} and l.granted"
    )
    if not addr:
        return None
    for name in stack.containers("worker"):
        ips = run(
            [
                podman(),
                "inspect",
                "--format",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                name,
            ]
        ).stdout
        if addr in ips.split():
            return name
    return None


@pytest.mark.timeout(600)
def test_worker_killed_mid_job_the_job_is_judged_exactly_once(stack: Stack) -> None:
    workers = sorted(stack.containers("worker"))
    # slowed down so that a 12-case job lasts seconds, long enough to kill it midway
    for w in workers:
        run([podman(), "update", "--cpus", "0.03", w])
    try:
        path = repacked(stack, "good", "kill")
        with stack.http(stack.tokens["good"]) as c, path.open("rb") as f:
            r = c.post("/api/v1/submissions", data={"task": "1", "phase": PHASE},
                       files={"file": (path.name, f)})  # fmt: skip
            assert r.status_code == 202, r.text
            sid = int(r.json()["id"])

            def holding() -> str | None:
                doc = c.get(f"/api/v1/submissions/{sid}").json()
                assert doc["status"] in ("queued", "running"), doc
                return job_holder(stack, sid) if doc["status"] == "running" else None

            holder = wait_until("the job running, its lock held by a worker", holding, 120, 0.2)
        # the container's init (the worker's main process) killed from the host, as the
        # kernel's OOM killer or a crash would: the container dies with its judging child
        started = started_at(holder)
        pid = run([podman(), "inspect", "--format", "{{.State.Pid}}", holder]).stdout.strip()
        os.kill(int(pid), signal.SIGKILL)
        with stack.http(stack.organizer) as c:  # killed midway: no result yet
            doc = c.get(f"/api/v1/submissions/{sid}").json()
            assert doc["status"] == "running", doc
        survivor = next(w for w in workers if w != holder)
        run([podman(), "update", "--cpus", "2", survivor])
        (doc,) = stack.wait_scored([sid], timeout=240).values()
    finally:
        for w in workers:
            run([podman(), "update", "--cpus", "2", w], check=False)
    assert doc["status"] == "scored", doc
    logs = stack.worker_logs()
    scored = [
        n for n, log in logs.items() for _ in re.findall(rf"submission {sid}: scored in", log)
    ]
    assert len(scored) == 1, scored  # judged once, to the end, by one worker
    assert stack.psql(f"select status, attempts from submissions where id = {sid}") == "scored|2"
    assert stack.psql(f"select count(*) from results where submission_id = {sid}") == "1"
    assert stack.psql(f"select count(*) from case_results where submission_id = {sid}") == "12"
    # it did die, and restart: unless-stopped brought it back
    wait_until(
        f"{holder} restarted",
        lambda: started_at(holder) != started and holder in stack.containers("worker"),
        120,
    )


@pytest.mark.timeout(900)
def test_backup_restored_into_a_stack_rebuilt_from_nothing(stack: Stack, tmp_path: Path) -> None:
    dump, data = tmp_path / "hecktor.dump", tmp_path / "hecktor-data.tar.gz"
    with dump.open("wb") as f:  # the README's commands: database first, then the data volume
        stack.compose("exec", "-T", "postgres", "pg_dump", "-U", "hecktor", "-Fc", "hecktor",
                      stdout=f, stderr=subprocess.PIPE, text=False)  # fmt: skip
    volume = f"{PROJECT}_hecktor-data"
    with data.open("wb") as f:
        run([podman(), "run", "--rm", "--network=none", "-v", f"{volume}:/data:ro",
             SERVICE_IMAGE, "tar", "-C", "/data", "-czf", "-", "."],
            stdout=f, stderr=subprocess.PIPE, text=False)  # fmt: skip
    assert dump.stat().st_size > 10_000 and data.stat().st_size > 10_000

    stack.compose("down", "-v", timeout=300)
    assert project_leftovers() == {"containers": [], "volumes": [], "networks": []}
    stack.compose("up", "-d", "postgres", "redis")
    wait_until("postgres healthy", lambda: all(
        st.endswith("(healthy)") for st in stack.containers("postgres").values()), 120)  # fmt: skip
    with dump.open("rb") as f:
        stack.compose("exec", "-T", "postgres", "pg_restore", "-U", "hecktor", "-d", "hecktor",
                      "--no-owner", stdin=f, text=False)  # fmt: skip
    with data.open("rb") as f:
        run([podman(), "run", "--rm", "-i", "--network=none", "-v", f"{volume}:/data",
             SERVICE_IMAGE, "tar", "-C", "/data", "-xzf", "-"], stdin=f, text=False)  # fmt: skip
    stack.compose("up", "-d", "--scale", "worker=2")
    wait_until("api healthy", lambda: all(
        st.endswith("(healthy)") for st in stack.containers("api").values()), 180)  # fmt: skip
    for task, rows in stack.boards.items():
        board = httpx.get(f"{stack.url}/api/v1/leaderboards/{PHASE}/{task}", timeout=30).json()
        assert [(r["team"], r["submission_id"], r["metrics"]) for r in board["rows"]] == [
            (r["team"], r["submission_id"], r["metrics"]) for r in rows
        ]
    with stack.http(stack.tokens["poor"]) as c:  # the restored token hashes
        mine = c.get("/api/v1/submissions")
        assert mine.status_code == 200 and len(mine.json()) == 3, mine.text
    # the restored data volume: the prepared ground truth judges a new upload
    path = repacked(stack, "poor", "restored")
    with stack.http(stack.tokens["poor"]) as c, path.open("rb") as f:
        r = c.post("/api/v1/submissions", data={"task": "1", "phase": PHASE},
                   files={"file": (path.name, f)}, params={"dry_run": "true"})  # fmt: skip
        assert r.status_code == 202, r.text
    (doc,) = stack.wait_scored([int(r.json()["id"])]).values()
    assert doc["status"] in ("valid", "scored"), doc


@pytest.mark.timeout(600)
def test_down_v_leaves_nothing(stack: Stack) -> None:
    stack.compose("down", "-v", timeout=300)
    assert project_leftovers() == {"containers": [], "volumes": [], "networks": []}
