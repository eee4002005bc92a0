"""The whole path through HTTP with the real local dispatcher (a spawn process pool):
upload -> queued -> running -> scored -> leaderboard, on SQLite and on PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from typing import Any

from sqlalchemy import func, select, update

from app.db.models import CaseResult, Result, Submission
from app.db.session import make_engine, session_factory
from tests.app.conftest import N_CASES, ORG, RecordingDispatcher, auth, local_on

TEAMS = ("perfect", "good", "mediocre", "poor")


def test_submit_score_leaderboard(
    db_url: str, app_factory: Any, pool: ProcessPoolExecutor, challenge: Any
) -> None:
    api = app_factory(db_url, dispatcher=local_on(pool))
    phase = api.create_phase("validation")
    assert next(t["n_cases"] for t in phase["task_details"]) == N_CASES
    tokens = {team: api.create_team(team) for team in TEAMS}
    ids: dict[tuple[str, int], int] = {}
    for team in TEAMS:
        for task in (1, 2, 3):
            r = api.upload(tokens[team], "validation", task, challenge.archive(team, task))
            assert r.status_code == 202, r.text
            body = r.json()
            assert body["status"] == "queued" and body["url"] == f"/api/v1/submissions/{body['id']}"
            ids[team, task] = body["id"]
    docs = {k: api.wait(tokens[k[0]], sid) for k, sid in ids.items()}
    for (team, task), doc in docs.items():
        assert doc["status"] == "scored", (team, task, doc["errors"])
        assert doc["progress"]["done"] == doc["progress"]["total"] > 0
        res = doc["result"]
        assert res["task"] == task and res["protocol"]["name"] == "hecktor2025"
        assert len(res["cases"]) == doc["progress"]["total"]
        assert res["submission_sha256"] and res["ground_truth_sha256"]
    # the perfect team scores perfectly
    assert docs["perfect", 1]["result"]["metrics"]["gtvp_dsc_mean"] == 1.0
    assert docs["perfect", 2]["result"]["metrics"]["c_index"] == 1.0
    assert docs["perfect", 3]["result"]["metrics"]["auc"] == 1.0

    for task in (1, 2, 3):
        board = api.leaderboard("validation", task)
        assert board["phase"] == "validation" and board["task"] == task
        rows = board["rows"]
        assert {r["team"] for r in rows} == set(TEAMS)
        assert rows[0]["team"] == "perfect" and rows[0]["rank"] == 1.0
        assert [r["rank"] for r in rows] == sorted(r["rank"] for r in rows)
        for r in rows:
            assert r["submission_id"] == ids[r["team"], task]
            assert r["ranks"]["final"] == r["rank"]
            assert set(r) == {
                "rank",
                "team",
                "submission_id",
                "metrics",
                "ranks",
                "submitted_at",
                "scored_at",
            }
    # the synthetic teams in their quality order on the segmentation task
    assert [r["team"] for r in api.leaderboard("validation", 1)["rows"]] == list(TEAMS)

    # per-case CSV through the API
    r = api.client.get(
        f"/api/v1/submissions/{ids['good', 1]}/cases.csv", headers=auth(tokens["good"])
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    assert lines[0].startswith("patient_id,") and len(lines) == N_CASES + 1

    # stored rows: one result and N per-case rows per submission
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        assert s.scalar(select(func.count(Result.submission_id))) == len(ids)
        assert (
            s.scalar(
                select(func.count(CaseResult.id)).where(CaseResult.submission_id == ids["good", 1])
            )
            == N_CASES
        )
    engine.dispose()


def test_restart_recovers_queued_and_running(
    db_url: str, app_factory: Any, pool: ProcessPoolExecutor, challenge: Any, tmp_path: Any
) -> None:
    # first life: the dispatcher accepts jobs but never runs them (a crash before judging)
    first = app_factory(db_url, dispatcher=RecordingDispatcher(), data_dir=tmp_path / "data")
    first.create_phase("p")
    tok = first.create_team("good")
    a = first.submit_ok(tok, "p", 2, challenge.archive("good", 2))
    b = first.submit_ok(tok, "p", 3, challenge.archive("good", 3))
    assert first.dispatcher.submitted == [a, b]
    # b was being judged when the process died
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        s.execute(update(Submission).where(Submission.id == b).values(status="running", attempts=1))
        s.commit()
    engine.dispose()
    first.client.__exit__(None, None, None)

    # second life on the same DB and data dir: both are queued again and judged
    second = app_factory(db_url, dispatcher=local_on(pool), data_dir=tmp_path / "data")
    assert second.wait(tok, a)["status"] == "scored"
    doc = second.wait(tok, b)
    assert doc["status"] == "scored" and 0.0 <= doc["result"]["metrics"]["auc"] <= 1.0


def test_rescore_replaces_results(
    sqlite_url: str, app_factory: Any, pool: ProcessPoolExecutor, challenge: Any
) -> None:
    api = app_factory(sqlite_url, dispatcher=local_on(pool))
    api.create_phase("p")
    tok = api.create_team("mediocre")
    sid = api.submit_ok(tok, "p", 1, challenge.archive("mediocre", 1))
    before = api.wait(tok, sid)
    r = api.client.post("/api/v1/admin/phases/p/rescore", json={}, headers=auth(ORG))
    assert r.status_code == 200 and r.json()["queued"] == [sid]
    after = api.wait(tok, sid)
    assert after["status"] == "scored"
    assert after["result"]["metrics"] == before["result"]["metrics"]
    assert len(after["result"]["cases"]) == N_CASES


def test_sweeper_picks_up_rows_queued_by_another_process(
    sqlite_url: str, app_factory: Any, pool: ProcessPoolExecutor, challenge: Any
) -> None:
    api = app_factory(sqlite_url, dispatcher=local_on(pool), sweep_interval=0.2)
    api.create_phase("p", tasks=[2])
    tok = api.create_team("t")
    sid = api.submit_ok(tok, "p", 2, challenge.archive("good", 2))
    assert api.wait(tok, sid)["status"] == "scored"
    # `hecktor-eval admin phase rescore` in another process: it only writes the DB
    from app.services.submissions import rescore

    engine = make_engine(sqlite_url)
    with session_factory(engine)() as s:
        assert rescore(s, "p") == [sid]
        s.commit()
    engine.dispose()
    doc = api.wait(tok, sid)
    assert doc["status"] == "scored" and doc["started_at"] is not None


def test_phase_import_prepares_task1_and_judges_use_it(
    sqlite_url: str, app_factory: Any, challenge: Any
) -> None:
    # the import writes the prepared form (crops + manifest); a judge then scores from
    # it without the NIfTI copies: removing them changes nothing in the result
    from app.jobs.runner import run_job

    api = app_factory(sqlite_url, dispatcher=RecordingDispatcher())
    api.create_phase("prep")
    manifests = list(api.settings.ground_truth_dir.glob("*/Task 1.prepared/manifest.json"))
    assert len(manifests) == 1
    for f in manifests[0].parent.parent.glob("Task 1/**/*.nii.gz"):
        f.unlink()
    token = api.create_team("good")
    sid = api.submit_ok(token, "prep", 1, challenge.archive("good", 1))
    run_job(sid, api.settings.to_dict())
    doc = api.status(token, sid)
    assert doc["status"] == "scored", doc["errors"]
    assert doc["result"]["metrics"]["gtvp_dsc_mean"] < 1.0
