"""Crashes, for real: ``hecktor-eval serve`` runs as a child process on 127.0.0.1 with
its own data folder and SQLite file, and is killed with SIGKILL (with its judging
processes) at three points:

1. during an upload: nothing half-written becomes a submission; the partial file is
   never in ``submissions/`` (uploads go to ``incoming/*.part``, are fsynced and
   renamed), and a stale one is removed at a later start;
2. right after the row is committed (the judge is frozen with SIGSTOP so the job
   cannot start): after a restart the submission is queued again and scored;
3. during judging (the row is ``running``; the judge is frozen mid-job): after a
   restart it is scored exactly once (one result, one set of per-case rows).

Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.conftest import N_CASES, ORG, auth, free_port
from tests.app.judge_hooks import pythonpath

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
JUDGE_TIMEOUT = 60.0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except OSError:
            continue
        out += [int(x) for x in text.split()]
    return out


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in _children(todo.pop()):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Server:
    """One ``python -m app serve`` process on a data folder."""

    def __init__(self, data: Path, log: Path) -> None:
        self.data = data
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "HECKTOR_ORGANIZER_TOKEN": ORG,
            "HECKTOR_PROGRESS_INTERVAL": "0",
            "HECKTOR_SWEEP_INTERVAL": "0.5",
            "HECKTOR_DAILY_LIMIT": "1000",
            "PYTHONPATH": pythonpath(REPO),
        }
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "app",
                    "serve",
                    "--data-dir",
                    str(self.data),
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                    "--log-level",
                    "warning",
                ],
                cwd=self.data.parent,
                env=env,
                stdout=logf,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.proc.poll() is None, f"server exited: {self.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start in time"
            time.sleep(0.1)

    def judges(self) -> list[int]:
        """The judging processes (spawned pool workers, not the resource tracker)."""
        assert self.proc is not None
        return [
            p
            for p in _descendants(self.proc.pid)
            if "spawn_main" in _cmdline(p) and "resource_tracker" not in _cmdline(p)
        ]

    def kill(self) -> None:
        """SIGKILL the server, then each of its descendants, by pid."""
        if self.proc is None:
            return
        family = _descendants(self.proc.pid)
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in family):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        self.proc = None

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30)

    def create_phase_and_team(self, phase: str, ground_truth: Path) -> str:
        """Create ``phase`` on ``ground_truth`` and a team "t" through the admin API;
        returns the team's token."""
        with self.client() as c:
            r = c.post(
                "/api/v1/admin/phases",
                json={"name": phase, "ground_truth": str(ground_truth)},
                headers=auth(ORG),
            )
            assert r.status_code == 201, r.text
            r = c.post("/api/v1/admin/teams", json={"name": "t"}, headers=auth(ORG))
            assert r.status_code == 201, r.text
            return str(r.json()["token"])


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


@pytest.fixture
def lab(tmp_path: Path, challenge: Any) -> Iterator[dict[str, Any]]:
    data = tmp_path / "data"
    server = Server(data, tmp_path / "server.log")
    server.start()
    token = server.create_phase_and_team("crash", challenge.ground_truth)
    try:
        yield {"server": server, "token": token, "data": data, "challenge": challenge}
    finally:
        for pid in server.judges():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        server.kill()


def _upload(lab: dict[str, Any], task: int = 1) -> int:
    with lab["server"].client() as c:
        r = c.post(
            "/api/v1/submissions",
            data={"phase": "crash", "task": str(task)},
            files={"file": ("s", lab["challenge"].archive("good", task).read_bytes())},
            headers=auth(lab["token"]),
        )
    assert r.status_code == 202, r.text
    return int(r.json()["id"])


def _wait(lab: dict[str, Any], sid: int, timeout: float = JUDGE_TIMEOUT) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with lab["server"].client() as c:
        while True:
            doc = c.get(f"/api/v1/submissions/{sid}", headers=auth(lab["token"])).json()
            if doc["status"] in ("scored", "failed"):
                return doc
            assert time.monotonic() < deadline, f"submission {sid} still {doc['status']}"
            time.sleep(0.1)


def _settled(lab: dict[str, Any], sid: int, timeout: float = JUDGE_TIMEOUT) -> None:
    """Wait until the judge has finished with scored submission ``sid``: after storing a
    result it precomputes the board's analysis, and a judge frozen while it writes that
    would hold SQLite's write lock (so every upload would wait for it)."""
    deadline = time.monotonic() + timeout
    while True:
        with _db(lab) as db:
            (task,) = db.execute("SELECT task FROM submissions WHERE id = ?", (sid,)).fetchone()
            (n,) = db.execute(
                "SELECT count(*) FROM analysis_cache WHERE task = ?", (task,)
            ).fetchone()
        if n:
            return
        assert time.monotonic() < deadline, f"no analysis precomputed for submission {sid}"
        time.sleep(0.05)


def _scored(lab: dict[str, Any], sid: int) -> None:
    """``sid`` is scored and its judge is idle again."""
    doc = _wait(lab, sid)
    assert doc["status"] == "scored", doc["errors"]
    _settled(lab, sid)


def _db(lab: dict[str, Any]) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{lab['data'] / 'hecktor.db'}?mode=ro", uri=True, timeout=30)


def _row(lab: dict[str, Any], sid: int) -> dict[str, Any]:
    with _db(lab) as db:
        status, attempts = db.execute(
            "SELECT status, attempts FROM submissions WHERE id = ?", (sid,)
        ).fetchone()
        results = db.execute("SELECT count(*) FROM results WHERE submission_id = ?", (sid,))
        n_results = results.fetchone()[0]
        cases = db.execute("SELECT count(*) FROM case_results WHERE submission_id = ?", (sid,))
        n_cases = cases.fetchone()[0]
    return {"status": status, "attempts": attempts, "results": n_results, "cases": n_cases}


def _freeze_judges(server: Server) -> list[int]:
    judges = server.judges()
    assert judges, "no judging process"
    for pid in judges:
        os.kill(pid, signal.SIGSTOP)
    return judges


def test_kill_during_upload_leaves_no_submission(lab: dict[str, Any]) -> None:
    server: Server = lab["server"]
    incoming = lab["data"] / "incoming"
    boundary = "crashboundary"
    pre = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="phase"\r\n\r\ncrash\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="task"\r\n\r\n1\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.zip"\r\n\r\n'
    ).encode()
    total = 64 << 20
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            (
                "POST /api/v1/submissions HTTP/1.1\r\n"
                f"Host: 127.0.0.1\r\nAuthorization: Bearer {lab['token']}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {len(pre) + total}\r\n\r\n"
            ).encode()
            + pre
            + b"PK\x03\x04"
        )
        chunk = bytes(1 << 20)
        deadline = time.monotonic() + 30
        # stream until the server has written part of the upload to disk, then kill it
        while not any(p.stat().st_size > (2 << 20) for p in incoming.glob("*.part")):
            sock.sendall(chunk)
            assert time.monotonic() < deadline, "the upload never reached the disk"
        server.kill()
    leftovers = list(incoming.glob("*.part"))
    assert leftovers, "expected the partial upload in incoming/"
    assert not any((lab["data"] / "submissions").iterdir())
    # the partial file is old enough to be stale at the next start
    old = time.time() - 7200
    for p in leftovers:
        os.utime(p, (old, old))
    server.start()
    with server.client() as c:
        assert c.get("/api/v1/submissions", headers=auth(ORG)).json() == []
    assert not list(incoming.glob("*.part")), "a stale partial upload was not removed"
    # and the service works: a new upload is scored
    assert _wait(lab, _upload(lab))["status"] == "scored"


def test_kill_right_after_commit_requeues_and_scores(lab: dict[str, Any]) -> None:
    server: Server = lab["server"]
    _scored(lab, _upload(lab, 2))  # the judging process exists now
    _freeze_judges(server)
    sid = _upload(lab)  # 202: the row is committed; the frozen judge cannot take it
    time.sleep(0.3)
    assert _row(lab, sid)["status"] == "queued"
    server.kill()
    server.start()
    doc = _wait(lab, sid)
    assert doc["status"] == "scored", doc["errors"]
    assert len(doc["result"]["cases"]) == N_CASES
    row = _row(lab, sid)
    assert row == {"status": "scored", "attempts": 1, "results": 1, "cases": N_CASES}


def test_kill_during_judging_scores_exactly_once(lab: dict[str, Any]) -> None:
    server: Server = lab["server"]
    _scored(lab, _upload(lab, 2))
    for _attempt in range(8):  # catch a job while it runs (it takes a fraction of a second)
        judges = _freeze_judges(server)
        sid = _upload(lab)
        for pid in judges:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + JUDGE_TIMEOUT
        status = "queued"
        while status == "queued" and time.monotonic() < deadline:
            status = _row(lab, sid)["status"]
        if status == "running":
            for pid in judges:
                os.kill(pid, signal.SIGSTOP)
            if _row(lab, sid)["status"] == "running":
                break
            for pid in judges:  # too late: the job had finished
                os.kill(pid, signal.SIGCONT)
        _scored(lab, sid)
    else:
        pytest.fail("never caught a job while it was running")
    server.kill()
    before = _row(lab, sid)
    assert before["status"] == "running" and before["attempts"] == 1 and before["results"] == 0
    server.start()
    doc = _wait(lab, sid)
    assert doc["status"] == "scored", doc["errors"]
    row = _row(lab, sid)
    assert row == {"status": "scored", "attempts": 2, "results": 1, "cases": N_CASES}
    with server.client() as c:
        board = c.get("/api/v1/leaderboards/crash/1?selection=latest").json()
    assert [(r["team"], r["submission_id"]) for r in board["rows"]] == [("t", sid)]
