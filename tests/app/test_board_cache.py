"""The leaderboard cache (``app.board_cache``) never serves a stale board: after every
kind of change, by this process or another one, the cached answer equals a freshly
derived one; repeated reads are served from the cache; access rules still apply."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from app.db.models import Phase
from app.db.session import make_engine, session_factory
from app.services.leaderboards import leaderboard
from tests.app.conftest import ORG, InlineDispatcher, auth, login


def _fresh(api: Any, phase: str, task: int, **kw: Any) -> dict[str, Any]:
    with api.client.app.state.sessions() as s:
        return leaderboard(s, phase, task, None, **kw)


def _served(api: Any, phase: str, task: int, query: str = "") -> dict[str, Any]:
    r = api.client.get(f"/api/v1/leaderboards/{phase}/{task}{query}")
    assert r.status_code == 200, r.text
    return r.json()


def _same(api: Any, phase: str, task: int, **kw: Any) -> None:
    query = "?" + "&".join(f"{k}={v}" for k, v in kw.items()) if kw else ""
    served = _served(api, phase, task, query)
    want = _fresh(api, phase, task, **kw)
    assert [(r["team"], r["submission_id"], r["metrics"]) for r in served["rows"]] == [
        (r["team"], r["submission_id"], r["metrics"]) for r in want["rows"]
    ]
    assert served["selection"] == want["selection"]


def test_cached_board_follows_every_change(
    sqlite_url: str, app_factory: Any, challenge: Any
) -> None:
    api = app_factory(sqlite_url, dispatcher=InlineDispatcher)
    api.create_phase("p", tasks=[2, 3])
    cache = api.client.app.state.board_cache
    tokens = {t: api.create_team(t) for t in ("good", "poor", "mediocre")}
    api.submit_ok(tokens["good"], "p", 2, challenge.archive("good", 2))
    _same(api, "p", 2)
    hits = cache.hits
    for _ in range(5):
        _same(api, "p", 2)
    assert cache.hits >= hits + 5, "repeated reads were not served from the cache"

    # a new scored submission (another team)
    api.submit_ok(tokens["poor"], "p", 2, challenge.archive("poor", 2))
    _same(api, "p", 2)
    assert {r["team"] for r in _served(api, "p", 2)["rows"]} == {"good", "poor"}
    # a better submission of the same team replaces its row (best), or not (latest)
    api.submit_ok(tokens["poor"], "p", 2, challenge.archive("perfect", 2))
    _same(api, "p", 2)
    _same(api, "p", 2, selection="latest")
    # a failed submission changes nothing; a dry run changes nothing
    r = api.upload(tokens["mediocre"], "p", 2, content=b"PatientID,Prediction\n", filename="x.csv")
    assert api.wait(tokens["mediocre"], r.json()["id"])["status"] == "failed"
    api.submit_ok(tokens["mediocre"], "p", 2, challenge.archive("mediocre", 2), dry_run=True)
    _same(api, "p", 2)
    assert "mediocre" not in {r["team"] for r in _served(api, "p", 2)["rows"]}
    # re-scoring (results replaced, finish times move)
    before = _served(api, "p", 2)
    r = api.client.post("/api/v1/admin/phases/p/rescore", json={"task": 2}, headers=auth(ORG))
    assert r.status_code == 200
    after = _served(api, "p", 2)
    assert [x["scored_at"] for x in after["rows"]] != [x["scored_at"] for x in before["rows"]]
    _same(api, "p", 2)
    # phase settings: the default selection
    r = api.client.patch("/api/v1/admin/phases/p", json={"selection": "latest"}, headers=auth(ORG))
    assert r.status_code == 200
    assert _served(api, "p", 2)["selection"] == "latest"
    _same(api, "p", 2)
    # a change written by another process (here: another engine, as a judge would)
    engine = make_engine(sqlite_url)
    with session_factory(engine)() as s:
        s.execute(update(Phase).where(Phase.name == "p").values(selection="best"))
        s.commit()
    engine.dispose()
    assert _served(api, "p", 2)["selection"] == "best"
    # other tasks have their own boards
    assert _served(api, "p", 3)["rows"] == []


def test_access_rules_apply_to_cached_boards(
    sqlite_url: str, app_factory: Any, challenge: Any
) -> None:
    api = app_factory(sqlite_url, dispatcher=InlineDispatcher)
    api.create_phase("p", tasks=[2])
    tok = api.create_team("t")
    api.submit_ok(tok, "p", 2, challenge.archive("good", 2))
    assert api.client.get("/api/v1/leaderboards/p/2").status_code == 200  # cached for anon
    r = api.client.patch(
        "/api/v1/admin/phases/p", json={"leaderboard_public": False}, headers=auth(ORG)
    )
    assert r.status_code == 200
    assert api.client.get("/api/v1/leaderboards/p/2").status_code == 401
    assert api.client.get("/api/v1/leaderboards/p/2", headers=auth(tok)).status_code == 403
    assert api.client.get("/api/v1/leaderboards/p/2", headers=auth(ORG)).status_code == 200
    # the organizer's cached board is not served to anyone else
    assert api.client.get("/api/v1/leaderboards/p/2").status_code == 401
    assert api.client.get("/api/v1/leaderboards/p/2?live=true", headers=auth(tok)).status_code in (
        403,
        422,
    )


def test_frozen_and_unfrozen_boards_are_not_mixed_up(
    sqlite_url: str, app_factory: Any, challenge: Any
) -> None:
    api = app_factory(sqlite_url, dispatcher=InlineDispatcher)
    api.create_phase("p", tasks=[2])
    tok = api.create_team("t")
    api.submit_ok(tok, "p", 2, challenge.archive("poor", 2))
    live = _served(api, "p", 2)
    r = api.client.post(
        "/api/v1/admin/phases/p/freeze", json={"n_resamples": 10}, headers=auth(ORG)
    )
    assert r.status_code == 200, r.text
    frozen = _served(api, "p", 2)
    assert frozen.get("frozen") is True
    api.submit_ok(tok, "p", 2, challenge.archive("perfect", 2))
    assert _served(api, "p", 2)["rows"] == frozen["rows"]  # frozen: unchanged
    r = api.client.post("/api/v1/admin/phases/p/unfreeze", headers=auth(ORG))
    assert r.status_code == 200, r.text
    thawed = _served(api, "p", 2)
    assert not thawed.get("frozen")
    assert thawed["rows"] != live["rows"]  # the better submission shows now
    _same(api, "p", 2)


def test_pages_read_beside_a_writer_and_follow_changes(
    sqlite_url: str, app_factory: Any, challenge: Any
) -> None:
    """The HTML pages only read (SQLite: no write lock), so they are served while
    another connection holds the write lock, as a judge writing a result does; the
    leaderboard page uses the same cache as the API and still follows every change."""
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    api = app_factory(sqlite_url, dispatcher=InlineDispatcher)
    api.create_phase("p", tasks=[2])
    tok = api.create_team("good")
    sid = api.submit_ok(tok, "p", 2, challenge.archive("good", 2))
    first = api.client.get("/leaderboards/p/2")  # computes and stores the analysis
    assert first.status_code == 200 and "good" in first.text
    login(api.client, tok)
    writer = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=0)
    writer.isolation_level = None
    writer.execute("BEGIN IMMEDIATE")  # the write lock, held
    try:
        with ThreadPoolExecutor(1) as pool:
            for path in ("/", "/leaderboards/p/2", f"/submissions/{sid}"):
                r = pool.submit(api.client.get, path).result(timeout=10)
                assert r.status_code == 200, (path, r.status_code)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    api.client.cookies.clear()
    other = api.create_team("poor")
    api.submit_ok(other, "p", 2, challenge.archive("poor", 2))
    page = api.client.get("/leaderboards/p/2")
    assert page.status_code == 200 and "poor" in page.text and "good" in page.text
