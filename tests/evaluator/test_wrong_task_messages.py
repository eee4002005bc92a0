"""Messages that name the file once and say which task an upload looks like: a Task 1
archive given to Task 2 or 3, a Task 3 (HPV) table given to Task 2 and the reverse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluator.cli import main
from evaluator.errors import SubmissionRejected, TableError
from evaluator.scoring import load_ground_truth, score_submission
from tests.builders import make_tar, make_zip, nifti_bytes

IDS = ("CHUM-001", "CHUM-002", "MDA-010")
T1_HINT = (
    ". This looks like a Task 1 submission (label maps: 3 file(s) such as CHUM-001.nii.gz): "
    "upload it to Task 1"
)


@pytest.fixture()
def truth(tmp_path: Path) -> dict[int, Path]:
    t2, t3 = tmp_path / "t2.csv", tmp_path / "t3.csv"
    t2.write_text("PatientID,RFS,Relapse\nCHUM-001,10,1\nCHUM-002,20,0\nMDA-010,5,1\n")
    t3.write_text("PatientID,HPV Status\nCHUM-001,1\nCHUM-002,0\nMDA-010,1\n")
    return {2: t2, 3: t3}


def _problems(task: int, gt: Path, sub: Path) -> list[str]:
    with pytest.raises(SubmissionRejected) as info:
        score_submission(task, load_ground_truth(task, gt), sub)
    return [str(p) for p in info.value.problems]


def _task1_files() -> dict[str, bytes]:
    return {f"{pid}.nii.gz": nifti_bytes(np.zeros((4, 4, 4), np.uint8)) for pid in IDS}


@pytest.mark.parametrize("task", [2, 3])
@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_a_task1_archive_given_to_a_table_task_says_so(truth, tmp_path, task, kind) -> None:
    files = {f"team/{k}": v for k, v in _task1_files().items()}
    sub = (make_zip if kind == "zip" else make_tar)(tmp_path / f"t1.{kind}", files)
    case_file = {2: "rfs.json", 3: "hpv-status.json"}[task]
    assert _problems(task, truth[task], sub) == [
        "submission: no prediction table found: expected one table file (.csv with the "
        f"header PatientID,Prediction, or .json) or one folder per case holding "
        f"<PatientID>/{case_file}; found: CHUM-001.nii.gz, CHUM-002.nii.gz, MDA-010.nii.gz"
        + T1_HINT
    ]


def test_an_hpv_table_given_to_task2_says_so(truth, tmp_path) -> None:
    sub = tmp_path / "hpv.csv"
    sub.write_text("PatientID,HPV\nCHUM-001,0.9\nCHUM-002,0.2\nMDA-010,0.7\n")
    assert _problems(2, truth[2], sub) == [
        "hpv.csv: missing column Prediction: found 'PatientID', 'HPV'; expected exactly the "
        "columns PatientID, Prediction. A column named like HPV ('HPV'): this looks like a "
        "Task 3 (HPV status) table; upload it to Task 3, or if it is this task's prediction, "
        "name the column Prediction"
    ]


def test_a_risk_table_given_to_task3_says_so(truth, tmp_path) -> None:
    sub = tmp_path / "risk.csv"
    sub.write_text("PatientID,Risk\nCHUM-001,2.5\nCHUM-002,-1\nMDA-010,0.3\n")
    assert _problems(3, truth[3], sub) == [
        "risk.csv: missing column Prediction: found 'PatientID', 'Risk'; expected exactly "
        "the columns PatientID, Prediction. A column named like RFS ('Risk'): this looks "
        "like a Task 2 (RFS) table; upload it to Task 2, or if it is this task's "
        "prediction, name the column Prediction"
    ]
    # this task's own column name gets no hint
    sub.write_text("PatientID,HPV probability\nCHUM-001,0.9\n")
    assert "looks like" not in _problems(3, truth[3], sub)[0]


def test_offline_messages_name_the_file_once(truth, tmp_path, capsys) -> None:
    sub = tmp_path / "mine.csv"
    sub.write_text("PatientID,Risk\nCHUM-001,2.5\n")
    argv = ["score", "--task", "3", "--ground-truth", str(truth[3]), "-q"]
    assert main([*argv, "--predictions", str(sub), "--output", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Submission rejected: 1 problem(s):\n  - mine.csv: missing column")
    assert err.count("mine.csv") == 1
    # the problem keeps its case and message apart (the JSON document is unchanged)
    e = TableError("mine.csv", "mine.csv line 3: not a number")
    assert str(e) == "mine.csv line 3: not a number"
    assert str(TableError("CHUM-001", "mine.csv line 3: bad")) == "CHUM-001: mine.csv line 3: bad"
