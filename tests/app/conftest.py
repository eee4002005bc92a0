"""Fixtures for the service tests: a small synthetic challenge (once per session), the
databases (a fresh SQLite file per test; one fresh PostgreSQL database per session,
tables truncated before each test), apps with a real or a test dispatcher, and a
live server for the CLI and browser tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from app.db.migrate import upgrade
from app.db.models import Base, Result, Submission
from app.db.session import make_engine, session_factory
from app.jobs.base import Dispatcher
from app.jobs.local import LocalDispatcher
from app.jobs.runner import run_job
from app.main import create_app
from app.settings import Settings
from tests.app import judge_hooks

ORG = "organizer-token-for-tests-0123456789abcdef"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
N_CASES = 6
# a task 2 or 3 table whose ids are none of the cases: accepted, then judged and failed
BAD_CSV = b"PatientID,Prediction\n" + b"".join(f"X-{i},0.5\n".encode() for i in range(3))


# The test hooks act in this process (and its forked judging children) and, through
# PYTHONPATH, in every process the tests start (spawned pool processes, servers, workers).
judge_hooks.install()
# the tests upload the same synthetic files again and again, to servers in this process
# and to those they start (tests/app/test_visible_state.py turns the refusal on)
os.environ.setdefault("HECKTOR_REFUSE_DUPLICATES", "false")
os.environ["PYTHONPATH"] = judge_hooks.pythonpath(
    *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)


# -- synthetic data -----------------------------------------------------------------------
class Challenge:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ground_truth = root / "ground_truth"
        self.submissions = root / "submissions"

    def archive(self, team: str, task: int) -> Path:
        for name in {1: ("task1.zip",), 2: ("task2.csv",), 3: ("task3.csv",)}[task]:
            p = self.submissions / team / name
            if p.exists():
                return p
        raise FileNotFoundError(f"{team} task {task}")

    def predictions(self, team: str) -> dict[str, bytes]:
        """The members of ``team``'s task-1 archive by file name (``<PatientID>.nii.gz``)."""
        with zipfile.ZipFile(self.archive(team, 1)) as zf:
            return {n.rsplit("/", 1)[-1]: zf.read(n) for n in zf.namelist() if n.endswith(".gz")}


@pytest.fixture(scope="session")
def challenge(tmp_path_factory: pytest.TempPathFactory) -> Challenge:
    from evaluator.synth import generate_challenge

    root = tmp_path_factory.mktemp("challenge") / "c"
    generate_challenge(root, seed=0, small=True, n_cases=N_CASES)
    return Challenge(root)


# -- databases --------------------------------------------------------------------------
def _pg_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (one per xdist worker)."""
    if not _pg_available():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    import psycopg

    name = f"hecktor_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    from app.db.session import dispose_engines

    dispose_engines()
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def truncate_all(url: str) -> None:
    engine = make_engine(url)
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


def db_execute(db_url: str, stmt: Any) -> None:
    """Run one statement in its own committed transaction, outside the service."""
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        s.execute(stmt)
        s.commit()
    engine.dispose()


def set_submission(db_url: str, sid: int, **values: Any) -> None:
    """Write ``values`` into submission ``sid``'s row directly: states the API never makes
    on request (a judge that died mid-job, an upload of yesterday)."""
    db_execute(db_url, update(Submission).where(Submission.id == sid).values(**values))


def submission_row(db_url: str, sid: int) -> tuple[str, int, int]:
    """Submission ``sid`` as stored: its status, its attempts and how many result rows it has."""
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        sub = s.get(Submission, sid)
        assert sub is not None
        n = len(list(s.scalars(select(Result).where(Result.submission_id == sid))))
        out = (sub.status, sub.attempts, n)
    engine.dispose()
    return out


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both backends: a fresh SQLite file, or the session's PostgreSQL DB, truncated."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'hecktor.db'}"
    url = request.getfixturevalue("pg_database")
    truncate_all(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'hecktor.db'}"


def make_settings(data_dir: Path, db_url: str, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": db_url,
        "organizer_token": ORG,
        "workers": 2,
        "progress_interval": 0.0,
        "sweep_interval": 0.0,
        "log_level": "warning",
        # the tests upload the same synthetic files again and again
        "refuse_duplicates": False,
    }
    values.update(kw)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# -- dispatchers ------------------------------------------------------------------------
class RecordingDispatcher(Dispatcher):
    """Records what would be judged; judges nothing (rows stay queued)."""

    name = "recording"

    def __init__(self) -> None:
        self.submitted: list[int] = []

    def submit(self, submission_id: int) -> None:
        self.submitted.append(submission_id)


class InlineDispatcher(Dispatcher):
    """Judges at once, in the calling thread (fast, for tests that need scores)."""

    name = "inline"

    def __init__(self, settings: Settings) -> None:
        self.settings_dict = settings.to_dict()
        self.results: dict[int, str] = {}

    def submit(self, submission_id: int) -> None:
        self.results[submission_id] = run_job(submission_id, self.settings_dict)


@pytest.fixture(scope="session")
def pool() -> Iterator[ProcessPoolExecutor]:
    """One real spawn-context process pool for the session (the local dispatcher's)."""
    ex = LocalDispatcher.make_executor(2, "spawn", "warning")
    yield ex
    ex.shutdown(wait=True, cancel_futures=True)


# -- apps and clients ---------------------------------------------------------------------
def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def login(client: TestClient, token: str) -> None:
    """Sign ``client`` in through the login form, as a browser on this site does (its
    Origin header); the client's cookie jar then holds the session cookie."""
    origin = str(client.base_url).rstrip("/")
    r = client.post(
        "/login", data={"token": token}, headers={"Origin": origin}, follow_redirects=False
    )
    assert r.status_code == 303, r.text


class Api:
    """A TestClient plus helpers that go through HTTP."""

    def __init__(self, client: TestClient, challenge: Challenge | None = None) -> None:
        self.client = client
        self.challenge = challenge

    def create_phase(self, name: str = "val", **kw: Any) -> dict[str, Any]:
        assert self.challenge is not None
        body = {"name": name, "ground_truth": str(self.challenge.ground_truth), "tasks": [1, 2, 3]}
        body.update(kw)
        r = self.client.post("/api/v1/admin/phases", json=body, headers=auth(ORG))
        assert r.status_code == 201, r.text
        return r.json()

    def create_team(self, name: str) -> str:
        r = self.client.post("/api/v1/admin/teams", json={"name": name}, headers=auth(ORG))
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def upload(
        self,
        token: str | None,
        phase: str,
        task: int,
        path: Path | None = None,
        *,
        content: bytes | None = None,
        filename: str | None = None,
        dry_run: bool = False,
    ) -> Any:
        if content is None:
            assert path is not None
            content = path.read_bytes()
        fname = filename or (path.name if path is not None else "upload.bin")
        return self.client.post(
            "/api/v1/submissions",
            params={"dry_run": "true"} if dry_run else None,
            data={"phase": phase, "task": str(task)},
            files={"file": (fname, content, "application/octet-stream")},
            headers=auth(token),
        )

    def submit_ok(self, token: str, phase: str, task: int, path: Path, **kw: Any) -> int:
        r = self.upload(token, phase, task, path, **kw)
        assert r.status_code == 202, r.text
        return int(r.json()["id"])

    def status(self, token: str, sid: int) -> dict[str, Any]:
        r = self.client.get(f"/api/v1/submissions/{sid}", headers=auth(token))
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, token: str, sid: int, timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            doc = self.status(token, sid)
            if doc["status"] in ("scored", "valid", "failed"):
                return doc
            assert time.monotonic() < deadline, f"submission {sid} still {doc['status']}"
            time.sleep(0.1)

    def leaderboard(self, phase: str, task: int, token: str | None = None) -> dict[str, Any]:
        r = self.client.get(f"/api/v1/leaderboards/{phase}/{task}", headers=auth(token))
        assert r.status_code == 200, r.text
        return r.json()


@contextmanager
def judged_service(
    tmp: Path, challenge: Challenge, **kw: Any
) -> Iterator[tuple[Api, LocalDispatcher]]:
    """A service on a fresh SQLite database under ``tmp`` whose jobs run in a real local
    dispatcher (two spawn judges under the settings' limits); ``kw`` are settings."""
    settings = make_settings(tmp / "data", f"sqlite:///{tmp / 'hecktor.db'}", **kw)
    d = LocalDispatcher(settings, max_workers=2)
    d.start()
    client = TestClient(create_app(settings, dispatcher=d), raise_server_exceptions=False)
    try:
        with client:
            yield Api(client, challenge), d
    finally:
        d.shutdown(wait=True)


def local_on(pool: ProcessPoolExecutor) -> Callable[[Settings], LocalDispatcher]:
    """A dispatcher factory for ``app_factory``: a started local dispatcher whose judges
    are the processes of the shared ``pool``."""

    def make(settings: Settings) -> LocalDispatcher:
        d = LocalDispatcher(settings, executor=pool)
        d.start()
        return d

    return make


def judge_pids(d: LocalDispatcher) -> list[int]:
    """The process ids of a local dispatcher's judging processes."""
    return list(getattr(d._executor, "_processes", {}) or {})


@pytest.fixture
def app_factory(tmp_path: Path, challenge: Challenge) -> Iterator[Callable[..., Api]]:
    """``app_factory(db_url, dispatcher=..., **settings)`` -> a started :class:`Api`."""
    clients: list[TestClient] = []

    def _make(
        db_url: str,
        *,
        dispatcher: Dispatcher | Callable[[Settings], Dispatcher] | None = None,
        data_dir: Path | None = None,
        **kw: Any,
    ) -> Api:
        settings = make_settings(data_dir or tmp_path / "data", db_url, **kw)
        d = (
            dispatcher(settings)
            if callable(dispatcher) and not isinstance(dispatcher, Dispatcher)
            else dispatcher
        )
        client = TestClient(create_app(settings, dispatcher=d), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        api = Api(client, challenge)
        api.settings = settings  # type: ignore[attr-defined]
        api.dispatcher = d  # type: ignore[attr-defined]
        return api

    yield _make
    for c in reversed(clients):
        c.__exit__(None, None, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- a real server and a headless Chromium (tests/app/test_browser*.py) -----------------


@contextmanager
def served(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free local port, in a thread: yields its base URL."""
    from app.cli.demo import ServerThread

    port = free_port()
    server = ServerThread(app, "127.0.0.1", port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium for the session (skips when it is not installed)."""
    exe = next(
        (p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))),
        None,
    )
    if exe is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def check_answer(r: Any, want: int, *, role: str, method: str, path: str) -> None:
    """An access-matrix answer: the expected status; API errors as ``{detail, errors}``
    with ``WWW-Authenticate: Bearer`` on 401; never a traceback."""
    assert r.status_code == want, (role, method, path, r.text[:300])
    assert "Traceback" not in r.text
    if r.status_code >= 400 and path.startswith("/api/"):
        body = r.json()
        assert set(body) == {"detail", "errors"} and isinstance(body["detail"], str)
    if r.status_code == 401 and path.startswith("/api/"):
        assert r.headers.get("www-authenticate") == "Bearer"
