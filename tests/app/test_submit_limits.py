"""``hecktor-eval submit`` refuses what the server would refuse before sending it: it
asks ``GET /api/v1/phases/{phase}/limits`` first. A 5 GB file is refused in about a
second with nothing uploaded; a bad token, an unknown or closed phase and the quota are
rejections (exit 2), each said once; the link printed after a score opens a page that
says how to sign in."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.cli import main
from app.main import create_app
from tests.app.conftest import ORG, RecordingDispatcher, auth, make_settings, served

GB = 1000**3


@pytest.fixture
def server(tmp_path: Path, challenge: Any) -> Iterator[dict[str, Any]]:
    """A real HTTP server (uvicorn in a thread) whose jobs are recorded, not judged."""
    settings = make_settings(
        tmp_path / "data", f"sqlite:///{tmp_path / 'h.db'}", max_upload_bytes=64 * 1024**2
    )
    dispatcher = RecordingDispatcher()
    with served(create_app(settings, dispatcher=dispatcher)) as base:
        for name, extra in (("p", {}), ("shut", {}), ("nil", {"daily_limit": 0})):
            r = httpx.post(
                f"{base}/api/v1/admin/phases",
                json={"name": name, "ground_truth": str(challenge.ground_truth), **extra},
                headers=auth(ORG),
                timeout=120,
            )
            assert r.status_code == 201, r.text
        httpx.post(f"{base}/api/v1/admin/phases/shut/close", headers=auth(ORG)).raise_for_status()
        token = httpx.post(
            f"{base}/api/v1/admin/teams", json={"name": "t"}, headers=auth(ORG)
        ).json()["token"]
        yield {"base": base, "token": token, "dispatcher": dispatcher}


def submit(
    capsys: pytest.CaptureFixture[str], srv: dict[str, Any], *argv: str, token: str | None = None
) -> tuple[int, str, str, float]:
    t = time.monotonic()
    code = main(["submit", "--server", srv["base"], "--token", token or srv["token"], *argv])
    took = time.monotonic() - t
    out, err = capsys.readouterr()
    return code, out, err, took


def uploads(srv: dict[str, Any]) -> int:
    r = httpx.get(f"{srv['base']}/api/v1/submissions", headers=auth(srv["token"]))
    r.raise_for_status()
    return len(r.json())


def test_limits_endpoint_answers_a_team_and_refuses_as_the_upload_would(
    server: dict[str, Any],
) -> None:
    base, tok = server["base"], server["token"]
    r = httpx.get(f"{base}/api/v1/phases/p/limits", params={"task": 2}, headers=auth(tok))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["max_upload_bytes"] == 64 * 1024**2
    assert "text/csv" in body["accepted_types"] and body["task"] == 2
    assert body["quota"] == {"limit": 5, "used": 0, "left": 5}
    assert set(body["dry_runs"]) == {"used", "limit", "bytes", "byte_limit"}
    cases = [
        ("p", auth("not-a-token"), 401),
        ("nope", auth(tok), 404),
        ("shut", auth(tok), 403),
        ("nil", auth(tok), 429),
        ("p", auth(ORG), 403),  # organizers have no team
    ]
    for phase, headers, want in cases:
        r = httpx.get(f"{base}/api/v1/phases/{phase}/limits", params={"task": 1}, headers=headers)
        assert r.status_code == want, (phase, r.text)
        assert set(r.json()) == {"detail", "errors"}
    openapi = httpx.get(f"{base}/openapi.json").json()
    assert "/api/v1/phases/{phase}/limits" in openapi["paths"]
    assert "SubmissionLimits" in openapi["components"]["schemas"]


def test_a_5_gb_file_is_refused_in_a_second_without_upload(
    server: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "predictions.zip"
    with open(big, "wb") as f:
        f.write(b"PK\x03\x04")
    os.truncate(big, 5 * GB)  # sparse: no 5 GB written to disk
    code, _, err, took = submit(capsys, server, "--phase", "p", "--task", "1", str(big))
    assert code == 2, err
    assert took < 5.0, f"refusing took {took:.1f} s"
    assert "predictions.zip: 4.7 GiB is larger than the server's upload limit of 64.0 MiB" in err
    assert err.count("larger than") == 1 and "Nothing was sent" in err
    assert uploads(server) == 0 and server["dispatcher"].submitted == []


def test_a_file_of_the_wrong_type_is_refused_before_upload(
    server: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "x.zip"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    code, _, err, _ = submit(capsys, server, "--phase", "p", "--task", "1", str(png))
    assert code == 2 and "PNG image" in err and "Nothing was sent" in err
    assert uploads(server) == 0


@pytest.mark.parametrize(
    ("phase", "token", "expected"),
    [
        ("p", "not-a-token", "not valid"),
        ("nope", None, "no phase named 'nope'"),
        ("shut", None, "phase 'shut' is closed"),
        ("nil", None, "accepts no submissions for task 2"),
    ],
)
def test_refusals_exit_2_with_one_message(
    server: dict[str, Any],
    challenge: Any,
    capsys: pytest.CaptureFixture[str],
    phase: str,
    token: str | None,
    expected: str,
) -> None:
    archive = str(challenge.archive("good", 2))
    code, out, err, _ = submit(
        capsys, server, "--phase", phase, "--task", "2", archive, token=token
    )
    assert code == 2, (out, err)
    assert expected in err
    assert err.count(expected) == 1, err  # the refusal, said once
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    assert len(lines) == len(set(lines)) <= 2, err
    assert "Traceback" not in err
    assert server["dispatcher"].submitted == []


def test_missing_file_is_a_rejection(
    server: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err, _ = submit(capsys, server, "--phase", "p", "--task", "2", str(tmp_path / "x"))
    assert code == 2 and "no such file" in err


def test_the_printed_link_opens_a_page_that_says_how_to_sign_in(server: dict[str, Any]) -> None:
    page = {"Accept": "text/html,application/xhtml+xml"}  # what a browser sends
    r = httpx.get(f"{server['base']}/submissions/1", headers=page)
    assert r.status_code == 401
    assert 'action="/login"' in r.text and "token" in r.text and "Sign in" in r.text
