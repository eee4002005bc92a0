"""Database layer and jobs on SQLite and PostgreSQL: migrations, UTC times, the job's
claim (safe to run twice), replacement of results in one transaction, progress,
recovery at start-up, and the failure/leaderboard exclusions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select, text

from app.db.migrate import alembic_config, upgrade
from app.db.models import CaseResult, Phase, Result, Submission
from app.db.session import make_engine, session_factory
from app.jobs.claims import Progress, finish, recover_pending
from app.jobs.outcomes import Verdict
from app.jobs.runner import run_job
from tests.app.conftest import N_CASES, RecordingDispatcher

TABLES = {
    "phases",
    "phase_tasks",
    "ground_truth_cases",
    "teams",
    "api_tokens",
    "submissions",
    "results",
    "case_results",
    "alembic_version",
}


def test_migrations_create_the_schema_and_are_idempotent(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    upgrade(engine)  # a second start-up is a no-op
    assert set(inspect(engine).get_table_names()) >= TABLES
    with engine.connect() as conn:
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    engine.dispose()


def test_times_are_utc_aware(db_url: str, app_factory: Any) -> None:
    api = app_factory(db_url, dispatcher=RecordingDispatcher())
    api.create_phase("p", tasks=[2])
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        phase = s.scalars(select(Phase)).one()
        assert phase.created_at.tzinfo is not None
        assert abs((datetime.now(UTC) - phase.created_at).total_seconds()) < 120
    engine.dispose()


def _counts(db_url: str, sid: int) -> tuple[int, int]:
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        n_res = s.scalar(
            select(func.count()).select_from(Result).where(Result.submission_id == sid)
        )
        n_cases = s.scalar(
            select(func.count()).select_from(CaseResult).where(CaseResult.submission_id == sid)
        )
    engine.dispose()
    return int(n_res or 0), int(n_cases or 0)


def test_job_is_safe_to_run_twice_and_replaces_results(
    db_url: str, app_factory: Any, challenge: Any
) -> None:
    api = app_factory(db_url, dispatcher=RecordingDispatcher())
    api.create_phase("p")
    tok = api.create_team("t")
    sid = api.submit_ok(tok, "p", 1, challenge.archive("good", 1))
    settings = api.settings.to_dict()
    assert run_job(sid, settings) == "scored"
    assert run_job(sid, settings) == "skipped"  # no longer queued: not claimed again
    assert _counts(db_url, sid) == (1, N_CASES)
    first = api.status(tok, sid)

    # re-queue (as a re-score does) and run again: replaced, not duplicated
    engine = make_engine(db_url)
    sf = session_factory(engine)
    with sf() as s:
        s.get(Submission, sid).status = "queued"  # type: ignore[union-attr]
        s.commit()
    assert run_job(sid, settings) == "scored"
    assert _counts(db_url, sid) == (1, N_CASES)
    again = api.status(tok, sid)
    assert again["result"]["metrics"] == first["result"]["metrics"]
    with sf() as s:
        assert s.get(Submission, sid).attempts == 2  # type: ignore[union-attr]

    # a stale attempt cannot overwrite: the row belongs to attempt 2
    with sf() as s:
        s.get(Submission, sid).status = "running"  # type: ignore[union-attr]
        s.commit()
    assert finish(sf, sid, 1, Verdict(status="failed", errors=[{"message": "stale"}])) is False
    assert _counts(db_url, sid) == (1, N_CASES)
    with sf() as s:
        assert s.get(Submission, sid).status == "running"  # type: ignore[union-attr]
    engine.dispose()


def test_progress_is_stored_and_throttled(db_url: str, app_factory: Any, challenge: Any) -> None:
    api = app_factory(db_url, dispatcher=RecordingDispatcher())
    api.create_phase("p", tasks=[2])
    tok = api.create_team("t")
    sid = api.submit_ok(tok, "p", 2, challenge.archive("good", 2))
    engine = make_engine(db_url)
    sf = session_factory(engine)
    with sf() as s:
        sub = s.get(Submission, sid)
        assert sub is not None
        sub.status, sub.attempts = "running", 1
        s.commit()
    progress = Progress(sf, sid, 1, interval=3600.0)
    progress(2, 6)
    assert api.status(tok, sid)["progress"] == {"done": 2, "total": 6, "note": ""}
    progress(3, 6)  # within the interval: not written
    assert api.status(tok, sid)["progress"] == {"done": 2, "total": 6, "note": ""}
    progress(6, 6)  # the last one always is
    assert api.status(tok, sid)["progress"] == {"done": 6, "total": 6, "note": ""}
    progress_stale = Progress(sf, sid, 7, interval=0.0)  # another attempt: ignored
    progress_stale(1, 6)
    assert api.status(tok, sid)["progress"] == {"done": 6, "total": 6, "note": ""}
    engine.dispose()


def test_recover_pending_requeues_running(db_url: str, app_factory: Any, challenge: Any) -> None:
    api = app_factory(db_url, dispatcher=RecordingDispatcher())
    api.create_phase("p", tasks=[2])
    tok = api.create_team("t")
    a = api.submit_ok(tok, "p", 2, challenge.archive("good", 2))
    b = api.submit_ok(tok, "p", 2, challenge.archive("poor", 2))
    c = api.submit_ok(tok, "p", 2, challenge.archive("perfect", 2))
    engine = make_engine(db_url)
    sf = session_factory(engine)
    with sf() as s:
        s.get(Submission, b).status = "running"  # type: ignore[union-attr]
        s.get(Submission, c).status = "failed"  # type: ignore[union-attr]
        s.commit()
    with sf() as s:
        assert recover_pending(s) == [a, b]
        s.commit()
        assert s.get(Submission, b).status == "queued"  # type: ignore[union-attr]
    engine.dispose()


def test_internal_errors_fail_the_submission_with_a_message(
    db_url: str, app_factory: Any, challenge: Any
) -> None:
    api = app_factory(db_url, dispatcher=RecordingDispatcher())
    api.create_phase("p", tasks=[2])
    tok = api.create_team("t")
    sid = api.submit_ok(tok, "p", 2, challenge.archive("good", 2))
    # the stored ground truth is tampered with after import: refused, not scored
    gt_csv = next(api.settings.ground_truth_dir.rglob("*.csv"))
    gt_csv.write_text(gt_csv.read_text().replace(",1\n", ",0\n", 1))
    assert run_job(sid, api.settings.to_dict()) == "failed"
    doc = api.status(tok, sid)
    assert doc["status"] == "failed"
    assert doc["errors"][0]["kind"] == "internal" and "organizers" in doc["errors"][0]["message"]
    assert "Traceback" not in str(doc)
