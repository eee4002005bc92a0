"""Hostile or odd requests get a 4xx with a message, never a 500: a task number no column
can hold, a NUL byte in a ground-truth path (API and CLI), booleans where integers are
expected; 405 answers name every method of the path; the OpenAPI document states this
server's real upload limit and accepted types."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from app.cli import main
from tests.app.conftest import ORG, auth, login

BIG = "99999999999999999999999"  # > 2**64: fits no integer column
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")  # the order of Allow


def _alive(c: TestClient) -> None:
    assert c.get("/api/v1/phases").status_code == 200
    assert c.get("/").status_code == 200


# -- numbers no column can hold -------------------------------------------------------------
def test_a_huge_task_number_is_a_4xx_with_a_message(db_url: str, app_factory: Any) -> None:
    api = app_factory(db_url)
    api.create_phase("val")
    tok = api.create_team("t1")
    c: TestClient = api.client
    for who in (None, tok, ORG):
        r = c.get(f"/leaderboards/val/{BIG}", headers={**auth(who), "accept": "text/html"})
        assert r.status_code == 404, (who, r.text[:300])
        assert f"there is no task {BIG}: the tasks are 1, 2 and 3" in r.text
        assert "Traceback" not in r.text
        r = c.get(f"/leaderboards/val/{BIG}", headers=auth(who))  # a client without html
        assert r.status_code == 404 and "there is no task" in r.json()["detail"]
        for path in (
            f"/api/v1/leaderboards/val/{BIG}",
            f"/api/v1/leaderboards/val/{BIG}?format=csv",
            f"/api/v1/leaderboards/val/{BIG}/analysis",
            f"/api/v1/leaderboards/val/{BIG}/centers",
        ):
            r = c.get(path, headers=auth(who))
            assert r.status_code == 422, (path, r.text)
            assert "path.task: Input should be less than or equal to 3" in str(r.json()["errors"])
        for path in (f"/submissions/{BIG}", f"/api/v1/submissions/{BIG}"):
            assert 400 <= c.get(path, headers=auth(who)).status_code < 500, path
    login(c, tok)  # a signed-in browser too
    r = c.get(f"/leaderboards/val/{BIG}", headers={"accept": "text/html"})
    assert r.status_code == 404 and "there is no task" in r.text
    _alive(c)


# -- NUL bytes in the organizer's ground-truth path -----------------------------------------
def test_a_nul_byte_in_a_ground_truth_path_is_a_400(sqlite_url: str, app_factory: Any) -> None:
    api = app_factory(sqlite_url)
    c: TestClient = api.client
    gt = str(api.challenge.ground_truth)
    r = c.post(
        "/api/v1/admin/phases",
        json={"name": "x", "ground_truth": gt + "\x00/etc", "tasks": [1]},
        headers=auth(ORG),
    )
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert "is not a usable path (embedded null byte)" in detail and "/ground-truth/" in detail
    assert c.get("/api/v1/admin/phases", headers=auth(ORG)).json() == []  # nothing half-made
    api.create_phase("val", tasks=[2])
    r = c.post(
        "/api/v1/admin/phases/val/ground-truth",
        json={"ground_truth": "\x00", "tasks": [2]},
        headers=auth(ORG),
    )
    assert r.status_code == 400 and "embedded null byte" in r.json()["detail"], r.text
    _alive(c)


def test_a_nul_byte_in_the_cli_ground_truth_is_an_error_message(
    tmp_path: Path, challenge: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    argv = ["admin", "--data-dir", str(data), "phase", "create", "--name", "x"]
    code = main([*argv, "--ground-truth", f"{challenge.ground_truth}\x00x"])
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert "is not a usable path (embedded null byte)" in err and "Traceback" not in out + err
    code = main([*argv, "--ground-truth", str(challenge.ground_truth)])  # still works
    assert code == 0, capsys.readouterr()


# -- booleans are not integers --------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/v1/admin/phases", {"name": "x", "daily_limit": True}, "daily_limit"),
        ("POST", "/api/v1/admin/phases", {"name": "x", "tasks": [True]}, "tasks.0"),
        ("POST", "/api/v1/admin/phases", {"name": "x", "analysis_seed": False}, "analysis_seed"),
        ("POST", "/api/v1/admin/phases", {"name": "x", "daily_limit": "5"}, "daily_limit"),
        ("POST", "/api/v1/admin/phases", {"name": "x", "hidden": 1}, "hidden"),
        ("PATCH", "/api/v1/admin/phases/val", {"daily_limit": True}, "daily_limit"),
        ("PATCH", "/api/v1/admin/phases/val", {"analysis_resamples": True}, "analysis_resamples"),
        ("POST", "/api/v1/admin/phases/val/rescore", {"task": True}, "task"),
        ("POST", "/api/v1/admin/phases/val/freeze", {"n_resamples": True}, "n_resamples"),
        ("POST", "/api/v1/admin/phases/val/ground-truth", {"tasks": [True]}, "tasks.0"),
        ("POST", "/api/v1/admin/teams", {"name": 7}, "name"),
    ],
)
def test_booleans_and_strings_are_not_integers(
    sqlite_url: str, app_factory: Any, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    api = app_factory(sqlite_url)
    api.create_phase("val", tasks=[2])
    if path.endswith(("/admin/phases", "/ground-truth")):
        body = {"ground_truth": str(api.challenge.ground_truth), **body}
    r = api.client.request(method, path, json=body, headers=auth(ORG))
    assert r.status_code == 422, (path, body, r.text)
    messages = [e["message"] for e in r.json()["errors"]]
    assert any(m.startswith(f"{field}: Input should be a valid") for m in messages), messages
    # the phase is unchanged: nothing was coerced and stored
    phase = api.client.get("/api/v1/admin/phases", headers=auth(ORG)).json()
    assert [p["name"] for p in phase] == ["val"] and phase[0]["daily_limit"] == 5
    # and the same request with a real integer works where it is one
    if field == "daily_limit" and method == "PATCH":
        r = api.client.patch(path, json={"daily_limit": 1}, headers=auth(ORG))
        assert r.status_code == 200 and r.json()["daily_limit"] == 1


# -- 405 and Allow ---------------------------------------------------------------------------
def _route_methods(app: Any) -> dict[str, set[str]]:
    """Every path of the app with the methods its routes accept: the API from the
    OpenAPI document, the pages, and the app's own routes and mounts."""
    from app.web import pages

    methods: dict[str, set[str]] = {}
    for path, ops in app.openapi()["paths"].items():
        methods.setdefault(path, set()).update(m.upper() for m in ops)
    for route in [*pages.router.routes, *app.router.routes]:
        if isinstance(route, Route) and route.methods:
            methods.setdefault(route.path, set()).update(route.methods)
        elif isinstance(route, Mount):
            methods.setdefault(route.path + "/style.css", set()).update({"GET", "HEAD"})
    return methods


def test_every_405_lists_every_method_of_its_path(sqlite_url: str, app_factory: Any) -> None:
    api = app_factory(sqlite_url)
    c: TestClient = api.client
    routes = _route_methods(c.app)
    assert len(routes) >= 25 and "/api/v1/submissions" in routes and "/logout" in routes
    assert routes["/api/v1/submissions"] == {"GET", "POST"}  # two routes, one path
    checked = 0
    for template, accepted in sorted(routes.items()):
        path = re.sub(
            r"\{(\w+)\}",
            lambda m: "1" if "id" in m.group(1) or m.group(1) == "task" else "val",
            template,
        )
        want = ", ".join(m for m in METHODS if m in accepted)
        for method in [m for m in ("GET", "POST", "PUT", "PATCH", "DELETE") if m not in accepted]:
            for accept in ("application/json", "text/html"):
                r = c.request(method, path, headers={**auth(ORG), "accept": accept})
                assert r.status_code == 405, (method, path, r.status_code, r.text[:200])
                assert r.headers.get("allow") == want, (method, path, r.headers.get("allow"))
                checked += 1
    assert checked > 150


# -- the OpenAPI document --------------------------------------------------------------------
def test_openapi_states_the_real_upload_limit_and_types(sqlite_url: str, app_factory: Any) -> None:
    api = app_factory(sqlite_url, max_upload_bytes=300_000)
    api.create_phase("val", tasks=[2])
    tok = api.create_team("t1")
    doc = api.client.get("/openapi.json").json()
    op = doc["paths"]["/api/v1/submissions"]["post"]
    file_schema = op["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"][
        "file"
    ]
    assert file_schema["maxLength"] == 300_000 == file_schema["x-max-upload-bytes"]
    assert (
        "At most 293.0 KiB (300000 bytes, HECKTOR_MAX_UPLOAD_BYTES)" in file_schema["description"]
    )
    assert "the upload is at most 293.0 KiB (300000 bytes" in op["description"]
    assert op["responses"]["413"]["description"].startswith("the upload is larger than 293.0 KiB")
    types = file_schema["x-accepted-types"]
    assert types["1"] == ["application/zip", "application/x-tar", "application/gzip (a .tar.gz)"]
    assert types["2"][:2] == types["3"][:2] == ["text/csv", "application/json"]
    assert "Task 1: application/zip, application/x-tar" in op["description"]
    # what the document says is what the server does
    r = api.upload(tok, "val", 2, content=b"PatientID,Prediction\n" + b"x" * 300_001)
    assert r.status_code == 413, r.text
    r = api.upload(tok, "val", 2, content=b"BZh91AY&SY" + b"\0" * 100, filename="p.bz2")
    assert r.status_code == 415, r.text
    # another server, another limit: the document follows the settings
    other = app_factory(sqlite_url, max_upload_bytes=5 << 30).client.get("/openapi.json").json()
    body = other["paths"]["/api/v1/submissions"]["post"]["requestBody"]
    assert body["content"]["multipart/form-data"]["schema"]["properties"]["file"]["maxLength"] == (
        5 << 30
    )


def test_error_pages_escape_what_they_echo(sqlite_url: str, app_factory: Any) -> None:
    c: TestClient = app_factory(sqlite_url).client
    r = c.get("/leaderboards/%3Cscript%3E/9", headers={"accept": "text/html"})
    assert r.status_code == 404 and "<script>" not in r.text
    assert "there is no task 9" in html.unescape(r.text)


def test_a_browser_opening_login_gets_the_sign_in_page_and_a_missing_task_is_named(
    sqlite_url: str, app_factory: Any
) -> None:
    api = app_factory(sqlite_url)
    r = api.client.get("/login", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert 'name="token"' in api.client.get("/login").text  # the form on the front page
    api.create_phase("p", tasks=[2])
    tok = api.create_team("t")
    r = api.client.post(
        "/api/v1/submissions",
        data={"phase": "p"},
        files={"file": ("p.csv", b"PatientID,Prediction\n")},
        headers=auth(tok),
    )
    assert r.status_code == 400, r.text
    assert r.json()["detail"] == "the form field 'task' (1, 2 or 3) is required"
