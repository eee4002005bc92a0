"""Daily allowances beside the quota, through HTTP: dry runs (count and bytes) and
failed submissions (count and bytes), refused with 429, ``Retry-After`` and a message
saying what was used of what; platform failures cost the team nothing; N parallel
uploads never get past an allowance (SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app.db.models import Phase, Submission, utcnow
from app.db.session import make_engine, session_factory
from tests.app.conftest import BAD_CSV, InlineDispatcher, RecordingDispatcher, db_execute


def _phase(api: Any, db_url: str, name: str, **allowances: Any) -> None:
    """A phase created through the API, with its allowances set in the database."""
    api.create_phase(name, daily_limit=allowances.pop("daily_limit", 5))
    if allowances:
        db_execute(db_url, update(Phase).where(Phase.name == name).values(**allowances))


def _age(db_url: str, sid: int, hours: float) -> None:
    then = utcnow() - timedelta(hours=hours)
    db_execute(db_url, update(Submission).where(Submission.id == sid).values(submitted_at=then))


def _refused(r: Any, kind: str) -> str:
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["errors"][0]["kind"] == kind
    assert "Traceback" not in r.text
    return str(body["detail"])


def _retry_after(r: Any) -> int:
    retry = int(r.headers["retry-after"])
    assert 0 < retry <= 24 * 3600 + 1
    assert r.headers["x-next-slot"].endswith("Z")
    return retry


def test_dry_runs_are_counted_even_when_the_quota_is_used_up(
    db_url: str, app_factory: Any, challenge: Any
) -> None:
    api = app_factory(db_url, dispatcher=RecordingDispatcher())
    _phase(api, db_url, "p", daily_limit=1, dry_run_limit=2)
    tok = api.create_team("t")
    csv2 = challenge.archive("good", 2)
    api.submit_ok(tok, "p", 2, csv2)
    assert api.upload(tok, "p", 2, csv2).status_code == 429  # the quota is used up
    first = api.submit_ok(tok, "p", 2, csv2, dry_run=True)
    api.submit_ok(tok, "p", 2, csv2, dry_run=True)
    r = api.upload(tok, "p", 2, csv2, dry_run=True)
    detail = _refused(r, "dry_run_allowance")
    assert "dry-run allowance reached: 2 of 2 dry runs" in detail
    assert "of 8.0 GiB uploaded for phase 'p', task 2 in the last 24 hours" in detail
    assert "the next dry run is accepted from" in detail
    assert _retry_after(r) > 23 * 3600  # both dry runs are minutes old
    assert not any(api.settings.incoming_dir.iterdir())
    # other tasks and other teams have allowances of their own
    api.submit_ok(tok, "p", 3, challenge.archive("good", 3), dry_run=True)
    api.submit_ok(api.create_team("u"), "p", 2, csv2, dry_run=True)
    # the window is 24 hours: the oldest dry run leaving it frees one slot
    _age(db_url, first, 25)
    api.submit_ok(tok, "p", 2, csv2, dry_run=True)
    assert api.upload(tok, "p", 2, csv2, dry_run=True).status_code == 429
    # a phase that takes no dry runs says so
    _phase(api, db_url, "q", dry_run_limit=0)
    r = api.upload(tok, "q", 2, csv2, dry_run=True)
    assert "accepts no dry runs (dry-run allowance 0)" in _refused(r, "dry_run_allowance")


def test_dry_run_bytes_count_this_upload(db_url: str, app_factory: Any, challenge: Any) -> None:
    csv2 = challenge.archive("good", 2)
    size = csv2.stat().st_size
    api = app_factory(db_url, dispatcher=RecordingDispatcher())
    _phase(api, db_url, "p", dry_run_limit=100, dry_run_bytes=2 * size + size // 2)
    tok = api.create_team("t")
    api.submit_ok(tok, "p", 2, csv2, dry_run=True)
    api.submit_ok(tok, "p", 2, csv2, dry_run=True)
    # 2.5 sizes allowed, 2 used: this upload would make 3
    r = api.upload(tok, "p", 2, csv2, dry_run=True)
    detail = _refused(r, "dry_run_allowance")
    assert f"2 of 100 dry runs, {size * 2} bytes of {size * 2 + size // 2} bytes uploaded" in detail
    _retry_after(r)
    # a small one still fits
    small = b"PatientID,Prediction\nA-1,0.5\n"
    assert len(small) < size // 2
    assert api.upload(tok, "p", 2, content=small, filename="s.csv", dry_run=True).status_code == 202
    # a single dry run larger than the whole allowance can never pass: 413, not "retry"
    db_execute(db_url, update(Phase).where(Phase.name == "p").values(dry_run_bytes=size - 1))
    r = api.upload(api.create_team("u"), "p", 2, csv2, dry_run=True)
    assert r.status_code == 413, r.text
    assert "is larger than the daily dry-run allowance of" in r.json()["detail"]
    assert "retry-after" not in r.headers
    # bytes used beyond the allowance: refused before the upload is read (precheck)
    r = api.upload(tok, "p", 2, content=small, filename="s.csv", dry_run=True)
    assert f"{2 * size + len(small)} bytes of {size - 1} bytes" in _refused(r, "dry_run_allowance")
    assert not any(api.settings.incoming_dir.iterdir())


def test_failed_submissions_are_bounded_and_point_to_dry_runs(
    db_url: str, app_factory: Any, challenge: Any
) -> None:
    api = app_factory(db_url, dispatcher=InlineDispatcher)
    _phase(api, db_url, "p", daily_limit=5, failed_limit=2, dry_run_limit=2)
    tok = api.create_team("t")
    csv3 = challenge.archive("good", 3)
    fails = []
    for _ in range(2):
        r = api.upload(tok, "p", 3, content=BAD_CSV, filename="bad.csv")
        assert r.status_code == 202, r.text
        fails.append(r.json()["id"])
        assert api.status(tok, fails[-1])["status"] == "failed"
    # failures use no quota, but two of them close real submissions for the day
    r = api.upload(tok, "p", 3, csv3)
    detail = _refused(r, "failed_allowance")
    assert "too many failed submissions: 2 of 2 failed submissions" in detail
    assert "for phase 'p', task 3 in the last 24 hours" in detail
    assert "check the archive with a dry run first (?dry_run=true" in detail
    assert "(0 of 2 dry runs used)" in detail
    assert "Submissions are accepted again from" in detail
    _retry_after(r)
    # a dry run is still accepted, and finds the problems without being scored
    r = api.upload(tok, "p", 3, content=BAD_CSV, filename="bad.csv", dry_run=True)
    assert r.status_code == 202 and api.status(tok, r.json()["id"])["status"] == "failed"
    api.submit_ok(tok, "p", 3, csv3, dry_run=True)
    # with the dry runs used up as well, the message says when either opens
    r = api.upload(tok, "p", 3, csv3)
    detail = _refused(r, "failed_allowance")
    assert "the dry runs are used up too (2 of 2 dry runs" in detail
    assert "accepted again: the next dry run from" in detail
    assert ", the next submission from" in detail
    _retry_after(r)
    # other tasks are not affected
    api.submit_ok(tok, "p", 2, challenge.archive("good", 2))
    # a failure of the platform (its errors all of a platform kind) is not the team's
    platform = [{"case": "", "kind": "internal", "message": "internal error while scoring"}]
    db_execute(db_url, update(Submission).where(Submission.id == fails[0]).values(errors=platform))
    sid = api.submit_ok(tok, "p", 3, csv3)
    assert api.status(tok, sid)["status"] == "scored"
    # the window: the other failure leaving it frees the allowance
    assert api.upload(tok, "p", 3, content=BAD_CSV, filename="bad.csv").status_code == 202
    assert api.upload(tok, "p", 3, csv3).status_code == 429
    _age(db_url, fails[1], 25)
    assert api.upload(tok, "p", 3, csv3).status_code == 202


def test_failed_bytes_are_bounded(db_url: str, app_factory: Any, challenge: Any) -> None:
    api = app_factory(db_url, dispatcher=InlineDispatcher)
    _phase(api, db_url, "p", failed_limit=100, failed_bytes=len(BAD_CSV) + 10)
    tok = api.create_team("t")
    api.upload(tok, "p", 3, content=BAD_CSV, filename="bad.csv")
    api.upload(tok, "p", 3, content=BAD_CSV, filename="bad.csv")  # over: this one is judged
    r = api.upload(tok, "p", 3, challenge.archive("good", 3))
    detail = _refused(r, "failed_allowance")
    n = 2 * len(BAD_CSV)
    assert f"2 of 100 failed submissions, {n} bytes of {len(BAD_CSV) + 10} bytes" in detail


@contextlib.contextmanager
def _without_thread_lock(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """On PostgreSQL, take the in-process lock away, so that the threads race as separate
    processes would and only the database's row lock keeps the allowance."""
    if db_url.startswith("postgresql"):
        from app.services import submissions

        monkeypatch.setattr(submissions, "_quota_lock", contextlib.nullcontext())
    yield


@pytest.mark.parametrize("limit_by", ["count", "bytes"])
def test_parallel_dry_runs_never_exceed_the_allowance(
    db_url: str,
    app_factory: Any,
    challenge: Any,
    monkeypatch: pytest.MonkeyPatch,
    limit_by: str,
) -> None:
    csv2 = challenge.archive("good", 2)
    size = csv2.stat().st_size
    api = app_factory(db_url, dispatcher=RecordingDispatcher())
    allowance = (
        {"dry_run_limit": 5} if limit_by == "count" else {"dry_run_bytes": 5 * size + size // 2}
    )
    _phase(api, db_url, "p", **allowance)
    tok = api.create_team("t")
    content = csv2.read_bytes()
    n = 16
    barrier = threading.Barrier(n)

    def one(_: int) -> int:
        barrier.wait()
        r = api.upload(tok, "p", 2, content=content, filename="p.csv", dry_run=True)
        return int(r.status_code)

    started = time.monotonic()
    with _without_thread_lock(db_url, monkeypatch), ThreadPoolExecutor(n) as pool:
        codes = list(pool.map(one, range(n)))
    elapsed = time.monotonic() - started
    assert sorted(codes) == [202] * 5 + [429] * (n - 5), codes
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        stored = s.scalar(select(func.count(Submission.id)).where(Submission.dry_run.is_(True)))
    engine.dispose()
    assert stored == 5
    assert elapsed < 30
