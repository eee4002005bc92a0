"""Browser sessions and tokens, through HTTP: the login form (Origin-checked) opens a
server-side session whose random id is the cookie; logout (with the session's CSRF token),
expiry and a rotated token end it; a stale cookie is deleted and never counted as an
authentication failure; tokens in addresses are never read and never logged; answers to
authenticated requests are ``no-store``; HSTS over https."""

from __future__ import annotations

import hashlib
import html
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.db.session import make_engine
from tests.app.conftest import ORG, auth, free_port, login, make_settings, served

COOKIE = "hecktor_session"
TEAM_HEADER = "team <strong>t1</strong>"


def _origin(c: TestClient) -> dict[str, str]:
    return {"Origin": str(c.base_url).rstrip("/")}


def _csrf(c: TestClient) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/").text)
    assert m, "no logout form on the page"
    return m.group(1)


def _deletes_cookie(r: httpx.Response) -> bool:
    return any(
        v.startswith(f"{COOKIE}=") and "max-age=0" in v.lower()
        for v in r.headers.get_list("set-cookie")
    )


@pytest.fixture
def site(sqlite_url: str, app_factory: Any) -> dict[str, Any]:
    api = app_factory(sqlite_url)
    return {"api": api, "c": api.client, "token": api.create_team("t1"), "db": sqlite_url}


# -- the login form ------------------------------------------------------------------------
def test_login_form_needs_this_sites_origin(site: dict[str, Any]) -> None:
    c: TestClient = site["c"]
    tok = site["token"]
    cases = [
        ({}, "without an Origin or Referer header"),
        ({"Origin": "https://evil.example"}, "'https://evil.example' (Origin header)"),
        ({"Origin": "null"}, "without an Origin or Referer header"),
        ({"Referer": "http://evil.example/login"}, "'http://evil.example' (Referer header)"),
        ({"Origin": "http://testserver.evil.example"}, "not from this site"),
    ]
    for headers, message in cases:
        r = c.post("/login", data={"token": tok}, headers=headers, follow_redirects=False)
        assert r.status_code == 403, headers
        page = html.unescape(r.text)
        assert "sign-in refused" in page and message in page, (headers, page)
        assert COOKIE not in r.headers.get("set-cookie", "")
    # the site's own page: by Origin, or by Referer when the browser sends no Origin
    for headers in (_origin(c), {"Referer": "http://testserver/leaderboards/x/1"}):
        r = c.post("/login", data={"token": tok}, headers=headers, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/", (headers, r.text)
    # the public URL's origin is this site too
    r = c.post(
        "/login",
        data={"token": tok},
        headers={"Origin": "http://127.0.0.1:8000"},
        follow_redirects=False,
    )
    assert r.status_code == 303


def test_login_goes_back_to_a_local_page_only(site: dict[str, Any]) -> None:
    c: TestClient = site["c"]
    for nxt, where in (
        ("/submissions/3", "/submissions/3"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\t/evil.example", "/"),
    ):
        r = c.post(
            "/login",
            data={"token": site["token"], "next": nxt},
            headers=_origin(c),
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"] == where, nxt


def test_session_cookie_is_a_random_server_side_id(site: dict[str, Any]) -> None:
    c: TestClient = site["c"]
    r = c.post("/login", data={"token": site["token"]}, headers=_origin(c), follow_redirects=False)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    flags = cookie.lower()
    assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
    assert "max-age=43200" in flags  # HECKTOR_SESSION_HOURS, 12 h by default
    assert "secure" not in flags  # plain http (development)
    sid = c.cookies[COOKIE]
    assert len(sid) >= 43 and site["token"] not in cookie and sid != site["token"]
    engine = make_engine(site["db"])
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT sid_sha256, token_sha256, role, csrf_token FROM web_sessions")
        ).all()
    engine.dispose()
    assert len(rows) == 1
    sid_sha, tok_sha, role, csrf = rows[0]
    assert sid_sha == hashlib.sha256(sid.encode()).hexdigest()  # the id is stored hashed
    assert tok_sha == hashlib.sha256(site["token"].encode()).hexdigest() and role == "team"
    page = c.get("/")
    assert TEAM_HEADER in page.text and f'value="{csrf}"' in page.text


def test_logout_needs_the_csrf_token_and_revokes_the_session(site: dict[str, Any]) -> None:
    c: TestClient = site["c"]
    login(c, site["token"])
    sid = c.cookies[COOKIE]
    csrf = _csrf(c)
    r = c.get("/logout")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    for bad in ("", "x" * 43):
        r = c.post("/logout", data={"csrf_token": bad}, follow_redirects=False)
        assert r.status_code == 403 and "CSRF token does not match" in r.text
    r = c.post(
        "/logout",
        data={"csrf_token": csrf},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert r.status_code == 403 and "logout refused" in r.text
    assert TEAM_HEADER in c.get("/").text  # still signed in after the refused posts
    r = c.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and _deletes_cookie(r)
    # the old id, presented again (a copied cookie), names no session any more
    c.cookies.set(COOKIE, sid)
    r = c.get("/")
    assert r.status_code == 200 and TEAM_HEADER not in r.text and _deletes_cookie(r)
    c.cookies.set(COOKIE, sid)
    assert c.get("/submissions/1").status_code == 401


def test_rotated_token_ends_its_sessions(site: dict[str, Any]) -> None:
    c: TestClient = site["c"]
    login(c, site["token"])
    assert TEAM_HEADER in c.get("/").text
    r = c.post("/api/v1/admin/teams/t1/token", headers=auth(ORG))
    assert r.status_code == 200
    new = r.json()["token"]
    r = c.get("/")
    assert TEAM_HEADER not in r.text and _deletes_cookie(r)
    c.cookies.clear()
    login(c, new)
    assert TEAM_HEADER in c.get("/").text


def test_changed_organizer_token_ends_organizer_sessions(
    sqlite_url: str, app_factory: Any, tmp_path: Path
) -> None:
    first = app_factory(sqlite_url, data_dir=tmp_path / "d")
    login(first.client, ORG)
    sid = first.client.cookies[COOKIE]
    assert "organizer" in first.client.get("/").text
    # the service restarted with another HECKTOR_ORGANIZER_TOKEN
    second = app_factory(sqlite_url, data_dir=tmp_path / "d", organizer_token="another-" + ORG)
    second.client.cookies.set(COOKIE, sid)
    r = second.client.get("/")
    assert ">organizer<" not in r.text and _deletes_cookie(r)


def test_session_expires(site: dict[str, Any]) -> None:
    c: TestClient = site["c"]
    login(c, site["token"])
    engine = make_engine(site["db"])
    with engine.begin() as conn:
        conn.execute(text("UPDATE web_sessions SET expires_at = '2000-01-01 00:00:00'"))
    engine.dispose()
    r = c.get("/")
    assert TEAM_HEADER not in r.text and _deletes_cookie(r)


def test_session_hours_is_a_setting(sqlite_url: str, app_factory: Any) -> None:
    api = app_factory(sqlite_url, session_hours=0.5)
    tok = api.create_team("t1")
    r = api.client.post(
        "/login", data={"token": tok}, headers=_origin(api.client), follow_redirects=False
    )
    assert "max-age=1800" in r.headers["set-cookie"].lower()
    assert "after 0.5 h" in TestClient(api.client.app).get("/").text


# -- stale cookies and the failure limit -----------------------------------------------------
def test_stale_cookies_are_cleared_and_never_lock_out_the_address(
    sqlite_url: str, app_factory: Any
) -> None:
    api = app_factory(sqlite_url)  # default limit: 20 failures per address and minute
    tok = api.create_team("t1")
    c: TestClient = api.client
    login(c, tok)
    stale = c.cookies[COOKIE]
    c.post("/logout", data={"csrf_token": _csrf(c)})
    for i in range(30):  # a browser with a logged-out cookie, or a made-up one, 30 times
        c.cookies.set(COOKIE, stale if i % 2 else f"made-up-{i}")
        r = c.get("/leaderboards/none/1" if i % 3 == 0 else "/")
        assert r.status_code in (200, 404), r.text
        assert _deletes_cookie(r), i
    c.cookies.clear()
    login(c, tok)  # the same address signs in at once: no 429
    assert TEAM_HEADER in c.get("/").text
    assert c.get("/api/v1/me", headers=auth(tok)).status_code == 200


def test_the_legacy_token_cookie_is_deleted_unread(site: dict[str, Any]) -> None:
    c: TestClient = site["c"]
    c.cookies.set("hecktor_token", site["token"])  # what earlier versions stored
    r = c.get("/")
    assert TEAM_HEADER not in r.text
    assert any(
        v.startswith("hecktor_token=") and "max-age=0" in v.lower()
        for v in r.headers.get_list("set-cookie")
    )
    assert r.headers["cache-control"] == "no-store"  # an answer that sets a cookie


# -- tokens in addresses ---------------------------------------------------------------------
def test_a_token_in_the_address_is_dropped_unread(sqlite_url: str, app_factory: Any) -> None:
    api = app_factory(sqlite_url, auth_failure_limit=3)
    tok = api.create_team("t1")
    c: TestClient = api.client
    for path in ("/", "/leaderboards/val/1", "/submissions/1", "/submissions/1/cases.csv"):
        r = c.get(f"{path}?selection=best&token={tok}&live=1", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"{path}?selection=best&live=1"
        assert "set-cookie" not in r.headers  # no session from a link
    for i in range(10):  # wrong tokens in links are not even looked at: never a 429
        r = c.get(f"/?token=wrong-{i}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
    login(c, tok)


def test_the_access_log_of_a_real_server_never_holds_a_token(tmp_path: Path) -> None:
    """``hecktor-eval serve`` in a process of its own, logging at info (uvicorn's access
    log writes every request line with its query)."""
    port = free_port()
    secret = "Sup3rSecretTok3n-0123456789abcdefABCDEFGH"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HECKTOR_")},
        "HECKTOR_ORGANIZER_TOKEN": ORG,
        "HECKTOR_WORKERS": "1",
        "HECKTOR_SWEEP_INTERVAL": "0",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "app", "serve", "--data-dir", str(tmp_path / "data")),
                *("--port", str(port), "--log-level", "info"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            for target in (
                f"/?token={secret}",
                f"/leaderboards/val/1?live=1&token={secret}",
                f"/api/v1/phases?token={secret}",
                f"/api/v1/me?TOKEN={secret}&access_token={secret}",
            ):
                httpx.get(base + target, follow_redirects=False, timeout=10)
            time.sleep(0.3)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    text_ = log.read_text()
    assert "GET /?token=[redacted]" in text_, text_
    assert "/api/v1/me?TOKEN=[redacted]&access_token=[redacted]" in text_, text_
    assert secret not in text_, text_


# -- caching and transport headers -----------------------------------------------------------
def test_authenticated_answers_are_no_store(site: dict[str, Any]) -> None:
    c: TestClient = site["c"]
    tok = site["token"]
    for path in ("/api/v1/me", "/api/v1/submissions", "/api/v1/phases", "/"):
        r = c.get(path, headers=auth(tok))
        assert r.headers["cache-control"] == "no-store", path
    r = c.get("/api/v1/me", headers=auth("wrong"))
    assert r.status_code == 401 and r.headers["cache-control"] == "no-store"
    assert "cache-control" not in c.get("/api/v1/phases").headers  # anonymous, public
    login(c, tok)
    for path in ("/", "/leaderboards/none/1", "/submissions/1"):
        assert c.get(path).headers["cache-control"] == "no-store", path
    assert "strict-transport-security" not in c.get("/").headers  # plain http


def test_https_gives_secure_cookies_and_hsts(sqlite_url: str, app_factory: Any) -> None:
    # served behind a TLS proxy: HECKTOR_PUBLIC_URL is https
    api = app_factory(sqlite_url, public_url="https://challenge.example.org")
    tok = api.create_team("t1")
    c: TestClient = api.client
    r = c.post(
        "/login",
        data={"token": tok},
        headers={"Origin": "https://challenge.example.org"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()
    for path in ("/", "/api/v1/phases", "/static/style.css"):
        assert c.get(path).headers["strict-transport-security"] == "max-age=63072000", path


def test_https_request_scheme_gives_hsts(sqlite_url: str, app_factory: Any) -> None:
    # an http public URL, but the request came over https (a trusted proxy's
    # X-Forwarded-Proto, applied by uvicorn, sets the scheme)
    api = app_factory(sqlite_url)
    https = TestClient(api.client.app, base_url="https://testserver")
    assert https.get("/").headers["strict-transport-security"] == "max-age=63072000"
    assert "strict-transport-security" not in api.client.get("/").headers


# -- a real browser --------------------------------------------------------------------------
@pytest.mark.browser
def test_chromium_signs_in_and_out_with_the_forms(
    tmp_path: Path, challenge: Any, browser: Any
) -> None:
    """Chromium sends the site's own Origin with the login form (the pages' Referrer-Policy
    is same-origin; with no-referrer it would send ``Origin: null``), keeps the HttpOnly
    session cookie out of scripts, and the logout button revokes the session."""
    from app.main import create_app

    settings = make_settings(tmp_path / "data", f"sqlite:///{tmp_path / 'h.db'}")
    with TestClient(create_app(settings)) as c:
        tok = c.post("/api/v1/admin/teams", json={"name": "t1"}, headers=auth(ORG)).json()["token"]
    with served(create_app(settings)) as base:
        ctx = browser.new_context()
        page = ctx.new_page()
        page.goto(f"{base}/")
        page.fill("#token", tok)
        page.click("text=Sign in")
        page.wait_for_selector("#logout")
        assert "team t1" in page.locator("header").inner_text()
        assert page.evaluate("document.cookie") == ""  # HttpOnly: invisible to scripts
        (cookie,) = [k for k in ctx.cookies() if k["name"] == COOKIE]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["value"] != tok
        page.click("#logout")
        page.wait_for_selector("#token")  # the login form again
        assert not [k for k in ctx.cookies() if k["name"] == COOKIE]
        # the id the browser held no longer opens anything
        r = httpx.get(f"{base}/", cookies={COOKIE: cookie["value"]})
        assert "team <strong>t1</strong>" not in r.text and _deletes_cookie(r)
        ctx.close()
