"""Security through a real server on 127.0.0.1 (uvicorn, raw requests where a client
library would clean the path):

- every organizer route refused to anonymous callers and teams, and re-scoring keeping
  one result per submission;
- no path from the web layer to the ground truth (path traversal on every route with a
  path parameter and on the static files);
- error messages never reveal ground-truth values; a hidden phase withholds scores and
  per-case details from teams everywhere (API, exports, pages);
- hostile text (a PatientID or file name holding HTML) is escaped on the pages;
- repeated authentication failures are rate-limited (429 + Retry-After) per client
  address and per token prefix.
"""

from __future__ import annotations

import csv
import io
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.routing import Mount

from app.cli.demo import ServerThread
from app.main import create_app
from app.ratelimit import AuthFailureLimiter
from tests.app.conftest import ORG, InlineDispatcher, auth, free_port, make_settings


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, challenge: Any) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("security")
    settings = make_settings(tmp / "data", f"sqlite:///{tmp / 'hecktor.db'}")
    app = create_app(settings, dispatcher=InlineDispatcher(settings))
    port = free_port()
    st = ServerThread(app, "127.0.0.1", port)
    st.start()
    base = f"http://127.0.0.1:{port}"
    c = httpx.Client(base_url=base, timeout=60, follow_redirects=False)
    try:
        for name, hidden in (("pub", False), ("priv", True)):
            r = c.post(
                "/api/v1/admin/phases",
                json={"name": name, "ground_truth": str(challenge.ground_truth), "hidden": hidden},
                headers=auth(ORG),
            )
            assert r.status_code == 201, r.text
        tokens: dict[str, str | None] = {"anon": None, "org": ORG}
        for team in ("own", "other"):
            r = c.post("/api/v1/admin/teams", json={"name": team}, headers=auth(ORG))
            tokens[team] = r.json()["token"]
        ids = {}
        for phase in ("pub", "priv"):
            for task in (1, 2):
                r = c.post(
                    "/api/v1/submissions",
                    data={"phase": phase, "task": str(task)},
                    files={"file": ("s", challenge.archive("good", task).read_bytes())},
                    headers=auth(tokens["own"]),
                )
                assert r.status_code == 202, r.text
                ids[f"{phase}{task}"] = r.json()["id"]
        for sid in ids.values():
            doc = c.get(f"/api/v1/submissions/{sid}", headers=auth(ORG)).json()
            assert doc["status"] == "scored", doc
        yield {
            "app": app,
            "c": c,
            "port": port,
            "tokens": tokens,
            "ids": ids,
            "settings": settings,
            "challenge": challenge,
        }
    finally:
        c.close()
        st.server.should_exit = True
        st.thread.join(timeout=30)


def call(world: dict[str, Any], role: str, method: str, path: str, **kw: Any) -> httpx.Response:
    c: httpx.Client = world["c"]
    return c.request(method, path.format(**world["ids"]), headers=auth(world["tokens"][role]), **kw)


def raw_get(world: dict[str, Any], target: str, token: str | None = None) -> tuple[int, bytes]:
    """A GET with the request target sent exactly as given (no client-side cleaning)."""
    head = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    with socket.create_connection(("127.0.0.1", world["port"]), timeout=30) as s:
        s.sendall((head + "\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split(b" ")[1]), rest.partition(b"\r\n\r\n")[2]


# -- re-scoring -------------------------------------------------------------------------------
def test_rescore_keeps_one_result_per_submission(world: dict[str, Any]) -> None:
    before = call(world, "org", "GET", "/api/v1/submissions/{pub2}").json()
    r = call(world, "org", "POST", "/api/v1/admin/phases/pub/rescore", json={"task": 2})
    assert r.status_code == 200 and world["ids"]["pub2"] in r.json()["queued"]
    after = call(world, "org", "GET", "/api/v1/submissions/{pub2}").json()
    assert after["status"] == "scored"
    assert after["result"]["metrics"] == before["result"]["metrics"]
    assert len(after["result"]["cases"]) == len(before["result"]["cases"])
    board = call(world, "anon", "GET", "/api/v1/leaderboards/pub/2").json()
    assert [row["submission_id"] for row in board["rows"]] == [world["ids"]["pub2"]]


def all_routes(routes: list[Any], prefix: str = "") -> Iterator[Any]:
    """Every route of the app, also inside included routers (FastAPI may wrap them)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            ctx = getattr(route, "include_context", None)
            yield from all_routes(inner.routes, prefix + (getattr(ctx, "prefix", "") or ""))
        elif prefix and hasattr(route, "path"):
            yield _Prefixed(prefix + route.path, route)
        else:
            yield route


class _Prefixed:
    def __init__(self, path: str, route: Any) -> None:
        self.path = path
        self.methods = getattr(route, "methods", None)
        self.app = getattr(route, "app", None)


def _admin_routes(app: Any) -> list[tuple[str, str]]:
    out = []
    for route in all_routes(app.routes):
        path = getattr(route, "path", "")
        if path.startswith("/api/v1/admin"):
            for method in sorted(getattr(route, "methods", ()) or ()):
                if method != "HEAD":
                    out.append((method, re.sub(r"\{[^}]+\}", "pub", path)))
    return out


def test_every_organizer_route_refuses_anonymous_callers_and_teams(world: dict[str, Any]) -> None:
    routes = _admin_routes(world["app"])
    assert len(routes) >= 8
    for method, path in routes:
        for role, want in (("anon", 401), ("own", 403), ("other", 403)):
            r = call(world, role, method, path, json={})
            assert r.status_code == want, (role, method, path, r.text[:200])


# -- no path from the web layer to ground-truth files -------------------------------------------
def _secrets(world: dict[str, Any]) -> list[bytes]:
    """Bytes that must never appear in an answer: ground-truth contents and locations."""
    gt: Path = world["settings"].ground_truth_dir
    out = [str(world["settings"].data_dir).encode(), b"SQLite format 3"]
    for p in gt.rglob("*.csv"):
        lines = p.read_bytes().splitlines()
        out += [lines[0], *lines[1:3]]
    for p in list(gt.rglob("*.nii.gz"))[:2]:
        out.append(p.read_bytes()[:64])
    return out


def _traversals(world: dict[str, Any]) -> list[str]:
    gt: Path = world["settings"].ground_truth_dir
    csv_file = next(gt.rglob("*.csv"))
    rel = csv_file.relative_to(world["settings"].data_dir).as_posix()
    return [
        "..",
        "../..",
        "../../../ground_truth",
        f"../../{rel}",
        quote(f"../../{rel}", safe=""),
        "%2e%2e%2f%2e%2e%2fhecktor.db",
        "..%2F..%2F..%2Fhecktor.db",
        "....//....//hecktor.db",
        "..%5c..%5checktor.db",
        quote(str(csv_file), safe=""),
        str(csv_file).lstrip("/"),
        "%00",
        "ground_truth",
    ]


def _param_routes(app: Any) -> list[str]:
    paths = []
    for route in all_routes(app.routes):
        methods = getattr(route, "methods", None) or set()
        if "GET" in methods and "{" in route.path:
            paths.append(route.path)
    return paths


def test_no_route_reaches_ground_truth_files(world: dict[str, Any]) -> None:
    secrets = _secrets(world)
    routes = _param_routes(world["app"])
    assert "/api/v1/submissions/{submission_id}/cases.csv" in routes
    checked = 0
    for template in routes:
        for payload in _traversals(world):
            target = re.sub(r"\{[^}]+\}", lambda _m, p=payload: p, template)
            for token in (None, world["tokens"]["own"], ORG):
                status, body = raw_get(world, target, token)
                checked += 1
                assert status != 500, (target, body[:300])
                leaked = [s for s in secrets if s in body]
                assert not leaked, (target, leaked)
    assert checked > 100


def test_static_files_serve_only_the_static_folder(world: dict[str, Any]) -> None:
    mounts = [r for r in all_routes(world["app"].routes) if isinstance(r, Mount)]
    data_dir = world["settings"].data_dir
    for m in mounts:  # nothing mounted from the data folder
        directory = Path(getattr(m.app, "directory", "") or "/nonexistent").resolve()
        assert not directory.is_relative_to(data_dir) and not data_dir.is_relative_to(directory)
    assert raw_get(world, "/static/style.css")[0] == 200
    secrets = _secrets(world)
    for payload in _traversals(world):
        for prefix in ("/static/", "/static/x/", "/static//"):
            status, body = raw_get(world, prefix + payload)
            assert status in (400, 404, 405), (prefix + payload, status)
            assert not [s for s in secrets if s in body]


# -- ground-truth values in messages; hidden phases -------------------------------------------------
BAD_TABLES: list[tuple[int, bytes]] = [
    (2, b"PatientID,Prediction\nNOPE-1,1\n"),
    (2, b"PatientID,Prediction,RFS\n"),
    (2, b"id,risk\n1,2\n"),
    (3, b"PatientID,Prediction\nNOPE-1,2.5\n"),
    (3, b'[{"PatientID": 1, "Prediction": "x"}]'),
]


def test_error_messages_never_reveal_ground_truth_values(world: dict[str, Any]) -> None:
    gt = world["challenge"].ground_truth
    values: set[str] = set()
    rows: list[dict[str, str]] = []
    for task in (2, 3):
        text = next((gt / f"Task {task}").glob("*.csv")).read_text()
        rows += list(csv.DictReader(io.StringIO(text)))
    for row in rows:
        values |= {row["RFS"]} if "RFS" in row else set()
    messages: list[str] = []
    for phase in ("pub", "priv"):
        for task, content in BAD_TABLES:
            rows = content.split(b"\n", 1)[-1]
            for good in (False, True) if rows.strip() else (False,):
                # bad rows alone, and bad rows after a good table
                body = content
                if good:
                    body = world["challenge"].archive("good", task).read_bytes() + rows
                r = call(
                    world,
                    "own",
                    "POST",
                    "/api/v1/submissions",
                    data={"phase": phase, "task": str(task)},
                    files={"file": ("t.csv", body)},
                )
                if r.status_code != 202:
                    messages.append(r.text)
                    continue
                doc = call(world, "own", "GET", f"/api/v1/submissions/{r.json()['id']}").json()
                assert doc["status"] == "failed" and doc["result"] is None
                messages += [e["message"] for e in doc["errors"]]
    assert len(messages) >= 10
    text = "\n".join(messages)
    for v in values:  # survival times (3-4 digit numbers) never appear
        assert not re.search(rf"(?<![\d.]){re.escape(v)}(?![\d.])", text), v
    for column in ("Relapse", "HPV Status", "CenterID"):  # nor the hidden table's columns
        assert column not in text


def _org_metric_strings(world: dict[str, Any], key: str) -> list[str]:
    doc = call(world, "org", "GET", f"/api/v1/submissions/{{{key}}}").json()
    return [f"{v:.4f}" for v in doc["result"]["metrics"].values() if isinstance(v, float)]


def test_hidden_phase_withholds_scores_and_cases_everywhere(world: dict[str, Any]) -> None:
    for key in ("priv1", "priv2"):
        shown = _org_metric_strings(world, key)
        assert shown
        doc = call(world, "own", "GET", f"/api/v1/submissions/{{{key}}}").json()
        assert doc["status"] == "scored" and doc["scores_hidden"] and doc["result"] is None
        page = call(world, "own", "GET", f"/submissions/{{{key}}}").text
        assert "hidden" in page and "Per-case results" not in page
        assert not [v for v in shown if v in page], "a hidden score is on the team's page"
        for path in (
            f"/api/v1/submissions/{{{key}}}/cases.csv",
            f"/submissions/{{{key}}}/cases.csv",
        ):
            assert call(world, "own", "GET", path).status_code == 403
    listing = call(world, "own", "GET", "/api/v1/submissions?phase=priv").json()
    assert listing and all("result" not in s and "metrics" not in s for s in listing)
    index = call(world, "own", "GET", "/").text
    # the public phase's row shows the team's own standing there, and the same files
    # score the same in both phases: the hidden phase's row must show none of it
    priv_row = index.split("<td><strong>priv</strong></td>", 1)[1].split("</tr>", 1)[0]
    assert "left" in priv_row and "rank" not in priv_row
    after_phases = index.split('id="phases"', 1)[1].split("</table>", 1)[1]
    outside_pub = index.split("<td><strong>pub</strong></td>", 1)[0] + priv_row + after_phases
    for key in ("priv1", "priv2"):
        assert not [v for v in _org_metric_strings(world, key) if v in outside_pub]
    # the organizer sees everything
    assert call(world, "org", "GET", "/submissions/{priv1}/cases.csv").status_code == 200


def test_hostile_text_is_escaped_on_pages(world: dict[str, Any]) -> None:
    evil = "<script>alert(1)</script>"
    r = call(
        world,
        "own",
        "POST",
        "/api/v1/submissions",
        data={"phase": "pub", "task": "2"},
        files={
            "file": (
                "<img src=x onerror=alert(2)>.csv",
                f"PatientID,Prediction\n{evil},1\n".encode(),
            )
        },
    )
    assert r.status_code == 202, r.text
    page = call(world, "own", "GET", f"/submissions/{r.json()['id']}").text
    assert "not a case of this phase" in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert "<img src=x" not in page


# -- rate limit of authentication failures ---------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limited(tmp_path: Path, challenge: Any) -> Iterator[dict[str, Any]]:
    settings = make_settings(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'hecktor.db'}",
        auth_failure_limit=5,
        auth_failure_window=60.0,
    )
    app = create_app(settings, dispatcher=InlineDispatcher(settings))
    clock = Clock()
    app.state.auth_limiter = AuthFailureLimiter(5, 60.0, clock=clock)
    with TestClient(app, raise_server_exceptions=False, client=("10.0.0.1", 1000)) as c:
        r = c.post("/api/v1/admin/teams", json={"name": "t"}, headers=auth(ORG))
        token = r.json()["token"]

        def client_from(addr: str) -> TestClient:
            return TestClient(app, raise_server_exceptions=False, client=(addr, 1000))

        yield {"c": c, "clock": clock, "token": token, "client_from": client_from}


def test_failures_from_one_address_are_rate_limited(limited: dict[str, Any]) -> None:
    c: TestClient = limited["c"]
    for i in range(5):
        r = c.get("/api/v1/me", headers=auth(f"guess-{i:04d}-xxxxxxxx"))
        assert r.status_code == 401
    r = c.get("/api/v1/me", headers=auth("guess-9999-xxxxxxxx"))
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert "too many failed authentication attempts" in r.json()["detail"]
    # while blocked, a valid token from that address is refused too (no oracle) ...
    assert c.get("/api/v1/me", headers=auth(limited["token"])).status_code == 429
    assert c.get("/", headers=auth(limited["token"])).status_code == 429
    # ... anonymous requests still work, and so does another address
    assert c.get("/api/v1/phases").status_code == 200
    other = limited["client_from"]("10.0.0.2")
    assert other.get("/api/v1/me", headers=auth(limited["token"])).status_code == 200
    # the window slides: a minute later the address may try again
    limited["clock"].now += 61
    assert c.get("/api/v1/me", headers=auth(limited["token"])).status_code == 200


def test_failures_with_one_token_prefix_are_rate_limited_across_addresses(
    limited: dict[str, Any],
) -> None:
    prefix = limited["token"][:8]
    for i in range(5):
        cl = limited["client_from"](f"10.1.0.{i}")
        assert cl.get("/api/v1/me", headers=auth(f"{prefix}wrong{i}")).status_code == 401
    fresh = limited["client_from"]("10.2.0.1")
    r = fresh.get("/api/v1/me", headers=auth(f"{prefix}wrong-again"))
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    # another prefix from that fresh address is not affected
    assert fresh.get("/api/v1/me", headers=auth("zzzzzzzz-other")).status_code == 401


def test_login_form_counts_as_failures_and_stale_cookies_do_not(limited: dict[str, Any]) -> None:
    c = limited["client_from"]("10.3.0.1")
    for i in range(30):
        c.cookies.set("hecktor_session", f"cookie-guess-{i}")
        assert c.get("/").status_code == 200  # a bad cookie: the page as anonymous
    c.cookies.clear()
    origin = {"Origin": str(c.base_url).rstrip("/")}
    for i in range(5):
        r = c.post(
            "/login", data={"token": f"form-guess-{i}"}, headers=origin, follow_redirects=False
        )
        assert r.status_code == 401
    r = c.post("/login", data={"token": "form-guess-x"}, headers=origin, follow_redirects=False)
    assert r.status_code == 429 and "retry-after" in r.headers


def test_limiter_memory_is_bounded() -> None:
    clock = Clock()
    lim = AuthFailureLimiter(3, 60.0, max_keys=100, clock=clock)
    for i in range(10_000):
        lim.record_failure([f"addr:{i}", f"token:{i}"])
    assert len(lim._events) <= 100
    lim.record_failure(["addr:x"] * 3)
    assert lim.retry_after(["addr:x"]) == 60
    clock.now += 30
    assert lim.retry_after(["addr:x"]) == 30
    clock.now += 31
    assert lim.retry_after(["addr:x"]) is None
    assert AuthFailureLimiter(0, 60.0).retry_after(["a"]) is None


def test_hidden_phase_board_stays_hidden_even_if_set_public(
    sqlite_url: str, app_factory: Any
) -> None:
    # an organizer sets a hidden phase's leaderboard public: teams still see no scores
    api = app_factory(sqlite_url)
    api.create_phase("test", hidden=True, leaderboard_public=True)
    token = api.create_team("t1")
    for who in (None, token):
        r = api.client.get("/api/v1/leaderboards/test/1", headers=auth(who))
        assert r.status_code in (401, 403, 404), (who, r.status_code)
    assert api.client.get("/api/v1/leaderboards/test/1", headers=auth(ORG)).status_code == 200


def test_security_headers_on_every_kind_of_answer(world: dict[str, Any]) -> None:
    for path in ("/api/v1/phases", "/", "/static/style.css", "/api/v1/nope", "/leaderboards/x/1"):
        r = call(world, "anon", "GET", path)
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["referrer-policy"] == "same-origin", path
        assert r.headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
