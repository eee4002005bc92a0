"""Ranking analysis, per-centre results, frozen leaderboards and the phase report
through HTTP and the CLI, on SQLite and PostgreSQL where it matters (the
cache and the snapshots live in the database).

The synthetic challenge has 6 cases in 5 centres (CHUB, CHUP, CHUS, MDA x2, USZ) and
four teams of decreasing quality; phases here use 200 resamples to stay fast.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app.cli import main as cli_main
from app.db.migrate import alembic_config, upgrade
from app.db.models import AnalysisCache, LeaderboardSnapshot, Result, Submission
from app.db.session import make_engine, session_factory
from app.services import analysis_cache, board_analysis
from evaluator.bootstrap import bootstrap
from evaluator.centers import per_center
from tests.app.conftest import ORG, Api, InlineDispatcher, auth, make_settings

TEAMS = ("perfect", "good", "mediocre", "poor")
CENTRES = ["CHUB", "CHUP", "CHUS", "MDA", "USZ"]
N_RESAMPLES = 200


def _world(api: Api, tasks: tuple[int, ...] = (1, 3), **phase: Any) -> dict[str, Any]:
    api.create_phase("val", tasks=list(tasks), analysis_resamples=N_RESAMPLES, **phase)
    tokens = {t: api.create_team(t) for t in TEAMS}
    ids = {
        (t, task): api.submit_ok(tokens[t], "val", task, api.challenge.archive(t, task))  # type: ignore[union-attr]
        for t in TEAMS
        for task in tasks
    }
    return {"tokens": tokens, "ids": ids}


def _get(api: Api, path: str, token: str | None = None, **params: Any) -> Any:
    return api.client.get(path, headers=auth(token), params=params or None)


def _cache_rows(db_url: str, task: int | None = None) -> int:
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        q = select(func.count(AnalysisCache.id))
        if task is not None:
            q = q.where(AnalysisCache.task == task)
        n = int(s.scalar(q) or 0)
    engine.dispose()
    return n


def _cases(api: Api, sid: int) -> list[dict[str, Any]]:
    return api.status(ORG, sid)["result"]["cases"]  # type: ignore[no-any-return]


# -- analysis and its cache ----------------------------------------------------------------
def test_analysis_is_computed_from_stored_cases_and_cached(db_url: str, app_factory: Any) -> None:
    api = app_factory(db_url, dispatcher=InlineDispatcher)
    w = _world(api)
    # each judge computes the analysis of the board its result lands on, once stored:
    # the first view is served from the cache (one entry per task, the older ones
    # replaced as the board changed)
    assert _cache_rows(db_url, 1) == 1 and _cache_rows(db_url, 3) == 1
    r = _get(api, "/api/v1/leaderboards/val/1/analysis", ORG)  # organizers: every centre
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["cache"]["source"] == "cache" and doc["cache"]["hit"] is True
    assert doc["frozen"] is False and doc["n_resamples"] == N_RESAMPLES and doc["seed"] == 0
    assert [t["team"] for t in doc["teams"]] == list(TEAMS)  # board order
    boot = doc["bootstrap"]
    assert boot["n_cases"] == 6 and boot["n_resamples"] == N_RESAMPLES
    for team in boot["teams"]:
        for name, mi in team["metrics"].items():
            assert mi["low"] <= mi["estimate"] <= mi["high"], (team["team"], name, mi)
    perfect = next(t for t in boot["teams"] if t["team"] == "perfect")
    assert perfect["rank"]["full_rank"] == 1.0
    assert perfect["metrics"]["gtvp_dsc_mean"]["low"] == 1.0
    assert doc["kendall_tau"] == boot["kendall_tau"] and doc["kendall_tau"]["n"] > 0
    assert [c["center"] for c in doc["centers"]] == CENTRES
    assert sum(c["n_cases"] for c in doc["centers"]) == 6
    assert set(doc["per_center"]) == set(TEAMS)
    assert doc["per_center"]["perfect"]["MDA"]["metrics"]["gtvp_dsc_mean"] == 1.0
    assert {len(v) for v in doc["per_case"].values()} == {6}

    # the same as the evaluator's bootstrap over the stored per-case records
    cases = {t: _cases(api, w["ids"][t, 1]) for t in TEAMS}
    direct = bootstrap(1, cases, n_resamples=N_RESAMPLES, seed=0).to_dict()
    assert boot["teams"] == direct["teams"] and boot["kendall_tau"] == direct["kendall_tau"]
    assert doc["per_center"]["good"] == {
        c: v.to_dict() for c, v in per_center(1, cases["good"]).items()
    }

    # second call: served from the cache, same key and content
    again = _get(api, "/api/v1/leaderboards/val/1/analysis", ORG).json()
    assert again["cache"] == {**doc["cache"], "hit": True, "source": "cache"}
    assert again["bootstrap"] == boot and again["computed_at"] == doc["computed_at"]
    assert _cache_rows(db_url, 1) == 1

    # organizers may choose the seed / resamples; teams and anonymous callers may not
    seeded = _get(api, "/api/v1/leaderboards/val/1/analysis", ORG, seed=7, n_resamples=50)
    assert seeded.status_code == 200, seeded.text
    assert seeded.json()["seed"] == 7 and seeded.json()["cache"]["key"] != doc["cache"]["key"]
    for token in (w["tokens"]["good"], None):
        r = _get(api, "/api/v1/leaderboards/val/1/analysis", token, seed=7)
        assert r.status_code in (401, 403) and "organizers" in r.json()["detail"]
    r = _get(api, "/api/v1/leaderboards/val/1/analysis", ORG, n_resamples=10**6)
    assert r.status_code == 400 and "n_resamples must be between 0 and" in r.json()["detail"]

    # re-scoring task 1 drops its cached analyses in the same transaction (task 3's
    # stay); the re-scoring judges compute it again
    task3 = _get(api, "/api/v1/leaderboards/val/3/analysis").json()
    r = api.client.post("/api/v1/admin/phases/val/rescore", json={"task": 1}, headers=auth(ORG))
    assert r.status_code == 200 and len(r.json()["queued"]) == 4
    assert _cache_rows(db_url, 1) == 1 and _cache_rows(db_url, 3) == 1
    after = _get(api, "/api/v1/leaderboards/val/1/analysis").json()
    # identical results hash identically: same key, computed again, same numbers
    assert after["computed_at"] != doc["computed_at"]
    assert after["cache"]["key"] == doc["cache"]["key"] and after["bootstrap"] == boot
    assert _get(api, "/api/v1/leaderboards/val/3/analysis").json() == task3


def test_a_stale_cache_entry_can_never_be_served(db_url: str, app_factory: Any) -> None:
    """Even when a result changes by a path that does not invalidate (here: SQL), the
    key covers the results' hashes, so the old entry does not match."""
    api = app_factory(db_url, dispatcher=InlineDispatcher)
    w = _world(api, tasks=(3,))
    first = _get(api, "/api/v1/leaderboards/val/3/analysis").json()
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        s.execute(
            update(Result)
            .where(Result.submission_id == w["ids"]["good", 3])
            .values(sha256="0" * 64)
        )
        s.commit()
    engine.dispose()
    assert _cache_rows(db_url, 3) == 1  # nothing deleted it...
    second = _get(api, "/api/v1/leaderboards/val/3/analysis").json()
    assert second["cache"]["source"] == "computed"  # ...and it was not served
    assert second["cache"]["key"] != first["cache"]["key"]
    assert _cache_rows(db_url, 3) == 1  # the stale entry was replaced, not kept


# -- visibility -------------------------------------------------------------------------------
def test_visibility_of_analysis_and_centres(sqlite_url: str, app_factory: Any) -> None:
    api = app_factory(sqlite_url, dispatcher=InlineDispatcher)
    api.create_phase("pub", tasks=[3], analysis_resamples=20)
    api.create_phase("hid", tasks=[3], analysis_resamples=20, hidden=True)
    api.create_phase("priv", tasks=[3], analysis_resamples=20, leaderboard_public=False)
    # hidden, yet with a public leaderboard (organizers' choice): scores stay hidden
    api.create_phase("hidpub", tasks=[3], hidden=True, leaderboard_public=True)
    own = api.create_team("own")
    other = api.create_team("other")
    ids = {
        p: api.submit_ok(own, p, 3, api.challenge.archive("good", 3))
        for p in ("pub", "hid", "priv", "hidpub")
    }
    expect = {
        "pub": {None: 200, "own": 200, "org": 200},
        "hid": {None: 401, "own": 403, "org": 200},
        "priv": {None: 401, "own": 403, "org": 200},
        "hidpub": {None: 401, "own": 403, "org": 200},
    }
    tokens = {None: None, "own": own, "org": ORG}
    for phase, by_role in expect.items():
        for role, code in by_role.items():
            for path in ("analysis", "centers"):
                r = _get(api, f"/api/v1/leaderboards/{phase}/3/{path}", tokens[role])
                assert r.status_code == code, (phase, role, path, r.text)
    # a submission's per-centre results: its team (unless hidden) or an organizer
    assert _get(api, f"/api/v1/submissions/{ids['pub']}/centers", own).status_code == 200
    assert _get(api, f"/api/v1/submissions/{ids['pub']}/centers", other).status_code == 404
    assert _get(api, f"/api/v1/submissions/{ids['pub']}/centers").status_code == 401
    assert _get(api, f"/api/v1/submissions/{ids['hid']}/centers", own).status_code == 403
    assert _get(api, f"/api/v1/submissions/{ids['hid']}/centers", ORG).status_code == 200
    # the hidden phase's leaderboard page (set public) shows a team no scores at all
    r = api.client.get("/leaderboards/hidpub/3", headers=auth(own))
    assert r.status_code == 403 and 'id="analysis"' not in r.text and "organizers only" in r.text
    # only organizers see a live board
    r = _get(api, "/api/v1/leaderboards/pub/3", own, live="true")
    assert r.status_code == 403


# -- per centre ------------------------------------------------------------------------------
def test_per_centre_json_csv_pages_and_cli(
    tmp_path: Path, sqlite_url: str, app_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    api = app_factory(sqlite_url, dispatcher=InlineDispatcher, data_dir=tmp_path / "data")
    w = _world(api, tasks=(2,), min_center_cases=1)
    r = _get(api, "/api/v1/leaderboards/val/2/centers", ORG)  # with the detailed reasons
    assert r.status_code == 200, r.text
    doc = r.json()
    assert [c["center"] for c in doc["centers"]] == CENTRES
    assert [row["team"] for row in doc["rows"]] == [
        row["team"] for row in api.leaderboard("val", 2)["rows"]
    ]
    good = next(row for row in doc["rows"] if row["team"] == "good")
    expected = per_center(2, _cases(api, w["ids"]["good", 2]))
    assert good["centers"] == {c: v.to_dict() for c, v in expected.items()}
    # one case per centre but MDA: the C-index is undefined there, with the reason
    assert good["centers"]["CHUB"]["metrics"]["c_index"] is None
    assert "comparable" in good["centers"]["CHUB"]["undefined"]["c_index"]

    text = _get(api, "/api/v1/leaderboards/val/2/centers", ORG, format="csv").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(TEAMS) * len(CENTRES)
    assert list(rows[0])[:5] == ["rank", "team", "submission_id", "center", "n_cases"]
    assert {r["center"] for r in rows} == set(CENTRES)

    sid = w["ids"]["good", 2]
    own = w["tokens"]["good"]
    sc = _get(api, f"/api/v1/submissions/{sid}/centers", own).json()
    assert [c["center"] for c in sc["centers"]] == CENTRES
    sc_csv = _get(api, f"/api/v1/submissions/{sid}/centers", own, format="csv").text
    assert sc_csv.startswith("rank,team,submission_id,center,n_cases,c_index")
    page = api.client.get(f"/submissions/{sid}", headers=auth(own)).text
    # no centre has a C-index this team may see: said in words, no table of empty cells
    assert 'id="centers-too-few"' in page and "MDA (2 cases)" in page
    assert 'data-center="MDA"' not in page

    # the organizers' CSV export gains the per-centre form
    out = tmp_path / "centres.csv"
    argv = ["admin", "--data-dir", str(tmp_path / "data"), "--database-url", sqlite_url]
    argv += ["leaderboard", "export", "--phase", "val", "--task", "2", "--per-center"]
    code = cli_main([*argv, "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    assert out.read_text() == text


# -- the leaderboard page -------------------------------------------------------------------
def test_leaderboard_page_shows_intervals_and_inline_svg(sqlite_url: str, app_factory: Any) -> None:
    api = app_factory(sqlite_url, dispatcher=InlineDispatcher)
    _world(api, tasks=(1,), min_center_cases=1)
    page = api.client.get("/leaderboards/val/1").text
    section = page[page.index('id="analysis"') :]
    assert page.count('class="ci"') >= 4 * 3  # every team, every score metric
    for fig in ("plot-rank-stability", "plot-centres-1", "plot-per-case"):
        assert f'id="{fig}"' in page
    assert section.count("<svg") == 1 + 3 + 1  # rank stability, 3 heat maps, per case
    # no inline CSS, nothing external (the page's Content-Security-Policy allows neither)
    assert not re.search(r"<svg[^>]*>.*?\sstyle=", section, re.S)
    assert "<style" not in section and "http://" not in section.replace("http://www.w3.org", "")
    for team in TEAMS:
        assert f">{team}</text>" in section
    assert "Kendall" in section and "MDA" in section


# -- frozen leaderboards --------------------------------------------------------------------
def test_freeze_rescore_frozen_board_is_unchanged(db_url: str, app_factory: Any) -> None:
    api = app_factory(db_url, dispatcher=InlineDispatcher)
    w = _world(api, tasks=(3,))
    before_live = api.leaderboard("val", 3)
    assert before_live["frozen"] is False

    r = api.client.post("/api/v1/admin/phases/val/freeze", json={}, headers=auth(ORG))
    assert r.status_code == 200, r.text
    (snap,) = r.json()["snapshots"]
    assert snap["task"] == 3 and snap["active"] and snap["n_rows"] == 4
    assert snap["n_resamples"] == N_RESAMPLES

    frozen = api.leaderboard("val", 3)
    assert frozen["frozen"] is True and frozen["snapshot_sha256"] == snap["content_sha256"]
    assert [r["team"] for r in frozen["rows"]] == [r["team"] for r in before_live["rows"]]
    for row in frozen["rows"]:
        res = api.status(ORG, row["submission_id"])["result"]
        assert row["submission_sha256"] == res["submission_sha256"]
        assert row["ground_truth_sha256"] == res["ground_truth_sha256"]
        assert row["protocol_sha256"] == res["protocol"]["sha256"]
        assert row["evaluator_version"] == res["evaluator_version"]
        assert len(row["result_sha256"]) == 64
    frozen_analysis = _get(api, "/api/v1/leaderboards/val/3/analysis").json()
    assert frozen_analysis["frozen"] is True and frozen_analysis["cache"]["source"] == "snapshot"
    frozen_centres = _get(api, "/api/v1/leaderboards/val/3/centers").json()
    frozen_csv = _get(api, "/api/v1/leaderboards/val/3", format="csv").text
    frozen_page = api.client.get("/leaderboards/val/3").text
    assert 'id="frozen"' in frozen_page

    # after the freeze: a new team submits, and a new protocol re-scores every submission
    late = api.create_team("late")
    api.submit_ok(late, "val", 3, api.challenge.archive("mediocre", 3))
    r = api.client.post(
        "/api/v1/admin/phases/val/ground-truth",
        json={
            "ground_truth": str(api.challenge.ground_truth),  # type: ignore[union-attr]
            "tasks": [3],
            "protocol": {"hpv_threshold": 0.6},
        },
        headers=auth(ORG),
    )
    assert r.status_code == 200, r.text
    assert api.status(ORG, w["ids"]["good", 3])["status"] == "scored"

    live = _get(api, "/api/v1/leaderboards/val/3", ORG, live="true").json()
    assert live["frozen"] is False and len(live["rows"]) == 5
    assert live["protocol_sha256"] != frozen["protocol_sha256"]
    good_live = next(r for r in live["rows"] if r["team"] == "good")
    good_frozen = next(r for r in frozen["rows"] if r["team"] == "good")
    assert good_live["metrics"] != good_frozen["metrics"]  # the threshold moved

    # the frozen board is served unchanged: JSON, CSV, analysis, per centre, page
    assert api.leaderboard("val", 3) == frozen
    assert _get(api, "/api/v1/leaderboards/val/3", ORG).json() == frozen
    assert _get(api, "/api/v1/leaderboards/val/3", format="csv").text == frozen_csv
    assert _get(api, "/api/v1/leaderboards/val/3/analysis").json() == frozen_analysis
    assert _get(api, "/api/v1/leaderboards/val/3/centers").json() == frozen_centres
    page = api.client.get("/leaderboards/val/3").text
    assert 'data-team="late"' not in page and 'id="frozen"' in page
    live_page = api.client.get("/leaderboards/val/3?live=1", headers=auth(ORG)).text
    assert 'data-team="late"' in live_page and 'id="live"' in live_page
    live_analysis = _get(api, "/api/v1/leaderboards/val/3/analysis", ORG, live="true").json()
    assert live_analysis["frozen"] is False and len(live_analysis["teams"]) == 5
    # a frozen analysis keeps its settings
    r = _get(api, "/api/v1/leaderboards/val/3/analysis", ORG, seed=5)
    assert r.status_code == 400 and "frozen" in r.json()["detail"]
    # selection other than the frozen one: not on the frozen board
    r = _get(api, "/api/v1/leaderboards/val/3", selection="latest")
    assert r.status_code == 409

    # freezing again is explicit
    r = api.client.post("/api/v1/admin/phases/val/freeze", json={}, headers=auth(ORG))
    assert r.status_code == 409 and "refreeze" in r.json()["detail"]
    r = api.client.post(
        "/api/v1/admin/phases/val/freeze", json={"refreeze": True}, headers=auth(ORG)
    )
    assert r.status_code == 200, r.text
    refrozen = api.leaderboard("val", 3)
    assert refrozen["frozen"] and len(refrozen["rows"]) == 5
    assert refrozen["snapshot_id"] != frozen["snapshot_id"]

    # unfreeze: the live board again; the history keeps both snapshots
    r = api.client.post("/api/v1/admin/phases/val/unfreeze", headers=auth(ORG))
    assert r.status_code == 200 and r.json()["frozen"] is False
    assert api.leaderboard("val", 3)["frozen"] is False
    r = api.client.post("/api/v1/admin/phases/val/unfreeze", headers=auth(ORG))
    assert r.status_code == 409
    history = _get(api, "/api/v1/admin/phases/val/snapshots", ORG).json()
    assert [(h["active"], h["n_rows"]) for h in history] == [(False, 4), (False, 5)]
    assert all(h["unfrozen_at"] for h in history)
    # teams cannot freeze
    r = api.client.post(
        "/api/v1/admin/phases/val/freeze", json={}, headers=auth(w["tokens"]["good"])
    )
    assert r.status_code == 403


def test_freeze_waits_for_pending_submissions(sqlite_url: str, app_factory: Any) -> None:
    api = app_factory(sqlite_url, dispatcher=InlineDispatcher)
    w = _world(api, tasks=(3,))
    engine = make_engine(sqlite_url)
    with session_factory(engine)() as s:
        s.execute(
            update(Submission).where(Submission.id == w["ids"]["poor", 3]).values(status="queued")
        )
        s.commit()
    r = api.client.post("/api/v1/admin/phases/val/freeze", json={}, headers=auth(ORG))
    assert r.status_code == 409 and "being judged" in r.json()["detail"]
    r = api.client.post(
        "/api/v1/admin/phases/val/freeze",
        json={"force": True, "note": "final", "n_resamples": 30, "seed": 3},
        headers=auth(ORG),
    )
    assert r.status_code == 200, r.text
    assert r.json()["snapshots"][0]["n_resamples"] == 30
    with session_factory(engine)() as s:
        snap = s.scalars(select(LeaderboardSnapshot)).one()
        assert snap.note == "final" and snap.analysis and snap.analysis["seed"] == 3
    engine.dispose()


# -- CLI: freeze and report -------------------------------------------------------------------
def test_cli_freeze_and_report(
    tmp_path: Path, challenge: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    data = tmp_path / "data"
    url = f"sqlite:///{data / 'hecktor.db'}"
    settings = make_settings(data, url)
    with TestClient(create_app(settings, dispatcher=InlineDispatcher(settings))) as c:
        _world(Api(c, challenge), tasks=(1, 2))
    base = ["--data-dir", str(data), "--database-url", url]

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli_main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = run("admin", *base, "phase", "freeze", "--name", "val", "--resamples", "60")
    assert code == 0, err
    assert "task 1: 4 row(s), 60 resamples" in out and "task 2: 4 row(s)" in out
    code, _, err = run("admin", *base, "phase", "freeze", "--name", "val")
    assert code == 1 and "refreeze" in err
    code, out, err = run("admin", *base, "leaderboard", "show", "--phase", "val", "--task", "2")
    assert code == 0 and "frozen" in out and "perfect" in out

    report = tmp_path / "report.html"
    code, out, err = run("report", *base, "--phase", "val", "--output", str(report))
    assert code == 0, err
    html = report.read_text()
    assert html.startswith("<!doctype html>") and "frozen at" in html
    assert "60 bootstrap resamples" in html
    assert not re.search(r"<script|<link|<img|src=|@import", html)
    assert not re.search(r"https?://(?!www\.w3\.org)", html)
    # task 1: 5 plots; task 2: rank stability only, its centres are too small for a
    # C-index (said in words instead of a heat map of empty cells)
    assert html.count("<svg") == (1 + 3 + 1) + 1
    assert "too few cases to estimate it for any team" in html
    for team in TEAMS:
        assert team in html
    for title in ("Rank stability", "Per centre", "Per-case GTVp DSC", "Kendall"):
        assert title in html
    # the frozen analysis keeps its settings; the live one takes any
    code, _, err = run("report", *base, "--phase", "val", "--resamples", "30")
    assert code == 1 and "frozen" in err
    live = tmp_path / "live.html"
    code, _, err = run(
        "report", *base, "--phase", "val", "--live", "--resamples", "30", "--seed", "4",
        "--output", str(live),
    )  # fmt: skip
    assert code == 0, err
    assert "30 bootstrap resamples, seed 4" in live.read_text()
    assert "live (not frozen)" in live.read_text()

    code, out, err = run("admin", *base, "phase", "unfreeze", "--name", "val")
    assert code == 0 and "unfrozen" in out
    code, _, err = run("admin", *base, "phase", "unfreeze", "--name", "val")
    assert code == 1 and "not frozen" in err
    code, _, err = run("report", *base, "--phase", "nope")
    assert code == 1 and "no phase named" in err


def test_report_endpoint_for_organizers(sqlite_url: str, app_factory: Any) -> None:
    api = app_factory(sqlite_url, dispatcher=InlineDispatcher)
    w = _world(api, tasks=(3,))
    r = _get(api, "/api/v1/admin/phases/val/report", ORG)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "attachment" in r.headers["content-disposition"] and "<svg" in r.text
    assert _get(api, "/api/v1/admin/phases/val/report", w["tokens"]["good"]).status_code == 403
    # the organizers' bootstrap settings of the phase
    r = api.client.patch(
        "/api/v1/admin/phases/val",
        json={"analysis_resamples": 40, "analysis_seed": 9},
        headers=auth(ORG),
    )
    assert r.status_code == 200 and r.json()["analysis_seed"] == 9
    doc = _get(api, "/api/v1/leaderboards/val/3/analysis").json()
    assert (doc["n_resamples"], doc["seed"], doc["bootstrap"]["n_resamples"]) == (40, 9, 40)
    r = api.client.patch(
        "/api/v1/admin/phases/val", json={"analysis_resamples": -1}, headers=auth(ORG)
    )
    assert r.status_code == 422


def test_migration_0002_downgrades_and_upgrades(sqlite_url: str) -> None:
    from alembic import command

    engine = make_engine(sqlite_url)
    upgrade(engine)
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    from sqlalchemy import inspect

    assert "analysis_cache" not in inspect(engine).get_table_names()
    upgrade(engine)
    names = set(inspect(engine).get_table_names())
    assert {"analysis_cache", "leaderboard_snapshots"} <= names
    engine.dispose()


def test_a_failed_precompute_leaves_the_result_alone(
    sqlite_url: str, app_factory: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """The judge's analysis precompute is best effort: when it fails, the submission is
    still scored, the failure is logged, and the first view computes the analysis."""

    def boom(*_: Any, **__: Any) -> None:
        raise RuntimeError("bootstrap exploded")

    api = app_factory(sqlite_url, dispatcher=InlineDispatcher)
    api.create_phase("p", tasks=[3], analysis_resamples=20)
    tok = api.create_team("good")
    with monkeypatch.context() as m:
        m.setattr(board_analysis, "board_analysis", boom)
        sid = api.submit_ok(tok, "p", 3, api.challenge.archive("good", 3))  # type: ignore[union-attr]
    assert api.status(tok, sid)["status"] == "scored"
    assert "analysis not precomputed" in caplog.text and "bootstrap exploded" in caplog.text
    doc = _get(api, "/api/v1/leaderboards/p/3/analysis").json()
    assert doc["cache"]["source"] == "computed" and [t["team"] for t in doc["teams"]] == ["good"]


def test_the_precompute_reads_without_the_write_lock(
    sqlite_url: str, app_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the judge reads the board and computes its analysis it holds no SQLite
    write lock (an upload could otherwise wait for it); it takes the lock only to store
    the entry. Probe: another connection that will not wait takes the write lock at each
    read and during the bootstrap."""
    import sqlite3

    db_file = sqlite_url.removeprefix("sqlite:///")
    probes: list[str] = []

    def probe(where: str) -> None:
        con = sqlite3.connect(db_file, timeout=0, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
            probes.append(f"{where}: free")
        except sqlite3.OperationalError as e:
            probes.append(f"{where}: {e}")
        finally:
            con.close()

    real_prepare, real_compute = analysis_cache.prepare_analysis, analysis_cache.AnalysisJob.compute

    def prepare(*a: Any, **kw: Any) -> Any:
        job = real_prepare(*a, **kw)
        probe("prepare")
        return job

    def compute(self: Any) -> Any:
        probe("compute")
        return real_compute(self)

    api = app_factory(sqlite_url, dispatcher=InlineDispatcher)
    api.create_phase("p", tasks=[3], analysis_resamples=20)
    tok = api.create_team("good")
    monkeypatch.setattr(analysis_cache, "prepare_analysis", prepare)
    monkeypatch.setattr(analysis_cache.AnalysisJob, "compute", compute)
    sid = api.submit_ok(tok, "p", 3, api.challenge.archive("good", 3))  # type: ignore[union-attr]
    assert api.status(tok, sid)["status"] == "scored"
    assert "compute: free" in probes and probes.count("prepare: free") >= 2, probes
    assert all(p.endswith("free") for p in probes), probes
    assert _cache_rows(sqlite_url, 3) == 1  # and the entry was stored
