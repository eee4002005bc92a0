"""Nothing is left stuck or behind, and judges are contained:

- a ``running`` row that no live judge holds is judged again by the running service
  (no restart), both databases; after ``MAX_LOST_JUDGES`` it fails as a platform failure;
  a row a live judge holds (PostgreSQL job lock, job-folder ``flock``, the local pool)
  is never touched;
- under Celery, a ``queued`` row whose message was lost is published again;
- a job's temporary files live in ``<data_dir>/tmp/job-<id>-*`` and go with it; what a
  killed job, a killed upload or a row that never got committed left behind is
  removed at start-up, and job folders also by the sweeper;
- ``SIGKILL`` on ``hecktor-eval serve`` takes its judges with it (checked in /proc);
- the judging child's environment holds no token or password (``os.environ`` and
  ``/proc/self/environ``), and it still reports its result;
- test hooks cannot run in production: ``serve``, ``worker`` and the app refuse to
  start, and a job ignores them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.db.session import make_engine
from app.jobs.claims import MAX_LOST_JUDGES
from app.jobs.local import LocalDispatcher
from app.jobs.locks import job_dir, submission_lock
from app.jobs.runner import run_job
from app.jobs.sweeper import Sweeper
from app.main import create_app
from tests.app.conftest import (
    ORG,
    InlineDispatcher,
    RecordingDispatcher,
    auth,
    make_settings,
    set_submission,
    submission_row,
)
from tests.app.judge_hooks import TEST_HOOKS_ENV, pythonpath
from tests.app.test_durability import Server, _descendants, _state

pytestmark = pytest.mark.timeout(180)
REPO = Path(__file__).resolve().parents[2]


def _wait_for(what: Any, timeout: float = 30.0, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := what()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(step)
    return got


class LocalLike(RecordingDispatcher):
    """Records submissions; holds (``in_flight``) the ids in ``held``, like the pool."""

    name = "local-like"

    def __init__(self) -> None:
        super().__init__()
        self.held: set[int] = set()

    def in_flight(self) -> set[int]:
        return set(self.held)


# -- orphaned rows ------------------------------------------------------------------------
def test_a_running_row_no_live_judge_holds_is_judged_again_without_a_restart(
    db_url: str, app_factory: Any, challenge: Any, pool: Any
) -> None:
    api = app_factory(
        db_url,
        dispatcher=lambda st: LocalDispatcher(st, executor=pool),
        sweep_interval=0.2,
        daily_limit=100,
    )
    api.create_phase("p", tasks=[2])
    tok = api.create_team("t")
    sid = api.submit_ok(tok, "p", 2, challenge.archive("good", 2))
    assert api.wait(tok, sid)["status"] == "scored"
    # its judge died mid-job (a worker killed, a result that could not be stored):
    # the row says running, nobody holds it
    set_submission(db_url, sid, status="running", attempts=1)
    started = time.monotonic()
    doc = _wait_for(lambda: (d := api.status(tok, sid))["status"] == "scored" and d, 30)
    took = time.monotonic() - started
    assert doc["status"] == "scored"
    assert submission_row(db_url, sid) == ("scored", 2, 1)
    assert took < 10, f"judged again after {took:.1f} s"
    # a submission whose judges keep dying fails after MAX_LOST_JUDGES, as the platform's fault
    set_submission(db_url, sid, status="running", attempts=MAX_LOST_JUDGES)
    doc = _wait_for(lambda: (d := api.status(tok, sid))["status"] == "failed" and d, 30)
    assert doc["errors"] == [
        {
            "case": "",
            "kind": "platform",
            "message": f"the judging process stopped unexpectedly {MAX_LOST_JUDGES} times while "
            "scoring this submission (a worker crashed or was lost); the organizers have been "
            "notified; this does not count against your quota, resubmit later",
        }
    ]


def test_the_sweeper_never_takes_a_row_from_a_live_judge(
    db_url: str, app_factory: Any, challenge: Any
) -> None:
    d = LocalLike()
    api = app_factory(db_url, dispatcher=d)
    api.create_phase("p", tasks=[2])
    tok = api.create_team("t")
    sid = api.submit_ok(tok, "p", 2, challenge.archive("good", 2))
    set_submission(db_url, sid, status="running", attempts=1)
    sweeper = Sweeper(api.settings, api.client.app.state.sessions, d)
    engine = make_engine(db_url)

    def two_looks() -> list[int]:
        return sweeper.sweep_once().requeued + sweeper.sweep_once().requeued

    # 1. the judge's job folder is flock-ed by a live process (here: this one)
    with job_dir(api.settings.data_dir, sid):
        assert two_looks() == []
    # 2. the local pool holds the job
    d.held = {sid}
    assert two_looks() == []
    d.held = set()
    # 3. PostgreSQL: the job lock is held (by a judge on another machine)
    if db_url.startswith("postgresql"):
        with submission_lock(engine, sid) as lock:
            assert lock.exclusive
            assert two_looks() == []
    assert submission_row(db_url, sid)[0] == "running" and d.submitted == [sid]  # only the upload's
    # nobody holds it: queued again at the second look, and dispatched
    assert sweeper.sweep_once().requeued == []
    assert sweeper.sweep_once().requeued == [sid]
    assert submission_row(db_url, sid)[0] == "queued" and d.submitted[-1] == sid
    engine.dispose()
    # the row a live judge claimed meanwhile (attempt 2) is not taken by a stale look
    set_submission(db_url, sid, status="running", attempts=1)
    assert sweeper.sweep_once().requeued == []  # a suspect with attempts 1
    set_submission(db_url, sid, status="running", attempts=2)  # a judge claimed it again
    assert sweeper.sweep_once().requeued == []  # attempts changed: a new suspect, no action
    assert submission_row(db_url, sid)[:2] == ("running", 2)


@pytest.mark.postgres
def test_celery_queued_rows_whose_message_was_lost_are_published_again(
    pg_database: str, app_factory: Any, challenge: Any
) -> None:
    from app.jobs.celery_dispatcher import CeleryDispatcher
    from tests.app.conftest import truncate_all

    truncate_all(pg_database)
    api = app_factory(pg_database, dispatcher=RecordingDispatcher())
    api.create_phase("p", tasks=[2])
    tok = api.create_team("t")
    lost = api.submit_ok(tok, "p", 2, challenge.archive("good", 2))  # its message: lost
    orphan = api.submit_ok(tok, "p", 2, challenge.archive("poor", 2))
    set_submission(pg_database, orphan, status="running", attempts=1)  # its worker died

    class Broker:
        def __init__(self) -> None:
            self.ids: list[int] = []

        def send_task(self, _name: str, args: list[int], **_: Any) -> None:
            self.ids.append(args[0])

    broker = Broker()
    settings = api.settings.model_copy(update={"dispatcher": "celery"})
    now = [1000.0]
    sweeper = Sweeper(
        settings,
        api.client.app.state.sessions,
        CeleryDispatcher(settings, celery=broker),
        queued_grace=60.0,
        clock=lambda: now[0],
    )
    sweeper.sweep_once()  # first look: both noted
    assert broker.ids == []
    now[0] += 10
    sweeper.sweep_once()  # the orphan is confirmed: queued again and published
    assert broker.ids == [orphan] and submission_row(pg_database, orphan)[0] == "queued"
    now[0] += 55  # the lost one has waited 65 s since it was first seen
    sweeper.sweep_once()
    assert broker.ids == [orphan, lost]
    now[0] += 3
    sweeper.sweep_once()  # neither again before another grace period
    assert broker.ids == [orphan, lost]
    # a message that arrives: claimed and judged, never published again
    assert run_job(lost, settings.to_dict()) == "scored"
    assert run_job(orphan, settings.to_dict()) == "scored"
    now[0] += 120
    sweeper.sweep_once()
    assert broker.ids == [orphan, lost]


# -- files ---------------------------------------------------------------------------------
def test_job_files_live_in_the_data_dir_and_leftovers_are_swept(
    sqlite_url: str,
    app_factory: Any,
    challenge: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tmp_path / "data"
    api = app_factory(sqlite_url, dispatcher=InlineDispatcher, data_dir=data)
    api.create_phase("p", tasks=[1])
    tok = api.create_team("t")
    hooks = tmp_path / "hooks.json"
    dump = tmp_path / "env.json"
    hooks.write_text(json.dumps({"1": {"dump_env": str(dump)}}))
    monkeypatch.setenv(TEST_HOOKS_ENV, str(hooks))
    sid = api.submit_ok(tok, "p", 1, challenge.archive("good", 1))
    assert sid == 1 and api.status(tok, sid)["status"] == "scored"
    tempdir = Path(json.loads(dump.read_text())["tempdir"])
    assert tempdir.parent == data / "tmp" and tempdir.name.startswith("job-1-")
    assert not tempdir.exists()  # removed with its job
    monkeypatch.delenv(TEST_HOOKS_ENV)
    # what killed processes left: a job folder nobody owns, a partial upload, a
    # submission folder whose row was never committed; and a job folder a live judge owns
    dead = data / "tmp" / "job-7-deadbeef"
    dead.mkdir()
    (dead / ".owner").touch()
    (dead / "hecktor-sub-x").mkdir()
    (dead / "hecktor-sub-x" / "CHUM-001.nii.gz").write_bytes(b"\0" * 4096)
    part = data / "incoming" / "0123abcd.part"
    part.write_bytes(b"PK\x03\x04half")
    rowless = data / "submissions" / "4242"
    rowless.mkdir()
    (rowless / "submission.zip").write_bytes(b"PK")
    kept = data / "submissions" / str(sid)
    assert kept.is_dir()
    release = threading.Event()
    held = threading.Event()

    def live_judge() -> None:
        with job_dir(data, 8) as path:
            (path / "work").write_bytes(b"x")
            held.set()
            release.wait(30)

    judge = threading.Thread(target=live_judge)
    judge.start()
    assert held.wait(10)
    try:
        again = app_factory(sqlite_url, dispatcher=RecordingDispatcher(), data_dir=data)
        assert again.client.get("/healthz").status_code == 200
        assert not dead.exists() and not part.exists() and not rowless.exists()
        assert kept.is_dir()
        live = [p for p in (data / "tmp").iterdir() if p.name.startswith("job-8-")]
        assert len(live) == 1 and (live[0] / "work").exists()  # a live judge's: kept
        # the sweeper of a running service removes leftovers too
        dead.mkdir()
        (dead / ".owner").touch()
        sweeper = Sweeper(again.settings, again.client.app.state.sessions, RecordingDispatcher())
        assert sweeper.sweep_once().tmp_removed == 1 and not dead.exists()
        assert live[0].exists()
    finally:
        release.set()
        judge.join(10)
    assert not live[0].exists()


# -- a killed server takes its judges with it -------------------------------------------
@pytest.fixture
def live_server(tmp_path: Path, challenge: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real ``hecktor-eval serve`` (SQLite) with test hooks at ``tmp_path/hooks.json``,
    a phase "p" and a team; yields ``(server, team token, hooks path)``."""
    hooks = tmp_path / "hooks.json"
    hooks.write_text("{}")
    monkeypatch.setenv(TEST_HOOKS_ENV, str(hooks))
    server = Server(tmp_path / "data", tmp_path / "server.log")
    server.start()
    try:
        token = server.create_phase_and_team("p", challenge.ground_truth)
        yield server, token, hooks
    finally:
        server.kill()


def _upload(server: Server, token: str, challenge: Any, task: int = 2) -> int:
    with server.client() as c:
        r = c.post(
            "/api/v1/submissions",
            data={"phase": "p", "task": str(task)},
            files={"file": ("s", challenge.archive("good", task).read_bytes())},
            headers=auth(token),
        )
    assert r.status_code == 202, r.text
    return int(r.json()["id"])


def _status(server: Server, token: str, sid: int) -> dict[str, Any]:
    with server.client() as c:
        return dict(c.get(f"/api/v1/submissions/{sid}", headers=auth(token)).json())


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and _state(pid) != "Z"


@pytest.mark.slow
def test_a_sweep_while_a_job_folder_is_being_created_leaves_it_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweeper runs between the owner file's creation and its lock (forced here):
    the folder of the job being set up is not taken for an orphan."""
    from app.jobs import locks

    real_flock = locks._flock
    swept: list[int] = []

    def flock_after_a_sweep(fd: int, *, block: bool) -> bool:
        if block and not swept:
            swept.append(locks.remove_orphaned_job_dirs(tmp_path))
        return real_flock(fd, block=block)

    monkeypatch.setattr(locks, "_flock", flock_after_a_sweep)
    with job_dir(tmp_path, 7) as path:
        assert swept == [0]
        assert path.is_dir() and (path / locks.OWNER_FILE).is_file()
        (path / "member.nii.gz").write_bytes(b"x")  # the job can use its folder
        assert locks.remove_orphaned_job_dirs(tmp_path) == 0  # owned: left alone
    assert not path.exists()


def test_a_killed_server_leaves_no_judges_behind(live_server: Any, challenge: Any) -> None:
    server, token, hooks = live_server
    hooks.write_text(json.dumps({"1": {"sleep": 120}}))  # the job sleeps inside its child
    sid = _upload(server, token, challenge)
    assert sid == 1
    _wait_for(lambda: _status(server, token, sid)["status"] == "running")
    assert server.proc is not None
    pool = server.judges()
    assert pool, "no judging process"
    # the job's own child (forked by the pool process) is there, sleeping
    children = _wait_for(lambda: [p for j in pool for p in _descendants(j)], 10)
    family = _descendants(server.proc.pid)
    assert set(pool) | set(children) <= set(family)
    os.kill(server.proc.pid, signal.SIGKILL)  # the server only: not its descendants
    server.proc.wait(timeout=10)
    started = time.monotonic()
    while any(_alive(p) for p in pool + children) and time.monotonic() - started < 5:
        time.sleep(0.02)
    gone_after = time.monotonic() - started
    left = [p for p in pool + children if _alive(p)]
    for pid in left:  # do not leak them into the rest of the run
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.proc = None
    assert not left, f"judges still alive after SIGKILL of the server: {left}"
    assert gone_after < 2.0, f"judges outlived the server by {gone_after:.2f} s"


# -- secrets -----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.postgres
def test_the_judging_child_sees_no_secret_and_still_reports(
    tmp_path: Path, challenge: Any, monkeypatch: pytest.MonkeyPatch, pg_database: str
) -> None:
    from tests.app.conftest import truncate_all

    truncate_all(pg_database)
    db_password, broker_password = "db-pw-" + secrets.token_hex(8), "rd-pw-" + secrets.token_hex(8)
    other = "aws-" + secrets.token_hex(8)
    # trust authentication: PostgreSQL ignores the password, the processes still get it
    db_url = pg_database.replace("postgres@", f"postgres:{db_password}@", 1)
    monkeypatch.setenv("HECKTOR_DATABASE_URL", db_url)
    monkeypatch.setenv("HECKTOR_BROKER_URL", f"redis://:{broker_password}@127.0.0.1:6379/0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", other)
    monkeypatch.setenv("PGPASSWORD", db_password)
    dump = tmp_path / "env.json"
    hooks = tmp_path / "hooks.json"
    hooks.write_text(json.dumps({"1": {"dump_env": str(dump)}}))
    monkeypatch.setenv(TEST_HOOKS_ENV, str(hooks))
    server = Server(tmp_path / "data", tmp_path / "server.log")
    server.start()
    try:
        token = server.create_phase_and_team("p", challenge.ground_truth)
        sid = _upload(server, token, challenge)
        assert sid == 1
        doc = _wait_for(
            lambda: (d := _status(server, token, sid))["status"] in ("scored", "failed") and d, 60
        )
        assert doc["status"] == "scored", doc["errors"]  # the child reported without a DB
        seen = json.loads(dump.read_text())
    finally:
        server.kill()
    # the serving process was started with every secret; its judging child has none of
    # them, in os.environ nor in /proc/self/environ
    everything = json.dumps(seen["environ"]) + seen["proc_environ"]
    for secret in (ORG, db_password, broker_password, other):
        assert secret not in everything, secret
    assert "HECKTOR_ORGANIZER_TOKEN" not in seen["environ"]
    assert "AWS_SECRET_ACCESS_KEY" not in seen["environ"] and "PGPASSWORD" not in seen["environ"]
    masked = seen["environ"]["HECKTOR_DATABASE_URL"]
    assert masked == db_url.replace(db_password, "*" * len(db_password))


# -- test hooks in production --------------------------------------------------------------
def _production_env(tmp_path: Path, pg: str = "") -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": pythonpath(REPO),
        "HECKTOR_MODE": "production",
        "HECKTOR_PUBLIC_URL": "https://challenge.example.org",
        "HECKTOR_ORGANIZER_TOKEN": secrets.token_urlsafe(32),
        "HECKTOR_BROKER_URL": f"redis://:{secrets.token_urlsafe(24)}@127.0.0.1:6379/0",
        "HECKTOR_DATA_DIR": str(tmp_path / "data"),
        TEST_HOOKS_ENV: str(tmp_path / "hooks.json"),
    }
    if pg:
        env["HECKTOR_DATABASE_URL"] = pg
    return env


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_and_worker_refuse_to_start_with_test_hooks_in_production(
    command: str, tmp_path: Path
) -> None:
    pg = "postgresql+psycopg://postgres:" + secrets.token_urlsafe(24) + "@127.0.0.1:5432/test"
    argv = [sys.executable, "-m", "app", command]
    if command == "serve":
        argv += ["--port", "1"]  # never reached
    r = subprocess.run(
        argv,
        env=_production_env(tmp_path, pg),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode != 0
    assert f"{TEST_HOOKS_ENV} is set" in r.stderr and "production" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def _production_settings(data_dir: Path, db_url: str) -> Any:
    return make_settings(
        data_dir,
        db_url,
        mode="production",
        public_url="https://challenge.example.org",
        organizer_token=secrets.token_urlsafe(32),
    )


def test_the_app_refuses_to_start_and_jobs_ignore_test_hooks_in_production(
    sqlite_url: str,
    app_factory: Any,
    challenge: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = app_factory(sqlite_url, dispatcher=RecordingDispatcher())
    api.create_phase("p", tasks=[2])
    tok = api.create_team("t")
    sid = api.submit_ok(tok, "p", 2, challenge.archive("good", 2))
    hooks = tmp_path / "hooks.json"
    hooks.write_text(json.dumps({str(sid): {"signal": "SIGKILL"}}))  # would kill the judge
    monkeypatch.setenv(TEST_HOOKS_ENV, str(hooks))
    production = _production_settings(api.settings.data_dir, sqlite_url)
    app = create_app(production, dispatcher=RecordingDispatcher())
    with pytest.raises(RuntimeError, match=f"{TEST_HOOKS_ENV} is set.*production"), TestClient(app):
        pass
    # a job (e.g. of a worker started before the variable was set) ignores them
    assert run_job(sid, production.to_dict()) == "scored"
    assert api.status(tok, sid)["status"] == "scored"
    # in development they act: the job's child is killed as the hook says
    sid2 = api.submit_ok(tok, "p", 2, challenge.archive("poor", 2))
    hooks.write_text(json.dumps({str(sid2): {"signal": "SIGKILL"}}))
    assert run_job(sid2, api.settings.to_dict()) == "failed"
    assert "killed by signal SIGKILL" in api.status(tok, sid2)["errors"][0]["message"]
