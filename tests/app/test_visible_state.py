"""What a participant is shown of the state of things: a frozen phase says so (home
page, phase list, the upload's answer, ``submit``); a byte-identical re-upload is
refused before it takes a quota slot, naming the earlier submission; the home page shows
a signed-in team its quota left and its rank and score, task by task."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.cli import main
from app.main import create_app
from tests.app.conftest import ORG, InlineDispatcher, auth, make_settings, served

NOTE = "the leaderboard is frozen; this result will appear when it is unfrozen"


@pytest.fixture
def server(tmp_path: Path, challenge: Any) -> Iterator[dict[str, Any]]:
    """A real HTTP server judging inline, with phases "live" and "fz" (daily limit 3)."""
    settings = make_settings(
        tmp_path / "data", f"sqlite:///{tmp_path / 'h.db'}", refuse_duplicates=True
    )
    with served(create_app(settings, dispatcher=InlineDispatcher(settings))) as base:
        for name in ("live", "fz"):
            r = httpx.post(
                f"{base}/api/v1/admin/phases",
                json={"name": name, "ground_truth": str(challenge.ground_truth), "tasks": [2, 3]},
                headers=auth(ORG),
                timeout=120,
            )
            assert r.status_code == 201, r.text
        tokens = {
            t: httpx.post(f"{base}/api/v1/admin/teams", json={"name": t}, headers=auth(ORG)).json()[
                "token"
            ]
            for t in ("good", "poor")
        }
        yield {"base": base, "tokens": tokens, "challenge": challenge}


def _upload(srv: dict[str, Any], team: str, phase: str, task: int, content: bytes) -> Any:
    return httpx.post(
        f"{srv['base']}/api/v1/submissions",
        data={"phase": phase, "task": str(task)},
        files={"file": ("preds.csv", content, "text/csv")},
        headers=auth(srv["tokens"][team]),
        timeout=60,
    )


def _used(srv: dict[str, Any], team: str, phase: str, task: int) -> int:
    r = httpx.get(
        f"{srv['base']}/api/v1/phases/{phase}/limits",
        params={"task": task},
        headers=auth(srv["tokens"][team]),
    )
    r.raise_for_status()
    return int(r.json()["quota"]["used"])


def _home(srv: dict[str, Any], team: str | None) -> str:
    with httpx.Client(base_url=srv["base"]) as c:
        if team is not None:
            r = c.post(
                "/login", data={"token": srv["tokens"][team]}, headers={"Origin": srv["base"]}
            )
            assert r.status_code in (200, 303), r.text
        return c.get("/").text


def test_a_frozen_phase_says_so(
    server: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base = server["base"]
    csv2 = server["challenge"].archive("good", 2)
    assert _upload(server, "good", "fz", 2, csv2.read_bytes()).status_code == 202
    r = httpx.post(f"{base}/api/v1/admin/phases/fz/freeze", json={}, headers=auth(ORG))
    assert r.status_code == 200, r.text

    phases = {p["name"]: p for p in httpx.get(f"{base}/api/v1/phases").json()}
    assert phases["fz"]["frozen"] is True and phases["fz"]["frozen_note"] == NOTE
    assert phases["fz"]["frozen_at"]
    assert phases["live"]["frozen"] is False and phases["live"]["frozen_note"] is None

    # the upload's answer carries the note; a live phase's does not
    r = _upload(server, "poor", "fz", 2, server["challenge"].archive("poor", 2).read_bytes())
    assert r.status_code == 202 and r.json()["note"] == NOTE, r.text
    r = _upload(server, "poor", "live", 2, server["challenge"].archive("poor", 2).read_bytes())
    assert r.status_code == 202 and r.json()["note"] is None, r.text

    # the client prints it
    argv = ["submit", "--server", base, "--token", server["tokens"]["good"]]
    code = main(
        [*argv, "--phase", "fz", "--task", "3", str(server["challenge"].archive("good", 3))]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.count(NOTE) == 1, err

    page = _home(server, None)
    row = page[page.index("<strong>fz</strong>") :]
    row = row[: row.index("</tr>")]
    assert ">frozen<" in row and "The leaderboard is frozen; this result will appear" in row
    live = page[page.index("<strong>live</strong>") :]
    assert ">frozen<" not in live[: live.index("</tr>")]


def test_a_byte_identical_reupload_is_refused_before_the_quota(
    server: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    content = server["challenge"].archive("good", 2).read_bytes()
    r = _upload(server, "good", "live", 2, content)
    assert r.status_code == 202, r.text
    first = r.json()["id"]
    assert _used(server, "good", "live", 2) == 1
    r = _upload(server, "good", "live", 2, content)
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert f"byte-identical to submission {first} of your team" in detail, detail
    assert "preds.csv" in detail and "used no quota" in detail
    assert _used(server, "good", "live", 2) == 1
    # another team, another task, a dry run, or changed bytes: accepted
    assert _upload(server, "poor", "live", 2, content).status_code == 202
    changed = content.replace(b"\n", b"\r\n")
    assert _upload(server, "good", "live", 2, changed).status_code == 202
    r = httpx.post(
        f"{server['base']}/api/v1/submissions",
        params={"dry_run": "true"},
        data={"phase": "live", "task": "2"},
        files={"file": ("preds.csv", content, "text/csv")},
        headers=auth(server["tokens"]["good"]),
    )
    assert r.status_code == 202, r.text
    # the client: refused, said once
    path = server["challenge"].archive("good", 2)
    argv = ["submit", "--server", server["base"], "--token", server["tokens"]["good"]]
    code = main([*argv, "--phase", "live", "--task", "2", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count(f"byte-identical to submission {first}") == 1, err


def test_home_page_shows_the_teams_quota_left_and_best_score(server: dict[str, Any]) -> None:
    for team in ("good", "poor"):
        content = server["challenge"].archive(team, 2).read_bytes()
        assert _upload(server, team, "live", 2, content).status_code == 202
    page = _home(server, "poor")
    live = page[page.index("<strong>live</strong>") :]
    live = live[: live.index("</tr>")]
    t2 = re.search(r'data-task="2">(.*?)</div>', live, re.S)
    t3 = re.search(r'data-task="3">(.*?)</div>', live, re.S)
    assert t2 is not None and t3 is not None, live
    text2 = " ".join(re.sub(r"<[^>]+>", "", t2.group(1)).split())
    assert text2.startswith("Task 2: 4 of 5 left · rank 2, C-index"), text2
    assert " ".join(re.sub(r"<[^>]+>", "", t3.group(1)).split()) == "Task 3: 5 of 5 left"
    # signed out: no standing
    assert "data-task=" not in _home(server, None)
