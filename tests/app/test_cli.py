"""Organizer CLI (admin ...), the participants' `submit` client against a live server,
and the demo (`python -m app demo --exit`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.cli import main
from app.cli.demo import ServerThread
from app.jobs.local import LocalDispatcher
from app.main import create_app
from tests.app.conftest import free_port, make_settings

REPO = Path(__file__).resolve().parents[2]


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``python -m app *argv`` in this process: exit code, stdout, stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def admin(capsys: pytest.CaptureFixture[str], data: Path, *argv: str) -> tuple[int, str, str]:
    return cli(capsys, "admin", "--data-dir", str(data), *argv)


def _check_tokens_and_submit(
    capsys: pytest.CaptureFixture[str],
    data: Path,
    challenge: Any,
    *,
    team: str,
    org: str,
    revoked: str,
) -> None:
    """Through the API of ``data``: the team and organizer tokens work, the revoked one
    is refused; the phase is opened by the CLI and the team's Task 2 upload accepted."""
    from fastapi.testclient import TestClient

    from tests.app.conftest import InlineDispatcher

    settings = make_settings(data, f"sqlite:///{data / 'hecktor.db'}", organizer_token=None)
    with TestClient(create_app(settings, dispatcher=InlineDispatcher(settings))) as c:
        assert (
            c.get("/api/v1/me", headers={"Authorization": f"Bearer {team}"}).json()["team"]
            == "alpha"
        )
        assert (
            c.get("/api/v1/me", headers={"Authorization": f"Bearer {org}"}).json()["role"]
            == "organizer"
        )
        assert (
            c.get("/api/v1/me", headers={"Authorization": f"Bearer {revoked}"}).status_code == 401
        )
        admin(capsys, data, "phase", "open", "test")
        r = c.post(
            "/api/v1/submissions",
            data={"phase": "test", "task": "2"},
            files={"file": ("p.csv", challenge.archive("good", 2).read_bytes())},
            headers={"Authorization": f"Bearer {team}"},
        )
        assert r.status_code == 202, r.text


def test_admin_commands(tmp_path: Path, challenge: Any, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    code, out, _ = admin(capsys, data, "init")
    assert code == 0
    org = out.strip().splitlines()[-1]
    assert len(org) >= 40 and " " not in org
    code, out, _ = admin(capsys, data, "init")
    assert code == 0 and "already initialised" in out
    code, out, _ = admin(capsys, data, "init", "--rotate-token")
    new_org = out.strip().splitlines()[-1]
    assert new_org != org

    def create(name: str, ground_truth: Path, *flags: str) -> tuple[int, str, str]:
        argv = ("phase", "create", "--name", name, "--ground-truth", str(ground_truth), *flags)
        return admin(capsys, data, *argv)

    flags = ("--tasks", "1,2,3", "--hidden", "--daily-limit", "3", "--selection", "latest")
    code, out, err = create("test", challenge.ground_truth, *flags)
    assert code == 0, err
    assert "phase 'test' created" in out and "scores hidden" in out and "organizers only" in out
    assert "task 1: 6 cases" in out
    code, _, err = create("test", challenge.ground_truth)
    assert code == 1 and "exists already" in err
    code, _, err = create("bad", tmp_path)
    assert code == 1 and "Task 1" in err and "missing" in err

    # the ground truth was copied (labels and CSVs only) into the data dir
    copied = sorted(p.name for p in (data / "ground_truth").rglob("*") if p.is_file())
    assert copied and not any("__CT" in n or "__PT" in n for n in copied)

    code, out, _ = admin(capsys, data, "team", "create", "--name", "alpha")
    assert code == 0
    token = out.strip().splitlines()[-1]
    assert len(token) >= 40 and " " not in token
    code, _, err = admin(capsys, data, "team", "create", "--name", "alpha")
    assert code == 1 and "exists already" in err

    code, out, _ = admin(capsys, data, "phase", "close", "test")
    assert code == 0 and "closed" in out
    code, out, _ = admin(capsys, data, "phase", "list")
    assert "test\tclosed\ttasks 1,2,3\thidden\tleaderboard organizers" in out

    # the tokens printed by the CLI work against the API of the same data dir
    _check_tokens_and_submit(capsys, data, challenge, team=token, org=new_org, revoked=org)

    out_csv = tmp_path / "lb.csv"
    export = ("leaderboard", "export", "--phase", "test", "--task", "2", "--output", str(out_csv))
    code, out, _ = admin(capsys, data, *export)
    assert code == 0 and "wrote 1 row(s)" in out
    lines = out_csv.read_text().splitlines()
    assert lines[0].startswith("rank,team,submission_id,c_index") and lines[1].startswith(
        "1,alpha,1,"
    )

    code, out, _ = admin(capsys, data, "phase", "rescore", "test", "--run")
    assert code == 0 and "queued 1 submission(s)" in out and "submission 1: scored" in out


@pytest.fixture
def live(tmp_path: Path, pool: ProcessPoolExecutor, challenge: Any) -> Iterator[dict[str, Any]]:
    """A real server (uvicorn in a thread, local dispatcher on the session's pool)."""
    port = free_port()
    settings = make_settings(tmp_path / "data", f"sqlite:///{tmp_path / 'data' / 'h.db'}")
    d = LocalDispatcher(settings, executor=pool)
    d.start()
    server = ServerThread(create_app(settings, dispatcher=d), "127.0.0.1", port)
    server.start()
    base = f"http://127.0.0.1:{port}"
    org = {"Authorization": f"Bearer {settings.organizer_token.get_secret_value()}"}  # type: ignore[union-attr]
    r = httpx.post(
        f"{base}/api/v1/admin/phases",
        json={"name": "p", "ground_truth": str(challenge.ground_truth)},
        headers=org,
        timeout=60,
    )
    assert r.status_code == 201, r.text
    teams = {}
    for name in ("perfect", "good", "mediocre", "poor"):
        teams[name] = httpx.post(
            f"{base}/api/v1/admin/teams", json={"name": name}, headers=org
        ).json()["token"]
    yield {"base": base, "teams": teams, "settings": settings}
    server.stop()


def test_submit_client(
    live: dict[str, Any], challenge: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, tok = live["base"], live["teams"]["good"]

    def submit(task: int, archive: Path, *flags: str) -> tuple[int, str, str]:
        argv = ("--server", base, "--token", tok, "--phase", "p", "--task", str(task), *flags)
        return cli(capsys, "submit", *argv, str(archive))

    code, out, _ = submit(1, challenge.archive("good", 1))
    assert code == 0
    assert "GTVp DSC (mean)" in out and "per-case results:" in out

    code, out, _ = submit(2, challenge.archive("good", 2), "--dry-run")
    assert code == 0
    assert "valid" in out

    bad = tmp_path / "bad.csv"
    bad.write_text("PatientID,Prediction\nnobody,0.5\n")
    code, out, _ = submit(3, bad)
    assert code == 2
    assert "Problems found" in out and "nobody" in out

    code, _, err = submit(3, bad, "--token", "wrong")
    assert code == 2  # a bad token is a rejection
    assert "not valid" in err
    png = tmp_path / "x.zip"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    code, _, err = submit(1, png)
    assert code == 2
    assert "PNG image" in err

    code, out, _ = submit(2, challenge.archive("good", 2), "--json")
    assert code == 0
    assert '"status": "scored"' in out


def test_demo_exits_after_printing(tmp_path: Path, challenge: Any) -> None:
    port = free_port()
    env = {**os.environ, "DEMO_EXIT": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "demo",
            "--out",
            str(tmp_path / "demo"),
            "--challenge",
            str(challenge.root),
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for title in (
        "Task 1 · GTVp/GTVn segmentation",
        "Task 2 · recurrence-free",
        "Task 3 · HPV status",
    ):
        assert title in out
    assert out.count("✓ synthetic teams in their quality order") >= 1
    assert (
        "demo wall time:" in out and f"data folder:    {tmp_path / 'demo' / 'hecktor-data'}" in out
    )
    assert (tmp_path / "demo" / "hecktor-data" / "hecktor.db").exists()


def test_commands_plug_into_hecktor_eval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from importlib.metadata import entry_points

    if not any(
        ep.value == "app.cli:register" for ep in entry_points(group="hecktor_eval.commands")
    ):
        pytest.skip("the package is not installed with its entry points")
    from evaluator.cli import main as hecktor_eval

    data = str(tmp_path / "d")
    assert hecktor_eval(["admin", "--data-dir", data, "init"]) == 0
    assert hecktor_eval(["admin", "--data-dir", data, "team", "create", "--name", "zeta"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert len(token) >= 40
