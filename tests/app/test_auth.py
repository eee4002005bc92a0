"""Authorization matrix: every endpoint against anonymous, another team, the own team
and the organizer (plus a wrong token). SQLite; the rules do not depend on the backend.

Setup: phase ``pub`` (public), phase ``priv`` (hidden: teams see status and errors,
never scores; leaderboard for organizers only), phase ``aux`` (to close/open). Team
``own`` has one scored Task 2 submission (``{pub}``, ``{priv}``) and one scored Task 1
submission (``{pub1}``, ``{priv1}``) in each of ``pub`` and ``priv``; ``other`` is a
second team. A team asking for another team's submission gets 404 (existence is not
revealed).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import (
    ORG,
    Api,
    InlineDispatcher,
    auth,
    check_answer,
    login,
    make_settings,
)

ROLES = ("anon", "other", "own", "org")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, challenge: Any) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("auth")
    settings = make_settings(tmp / "data", f"sqlite:///{tmp / 'hecktor.db'}")
    client = TestClient(
        create_app(settings, dispatcher=InlineDispatcher(settings)), raise_server_exceptions=False
    )
    with client:
        api = Api(client, challenge)
        api.create_phase("pub")
        api.create_phase("priv", hidden=True)
        api.create_phase("aux", tasks=[2])
        own, other = api.create_team("own"), api.create_team("other")
        csv2, zip1 = challenge.archive("good", 2), challenge.archive("good", 1)
        ids = {
            "pub": api.submit_ok(own, "pub", 2, csv2),
            "priv": api.submit_ok(own, "priv", 2, csv2),
            "pub1": api.submit_ok(own, "pub", 1, zip1),
            "priv1": api.submit_ok(own, "priv", 1, zip1),
        }
        for sid in ids.values():
            assert api.status(own, sid)["status"] == "scored"
        yield {
            "api": api,
            "tokens": {"anon": None, "own": own, "other": other, "org": ORG},
            "ids": ids,
            "csv2": csv2.read_bytes(),
        }


def call(world: dict[str, Any], role: str, method: str, path: str, **kw: Any) -> Any:
    path = path.format(**world["ids"], role=role)
    c: TestClient = world["api"].client
    return c.request(method, path, headers=auth(world["tokens"][role]), **kw)


# (method, path, {role: expected status}, request kwargs)
MATRIX: list[tuple[str, str, dict[str, int], dict[str, Any]]] = [
    ("GET", "/api/v1/me", {"anon": 401, "other": 200, "own": 200, "org": 200}, {}),
    ("GET", "/api/v1/phases", {"anon": 200, "other": 200, "own": 200, "org": 200}, {}),
    ("GET", "/api/v1/phases/pub", {"anon": 200, "other": 200, "own": 200, "org": 200}, {}),
    ("GET", "/api/v1/submissions", {"anon": 401, "other": 200, "own": 200, "org": 200}, {}),
    ("GET", "/api/v1/submissions/{pub}", {"anon": 401, "other": 404, "own": 200, "org": 200}, {}),
    ("GET", "/api/v1/submissions/{priv}", {"anon": 401, "other": 404, "own": 200, "org": 200}, {}),
    ("GET", "/api/v1/submissions/{priv1}", {"anon": 401, "other": 404, "own": 200, "org": 200}, {}),
    (
        "GET",
        "/api/v1/submissions/{pub}/cases.csv",
        {"anon": 401, "other": 404, "own": 200, "org": 200},
        {},
    ),
    (
        "GET",
        "/api/v1/submissions/{priv}/cases.csv",
        {"anon": 401, "other": 404, "own": 403, "org": 200},
        {},
    ),
    (
        "GET",
        "/api/v1/submissions/{pub1}/cases.csv",
        {"anon": 401, "other": 404, "own": 200, "org": 200},
        {},
    ),
    (
        "GET",
        "/api/v1/submissions/{priv1}/cases.csv",
        {"anon": 401, "other": 404, "own": 403, "org": 200},
        {},
    ),
    ("GET", "/api/v1/submissions/999999", {"anon": 401, "other": 404, "own": 404, "org": 404}, {}),
    ("GET", "/api/v1/leaderboards/pub/2", {"anon": 200, "other": 200, "own": 200, "org": 200}, {}),
    ("GET", "/api/v1/leaderboards/priv/2", {"anon": 401, "other": 403, "own": 403, "org": 200}, {}),
    ("GET", "/api/v1/leaderboards/priv/1", {"anon": 401, "other": 403, "own": 403, "org": 200}, {}),
    (
        "GET",
        "/api/v1/leaderboards/pub/2?format=csv",
        {"anon": 200, "other": 200, "own": 200, "org": 200},
        {},
    ),
    (
        "GET",
        "/api/v1/leaderboards/priv/2?format=csv",
        {"anon": 401, "other": 403, "own": 403, "org": 200},
        {},
    ),
    ("GET", "/api/v1/leaderboards/nope/2", {"anon": 404, "other": 404, "own": 404, "org": 404}, {}),
    ("GET", "/api/v1/admin/teams", {"anon": 401, "other": 403, "own": 403, "org": 200}, {}),
    ("GET", "/api/v1/admin/phases", {"anon": 401, "other": 403, "own": 403, "org": 200}, {}),
    (
        "POST",
        "/api/v1/admin/teams",
        {"anon": 401, "other": 403, "own": 403, "org": 201},
        {"json": {"name": "new-{role}"}},
    ),
    (
        "POST",
        "/api/v1/admin/phases",
        {"anon": 401, "other": 403, "own": 403, "org": 400},
        {"json": {"name": "x", "ground_truth": "/nonexistent"}},
    ),
    (
        "PATCH",
        "/api/v1/admin/phases/aux",
        {"anon": 401, "other": 403, "own": 403, "org": 200},
        {"json": {"daily_limit": 7}},
    ),
    (
        "POST",
        "/api/v1/admin/phases/aux/close",
        {"anon": 401, "other": 403, "own": 403, "org": 200},
        {},
    ),
    (
        "POST",
        "/api/v1/admin/phases/aux/open",
        {"anon": 401, "other": 403, "own": 403, "org": 200},
        {},
    ),
    (
        "POST",
        "/api/v1/admin/phases/aux/rescore",
        {"anon": 401, "other": 403, "own": 403, "org": 200},
        {"json": {}},
    ),
    (
        "POST",
        "/api/v1/admin/phases/pub/rescore",
        {"anon": 401, "other": 403, "own": 403, "org": 200},
        {"json": {"task": 2}},
    ),
    (
        "POST",
        "/api/v1/admin/phases/priv/rescore",
        {"anon": 401, "other": 403, "own": 403, "org": 200},
        {},
    ),
    ("GET", "/submissions/{pub}", {"anon": 401, "other": 404, "own": 200, "org": 200}, {}),
    ("GET", "/submissions/{pub1}", {"anon": 401, "other": 404, "own": 200, "org": 200}, {}),
    ("GET", "/submissions/{priv1}", {"anon": 401, "other": 404, "own": 200, "org": 200}, {}),
    (
        "GET",
        "/submissions/{pub}/cases.csv",
        {"anon": 401, "other": 404, "own": 200, "org": 200},
        {},
    ),
    (
        "GET",
        "/submissions/{priv}/cases.csv",
        {"anon": 401, "other": 404, "own": 403, "org": 200},
        {},
    ),
    ("GET", "/leaderboards/pub/2", {"anon": 200, "other": 200, "own": 200, "org": 200}, {}),
    ("GET", "/leaderboards/priv/2", {"anon": 401, "other": 403, "own": 403, "org": 200}, {}),
    ("GET", "/leaderboards/pub/1", {"anon": 200, "other": 200, "own": 200, "org": 200}, {}),
    ("GET", "/leaderboards/priv/1", {"anon": 401, "other": 403, "own": 403, "org": 200}, {}),
    ("GET", "/", {"anon": 200, "other": 200, "own": 200, "org": 200}, {}),
    (
        "POST",
        "/logout",
        {"anon": 303, "other": 303, "own": 303, "org": 303},
        {"follow_redirects": False},
    ),
]


def _fmt_kwargs(kw: dict[str, Any], role: str) -> dict[str, Any]:
    if "json" in kw and isinstance(kw["json"].get("name"), str):
        return {"json": {**kw["json"], "name": kw["json"]["name"].format(role=role)}}
    return kw


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("method", "path", "expected", "kwargs"), MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX]
)
def test_matrix(
    world: dict[str, Any],
    role: str,
    method: str,
    path: str,
    expected: dict[str, int],
    kwargs: dict[str, Any],
) -> None:
    r = call(world, role, method, path, **_fmt_kwargs(kwargs, role))
    check_answer(r, expected[role], role=role, method=method, path=path)


@pytest.mark.parametrize("role", ("anon", "other", "own", "org"))
def test_upload_matrix(world: dict[str, Any], role: str) -> None:
    r = call(
        world,
        role,
        "POST",
        "/api/v1/submissions?dry_run=true",
        data={"phase": "pub", "task": "2"},
        files={"file": ("p.csv", world["csv2"])},
    )
    assert r.status_code == {"anon": 401, "other": 202, "own": 202, "org": 403}[role], r.text


def test_hidden_phase_shows_status_and_errors_never_scores(world: dict[str, Any]) -> None:
    own = call(world, "own", "GET", "/api/v1/submissions/{priv}").json()
    assert own["status"] == "scored" and own["scores_hidden"] is True and own["result"] is None
    org = call(world, "org", "GET", "/api/v1/submissions/{priv}").json()
    assert org["scores_hidden"] is False and org["result"]["metrics"]["c_index"] > 0
    page = call(world, "own", "GET", "/submissions/{priv}").text
    assert "hidden" in page and "C-index" not in page
    # errors are shown in a hidden phase
    api: Api = world["api"]
    r = api.upload(
        world["tokens"]["own"],
        "priv",
        2,
        content=b"PatientID,Prediction\nnobody,1\n",
        filename="bad.csv",
    )
    doc = api.status(world["tokens"]["own"], r.json()["id"])
    assert doc["status"] == "failed" and doc["errors"] and doc["result"] is None


def test_lists_only_own_submissions(world: dict[str, Any]) -> None:
    own = call(world, "own", "GET", "/api/v1/submissions").json()
    other = call(world, "other", "GET", "/api/v1/submissions").json()
    org = call(world, "org", "GET", "/api/v1/submissions").json()
    assert own and all(s["team"] == "own" for s in own)
    assert all(s["team"] == "other" for s in other)
    assert {s["team"] for s in org} >= {"own"}


def test_wrong_token_is_401_everywhere(world: dict[str, Any]) -> None:
    c: TestClient = world["api"].client
    for path in ("/api/v1/me", "/api/v1/leaderboards/pub/2", "/api/v1/submissions"):
        r = c.get(path, headers=auth("not-a-token"))
        assert r.status_code == 401, path
        assert r.json()["detail"] == "the bearer token is not valid"


def test_page_login_form_opens_a_session(world: dict[str, Any]) -> None:
    c: TestClient = world["api"].client
    sid = world["ids"]["pub"]
    # a token in the address is never taken: the page is redirected to itself without it
    r = c.get(f"/submissions/{sid}?token={world['tokens']['own']}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/submissions/{sid}"
    assert "set-cookie" not in r.headers
    login(c, world["tokens"]["own"])
    r = c.get(f"/submissions/{sid}")  # the cookie jar now holds the session id
    assert r.status_code == 200 and "Per-case results" in r.text
    c.cookies.clear()
    assert c.get(f"/submissions/{sid}").status_code == 401


def test_rotated_team_token_revokes_the_old_one(world: dict[str, Any]) -> None:
    api: Api = world["api"]
    old = api.create_team("rotating")
    r = api.client.post("/api/v1/admin/teams/rotating/token", headers=auth(ORG))
    assert r.status_code == 200
    new = r.json()["token"]
    assert api.client.get("/api/v1/me", headers=auth(old)).status_code == 401
    assert api.client.get("/api/v1/me", headers=auth(new)).json() == {
        "role": "team",
        "team": "rotating",
    }
