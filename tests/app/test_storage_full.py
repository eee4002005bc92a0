"""A full disk or database, for real where it can be: the data folder on a 2 MB tmpfs
(mounted for the test; skipped with the reason where mounting is refused), the SQLite
database capped with ``PRAGMA max_page_count``; injected only for errors that cannot
be produced on demand (a database that keeps failing, then recovers).

- an upload that meets a full disk (while streaming to ``incoming/``, or while moving
  into ``submissions/``) or a full database answers 507 ``server storage full, retry
  later`` with ``Retry-After``, is logged, leaves no partial file, and the service
  goes on serving;
- a job that meets a full disk while judging, or whose result cannot be written,
  fails as a platform failure (error kind ``platform``) with a message for the
  participant, is never left ``running``, and does not use the team's quota.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

import app.jobs.claims as claims
from app.db.session import get_engine
from app.jobs.runner import run_job
from tests.app.conftest import RecordingDispatcher

pytestmark = pytest.mark.timeout(180)
FULL = "server storage full, retry later"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs with 1000 inodes at a temporary folder (needs root, as in CI)."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,nr_inodes=1000", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs here ({r.stderr.strip() or r.returncode})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk: Path) -> Path:
    """Write a ballast file until the disk is full; returns it (delete it to free)."""
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    return ballast


def _fill_inodes(disk: Path) -> Path:
    """Create empty files until the disk has no inode left; returns their folder."""
    folder = disk / "inodes"
    folder.mkdir()
    with contextlib.suppress(OSError):
        for i in range(100_000):
            (folder / str(i)).touch()
    return folder


def _assert_507(r: Any) -> None:
    assert r.status_code == 507, r.text
    body = r.json()
    assert body["detail"] == FULL
    assert body["errors"] == [{"case": "", "kind": "storage", "message": FULL}]
    assert int(r.headers["retry-after"]) > 0
    assert "Traceback" not in r.text


def _world(
    app_factory: Any, db_url: str, data_dir: Path, *, daily_limit: int = 1
) -> tuple[Any, str]:
    api = app_factory(
        db_url, dispatcher=RecordingDispatcher(), data_dir=data_dir, daily_limit=daily_limit
    )
    api.create_phase("p", tasks=[1, 2])
    return api, api.create_team("t")


def test_upload_to_a_full_disk_answers_507_and_the_service_keeps_serving(
    small_disk: Path,
    sqlite_url: str,
    app_factory: Any,
    challenge: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api, tok = _world(app_factory, sqlite_url, small_disk / "data")
    # streaming to incoming/: 3 MB do not fit on the 2 MB disk
    with caplog.at_level(logging.ERROR, logger="app.api.error_handlers"):
        r = api.upload(tok, "p", 2, content=os.urandom(3 << 20), filename="big.csv")
    _assert_507(r)
    assert "server storage full on POST /api/v1/submissions" in caplog.text
    assert list((small_disk / "data" / "incoming").iterdir()) == []  # the partial file is gone
    # the disk is full before the upload starts
    ballast = _fill(small_disk)
    _assert_507(api.upload(tok, "p", 2, challenge.archive("good", 2)))
    assert api.client.get("/healthz").status_code == 200  # still serving
    ballast.unlink()
    sid = api.submit_ok(tok, "p", 2, challenge.archive("good", 2))  # space again: accepted
    assert api.status(tok, sid)["status"] == "queued"


def test_moving_into_submissions_on_a_full_disk_answers_507(
    sqlite_url: str, app_factory: Any, challenge: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = Path(sqlite_url.removeprefix("sqlite:///")).parent / "d"
    api, tok = _world(app_factory, sqlite_url, data)
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if "submissions" in str(dst):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    _assert_507(api.upload(tok, "p", 2, challenge.archive("good", 2)))
    monkeypatch.setattr(os, "replace", real_replace)
    assert list((data / "incoming").iterdir()) == []
    r = api.client.get("/api/v1/submissions", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200 and r.json() == []  # no row was committed
    api.submit_ok(tok, "p", 2, challenge.archive("good", 2))  # and the quota is untouched


def _vacuum(db_url: str) -> None:
    """No free pages left in the file: the next insert that needs room must grow it."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(db_url.removeprefix("sqlite:///"))) as conn:
        conn.execute("VACUUM")


def test_a_full_database_at_upload_answers_507(
    sqlite_url: str, app_factory: Any, challenge: Any
) -> None:
    data = Path(sqlite_url.removeprefix("sqlite:///")).parent / "d"
    api, tok = _world(app_factory, sqlite_url, data, daily_limit=1000)
    engine = api.client.app.state.engine
    engine.dispose()
    _vacuum(sqlite_url)

    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        (pages,) = dbapi_conn.execute("PRAGMA page_count").fetchone()
        dbapi_conn.execute(f"PRAGMA max_page_count = {int(pages)}")

    event.listen(engine, "connect", _on_connect)
    try:
        # uploads with long names until the free room left in the file's pages is used up
        for i in range(60):
            r = api.upload(
                tok, "p", 2, challenge.archive("good", 2), filename=f"{i:03d}-" + "x" * 250
            )
            if r.status_code != 202:
                break
        _assert_507(r)
    finally:
        event.remove(engine, "connect", _on_connect)
        engine.dispose()
    assert api.client.get("/healthz").status_code == 200


def test_a_full_disk_while_judging_is_a_platform_failure_not_the_teams(
    small_disk: Path, sqlite_url: str, app_factory: Any, challenge: Any
) -> None:
    api, tok = _world(app_factory, sqlite_url, small_disk / "data")
    sid = api.submit_ok(tok, "p", 1, challenge.archive("good", 1))
    # the archive is stored; judging reads it in place, but its job folder will not fit
    ballast, inodes = _fill(small_disk), _fill_inodes(small_disk)
    try:
        assert run_job(sid, api.settings.to_dict()) == "failed"
    finally:
        ballast.unlink()
        shutil.rmtree(inodes)
    doc = api.status(tok, sid)
    assert doc["status"] == "failed"
    assert doc["errors"] == [
        {
            "case": "",
            "kind": "platform",
            "message": "the server ran out of storage while judging this submission (server "
            "storage full); this does not count against your quota, resubmit later",
        }
    ]
    jobs_tmp = small_disk / "data" / "tmp"
    assert not jobs_tmp.exists() or not list(jobs_tmp.iterdir())  # no job folder left
    # the daily limit is 1: the failed judging used none of it
    api.submit_ok(tok, "p", 1, challenge.archive("good", 1))


def test_a_result_the_full_database_cannot_store_fails_as_platform_and_is_refunded(
    sqlite_url: str, app_factory: Any, challenge: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    monkeypatch.setattr(claims, "WRITE_BACKOFF", 0.01)
    data = Path(sqlite_url.removeprefix("sqlite:///")).parent / "d"
    api, tok = _world(app_factory, sqlite_url, data)
    sid = api.submit_ok(tok, "p", 1, challenge.archive("good", 1))

    def full(*_: Any, **__: Any) -> None:  # what SQLAlchemy raises on SQLITE_FULL
        raise OperationalError(
            "INSERT INTO results ...", {}, sqlite3.OperationalError("database or disk is full")
        )

    monkeypatch.setattr(claims, "replace_result", full)
    assert run_job(sid, api.settings.to_dict()) == "failed"
    doc = api.status(tok, sid)
    assert doc["status"] == "failed" and doc["result"] is None
    assert doc["errors"] == [
        {
            "case": "",
            "kind": "platform",
            "message": "the server could not store the result (database storage full); this "
            "does not count against your quota, resubmit later",
        }
    ]
    api.submit_ok(tok, "p", 1, challenge.archive("good", 1))  # the quota (1 a day) is intact


def _db_down(n: int | None) -> Any:
    """``replace_result`` failing like an unreachable database: ``n`` times, or always."""
    calls = {"n": 0}

    def replace_result(*_: Any, **__: Any) -> None:
        calls["n"] += 1
        if n is None or calls["n"] <= n:
            raise OperationalError(
                "INSERT INTO results ...", {}, ConnectionRefusedError("connection refused")
            )
        return real(*_, **__)

    real = claims.replace_result
    return replace_result, calls


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_result_write_is_retried_then_failed_as_platform_never_left_running(
    db: str,
    tmp_path: Path,
    app_factory: Any,
    challenge: Any,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    if db == "sqlite":
        url = f"sqlite:///{tmp_path / 'db' / 'hecktor.db'}"
    else:
        from tests.app.conftest import truncate_all

        url = request.getfixturevalue("pg_database")
        truncate_all(url)
    monkeypatch.setattr(claims, "WRITE_BACKOFF", 0.01)
    api, tok = _world(app_factory, url, tmp_path / "data")
    # a database that fails twice, then recovers: the result is stored, nothing lost
    flaky, calls = _db_down(2)
    monkeypatch.setattr(claims, "replace_result", flaky)
    sid = api.submit_ok(tok, "p", 2, challenge.archive("good", 2))
    assert run_job(sid, api.settings.to_dict()) == "scored"
    assert calls["n"] == 3 and api.status(tok, sid)["status"] == "scored"
    # a database that keeps failing: after WRITE_TRIES tries, a platform failure
    down, calls = _db_down(None)
    monkeypatch.setattr(claims, "replace_result", down)
    sid2 = _second_submission(api, tok, challenge, url)
    assert run_job(sid2, api.settings.to_dict()) == "failed"
    assert calls["n"] == claims.WRITE_TRIES
    doc = api.status(tok, sid2)
    assert doc["status"] == "failed"
    assert doc["errors"][0]["kind"] == "platform"
    assert doc["errors"][0]["message"] == (
        "the server could not store the result (database unavailable); this does not count "
        "against your quota, resubmit later"
    )
    assert "Traceback" not in str(doc) and "/" not in doc["errors"][0]["message"]


def _second_submission(api: Any, tok: str, challenge: Any, url: str) -> int:
    """Another submission although the daily limit is 1: the earlier rows are moved out
    of the quota window first."""
    from datetime import timedelta

    from sqlalchemy import update

    from app.db.models import Submission, utcnow

    with get_engine(url).begin() as conn:
        conn.execute(update(Submission).values(submitted_at=utcnow() - timedelta(days=2)))
    return int(api.submit_ok(tok, "p", 2, challenge.archive("poor", 2)))
