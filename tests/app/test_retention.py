"""Retention, through HTTP and the CLI: the uploads of failed submissions and of dry
runs older than the phase's ``retention_days`` are deleted (rows, errors and results
stay, ``purged_at`` set); scored uploads, recent ones and platform failures are kept;
the service deletes them by itself at start-up and periodically; re-scoring skips
purged submissions."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from app.cli import main
from app.db.models import Phase, Submission, utcnow
from app.db.session import make_engine, session_factory
from tests.app.conftest import BAD_CSV, ORG, InlineDispatcher, auth, db_execute


def _ended_days_ago(db_url: str, sid: int, days: float) -> None:
    then = utcnow() - timedelta(days=days)
    db_execute(
        db_url,
        update(Submission)
        .where(Submission.id == sid)
        .values(submitted_at=then - timedelta(minutes=1), finished_at=then),
    )


def _purged(db_url: str) -> dict[int, bool]:
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        out = {sub.id: sub.purged_at is not None for sub in s.scalars(select(Submission))}
    engine.dispose()
    return out


def _stored(api: Any, sid: int) -> bool:
    folder = Path(api.settings.submissions_dir) / str(sid)
    return folder.is_dir() and any(folder.iterdir())


def _scenario(api: Any, db_url: str, challenge: Any) -> dict[str, int]:
    """One submission of each kind, all ended 8 days ago but ``recent`` (1 day)."""
    api.create_phase("p", daily_limit=20)
    db_execute(db_url, update(Phase).where(Phase.name == "p").values(retention_days=7))
    tok = api.create_team("t")
    api.token = tok
    csv3 = challenge.archive("good", 3)

    def bad(**kw: Any) -> int:
        r = api.upload(tok, "p", 3, content=BAD_CSV, filename="bad.csv", **kw)
        assert r.status_code == 202, r.text
        return int(r.json()["id"])

    ids = {
        "failed": bad(),
        "dry_valid": api.submit_ok(tok, "p", 3, csv3, dry_run=True),
        "dry_failed": bad(dry_run=True),
        "scored": api.submit_ok(tok, "p", 3, csv3),
        "platform": bad(),
        "recent": bad(),
    }
    for name, sid in ids.items():
        _ended_days_ago(db_url, sid, 1 if name == "recent" else 8)
    platform = [{"case": "", "kind": "internal", "message": "internal error while scoring"}]
    db_execute(
        db_url, update(Submission).where(Submission.id == ids["platform"]).values(errors=platform)
    )
    assert all(_stored(api, sid) for sid in ids.values())
    return ids


EXPIRED = ("failed", "dry_valid", "dry_failed")


def _check_purged(api: Any, db_url: str, ids: dict[str, int]) -> None:
    purged = _purged(db_url)
    for name, sid in ids.items():
        gone = name in EXPIRED
        assert purged[sid] is gone, (name, sid)
        assert _stored(api, sid) is not gone, (name, sid)
    # the rows stay readable, with their errors
    doc = api.status(api.token, ids["failed"])
    assert doc["status"] == "failed" and doc["errors"]
    assert api.status(api.token, ids["dry_valid"])["status"] == "valid"


def test_admin_purge_deletes_exactly_the_expired_uploads(
    db_url: str, app_factory: Any, challenge: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    api = app_factory(db_url, dispatcher=InlineDispatcher, retention_interval=0)
    ids = _scenario(api, db_url, challenge)
    argv = ["admin", "--data-dir", str(api.settings.data_dir), "--database-url", db_url, "purge"]
    capsys.readouterr()
    assert main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would delete 3 upload(s) of failed submissions and dry runs" in out
    for name, sid in ids.items():
        assert (f"submissions/{sid}:" in out) is (name in EXPIRED), (name, out)
    assert not any(_purged(db_url).values())  # a dry run deletes nothing
    started = time.monotonic()
    assert main(argv) == 0
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    assert (
        f"deleted submissions/{ids['failed']}: failed submission {ids['failed']} of team 't'" in out
    )
    assert f"dry run {ids['dry_valid']} of team 't', phase 'p', task 3 (valid, ended" in out
    assert "deleted 3 upload(s)" in out
    _check_purged(api, db_url, ids)
    assert elapsed < 10
    # nothing left to do the second time
    assert main(argv) == 0
    assert "deleted 0 upload(s)" in capsys.readouterr().out
    # re-scoring skips the purged failure (its upload is gone) and keeps the others
    r = api.client.post("/api/v1/admin/phases/p/rescore", json={}, headers=auth(ORG))
    assert r.status_code == 200, r.text
    queued = r.json()["queued"]
    assert ids["failed"] not in queued
    assert {ids["scored"], ids["platform"], ids["recent"]} <= set(queued)
    for sid in queued:
        assert api.status(api.token, sid)["status"] in ("scored", "failed")


def test_the_service_purges_at_start_up_and_periodically(
    sqlite_url: str, app_factory: Any, challenge: Any, tmp_path: Path
) -> None:
    api = app_factory(sqlite_url, dispatcher=InlineDispatcher, retention_interval=0)
    ids = _scenario(api, sqlite_url, challenge)
    # a second service on the same data: its start-up pass deletes the expired uploads
    svc = app_factory(
        sqlite_url,
        dispatcher=InlineDispatcher,
        data_dir=api.settings.data_dir,
        retention_interval=0.2,
        retention_batch=2,
    )
    deadline = time.monotonic() + 10
    while sum(_purged(sqlite_url).values()) < 3:
        assert time.monotonic() < deadline, _purged(sqlite_url)
        time.sleep(0.05)
    _check_purged(api, sqlite_url, ids)
    # and later ones too, once they expire
    _ended_days_ago(sqlite_url, ids["recent"], 8)
    deadline = time.monotonic() + 10
    while not _purged(sqlite_url)[ids["recent"]]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not _stored(api, ids["recent"])
    assert _stored(api, ids["scored"]) and _stored(api, ids["platform"])
    assert svc.client.get("/healthz").status_code == 200
