"""Small things a first-time user trips on: the per-centre CSV carries a column of
reasons only when some metric is undefined; a refused admin command says its error
once; stopping the demo with SIGTERM leaves no judging process behind."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from app.cli import main as cli_main
from app.services.exports import per_center_csv
from tests.app.conftest import free_port


def _row(undefined: dict[str, str]) -> dict[str, object]:
    return {
        "rank": 1.0,
        "team": "good",
        "submission_id": 3,
        "centers": {
            "CHUB": {"n_cases": 4, "metrics": {"auc": 0.75}, "undefined": {}},
            "MDA": {"n_cases": 1, "metrics": {"auc": None}, "undefined": undefined},
        },
    }


def test_per_centre_csv_has_no_empty_reason_column() -> None:
    text = per_center_csv(3, [_row({})], names=["auc"])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["rank", "team", "submission_id", "center", "n_cases", "auc"]
    assert rows[1:] == [["1", "good", "3", "CHUB", "4", "0.75"], ["1", "good", "3", "MDA", "1", ""]]
    # a reason somewhere: the column is there, filled where it applies
    text = per_center_csv(3, [_row({"auc": "one class only"})], names=["auc"])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["undefined"] for r in rows] == ["", "auc: one class only"]


def test_duplicate_team_name_is_said_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["admin", "--data-dir", str(tmp_path / "d"), "--database-url"]
    argv += [f"sqlite:///{tmp_path / 'h.db'}", "team", "create", "--name", "alpha"]
    assert cli_main(argv) == 0
    capsys.readouterr()
    assert cli_main(argv) != 0
    err = capsys.readouterr().err
    assert err.count("a team named 'alpha' exists already") == 1, err


def _descendants(pid: int) -> set[int]:
    """Every living process below ``pid``, from /proc (``ppid`` is field 4 of stat)."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parents.items() if pp == p}
        out |= kids
        todo += kids
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_stops_the_demo_and_its_judges(tmp_path: Path, challenge: Any) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "app", "demo", "--out", str(tmp_path / "demo")]
    cmd += ["--challenge", str(challenge.root), "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 240
        for raw in proc.stdout:
            lines.append(raw.decode(errors="replace"))
            if "press Ctrl-C to stop" in lines[-1] or time.monotonic() > deadline:
                break
        assert "press Ctrl-C to stop" in "".join(lines), "".join(lines)
        children = _descendants(proc.pid)
        assert len(children) >= 2, children  # the judging processes
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(lines) + rest
    assert "stopping" in rest, rest
    deadline = time.monotonic() + 10
    while [p for p in children if _alive(p)] and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in children if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"judging processes left behind after SIGTERM: {left}"


def test_console_board_title_keeps_to_one_line_and_says_what_hash_is() -> None:
    from rich.console import Console

    from app.cli.console import leaderboard_table

    board = {
        "phase": "demo",
        "task": 2,
        "selection": "best",
        "rows": [
            {
                "rank": 1.0,
                "team": "good",
                "metrics": {"c_index": 0.93},
                "ranks": {},
                "submission_id": 2,
            }
        ],
    }
    con = Console(width=160, record=True, highlight=False)
    con.print(leaderboard_table(board))
    lines = con.export_text().splitlines()
    assert lines[0].strip() == "demo · Task 2 · recurrence-free survival (C-index)", lines[:3]
    assert "#: the id of the submission ranked" in " ".join(" ".join(lines).split())
