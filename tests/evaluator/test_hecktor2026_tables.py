"""HECKTOR 2026 Task 2 and Task 3 end to end through the scorer: the staging ground
truth (columns, normalisation, unknown values), staging predictions as a CSV table or
as case folders, every problem reported at once, and the RFS meaning in the result."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from sklearn.metrics import balanced_accuracy_score

from evaluator.errors import GroundTruthError, SubmissionRejected
from evaluator.io.table_truth import StagingGroundTruth, read_table_ground_truth
from evaluator.protocol import HECKTOR2025, HECKTOR2026
from evaluator.scoring import load_ground_truth, prepare_ground_truth, score_submission

CLINICAL = (
    "PatientID,CenterID,RFS,Relapse,T-stage,N-stage\n"
    "CHUM-001,CHUM,100,1,T1,N0\n"
    "CHUM-002,CHUM,200,0,t2,N2b\n"
    "CHUV-003,CHUV,50,1,T4a,n1\n"
    "CHUV-004,CHUV,300,1,T2,N2C\n"
    "CHUV-005,CHUV,80,0,,N0\n"  # T unknown: not a staging case
)


def _gt(tmp_path: Path, text: str = CLINICAL) -> Path:
    f = tmp_path / "gt" / "clinical.csv"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text, encoding="utf-8")
    return f


def test_staging_ground_truth_is_normalised(tmp_path: Path) -> None:
    gt = read_table_ground_truth(3, _gt(tmp_path), protocol=HECKTOR2026)
    assert isinstance(gt, StagingGroundTruth)
    assert gt.ids == ("CHUM-001", "CHUM-002", "CHUV-003", "CHUV-004")
    assert gt.t_stages == ("T1", "T2", "T4", "T2")
    assert gt.n_stages == ("N0", "N2", "N1", "N2")
    assert gt.unknown_ids == ("CHUV-005",)
    # the same file under 2025 rules has no HPV column
    with pytest.raises(GroundTruthError, match="HPV Status"):
        read_table_ground_truth(3, _gt(tmp_path), protocol=HECKTOR2025)


def test_staging_ground_truth_errors_name_file_row_and_allowed_values(tmp_path: Path) -> None:
    text = "PatientID,T-stage,N-stage\nA-1,T5,N0\nA-2,T1,N2d\nA-3,N1,N1\n"
    with pytest.raises(GroundTruthError) as info:
        read_table_ground_truth(3, _gt(tmp_path, text), protocol=HECKTOR2026)
    problems = info.value.problems
    assert len(problems) == 3
    assert problems[0].startswith(
        "clinical.csv line 2: A-1: T-stage is 'T5'; expected one of T1, T2, T3, T4"
    )
    assert "T4A -> T4" in problems[0]
    assert problems[1].startswith(
        "clinical.csv line 3: A-2: N-stage is 'N2d'; expected one of N0, N1, N2, N3"
    )
    assert problems[2].startswith("clinical.csv line 4: A-3: T-stage is 'N1'")


def test_configurable_columns_and_aliases(tmp_path: Path) -> None:
    text = "ID,T,N\nA-1,T0,N0\nA-2,T1,N1\n"
    p = HECKTOR2026.with_changes(
        id_column="ID",
        t_stage_column="T",
        n_stage_column="N",
        t_stages=("T0", "T1"),
        stage_aliases=(),
    )
    gt = read_table_ground_truth(3, _gt(tmp_path, text), protocol=p)
    assert isinstance(gt, StagingGroundTruth) and gt.t_stages == ("T0", "T1")


def _score3(tmp_path: Path, predictions: Path) -> dict[str, object]:
    gt = load_ground_truth(3, _gt(tmp_path), protocol=HECKTOR2026)
    return dict(score_submission(3, gt, predictions, protocol=HECKTOR2026))


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_staging_csv_submission(tmp_path: Path) -> None:
    sub = tmp_path / "staging.csv"
    sub.write_text(
        "PatientID,T-stage,N-stage\n"
        "CHUM-001,T1,N0\nCHUM-002,T3,N2a\nCHUV-003,t4b,N1\nCHUV-004,T2,N0\nCHUV-005,T1,N0\n"
    )
    doc = _score3(tmp_path, sub)
    m = doc["metrics"]
    assert isinstance(m, dict)
    t_true, t_pred = ["T1", "T2", "T4", "T2"], ["T1", "T3", "T4", "T2"]
    n_true, n_pred = ["N0", "N2", "N1", "N2"], ["N0", "N2", "N1", "N0"]
    # T: recall T1 1, T2 1/2, T4 1 -> 5/6; N: N0 1, N1 1, N2 1/2 -> 5/6
    assert (
        m["t_bacc"]
        == pytest.approx(balanced_accuracy_score(t_true, t_pred))
        == pytest.approx(5 / 6)
    )
    assert m["n_bacc"] == pytest.approx(balanced_accuracy_score(n_true, n_pred))
    assert m["staging_bacc"] == pytest.approx(5 / 6)
    assert "t_recall_t3" not in m
    cases = doc["cases"]
    assert isinstance(cases, list) and cases[1]["t_prediction"] == "T3"
    assert cases[1]["n_prediction"] == "N2" and cases[2]["t_prediction"] == "T4"


def test_staging_case_folders_in_a_zip(tmp_path: Path) -> None:
    sub = tmp_path / "sub.zip"
    stages = {
        "CHUM-001": ("T1", "N0"),
        "CHUM-002": ("T2", "N2"),
        "CHUV-003": ("T4", "N1"),
        "CHUV-004": ("T2", "N2"),
    }
    with zipfile.ZipFile(sub, "w") as z:
        for pid, (t, n) in stages.items():
            z.writestr(f"out/{pid}/t-stage.json", json.dumps(t))
            z.writestr(f"out/{pid}/n-stage.json", json.dumps(n))
    doc = _score3(tmp_path, sub)
    assert doc["metrics"]["staging_bacc"] == 1.0  # type: ignore[index]


def test_staging_problems_are_all_reported(tmp_path: Path) -> None:
    root = tmp_path / "sub"
    for pid, t, n in (
        ("CHUM-001", '"T9"', '"N0"'),
        ("CHUM-002", "2", '"N1"'),
        ("XX-9", '"T1"', '"N0"'),
    ):
        (root / pid).mkdir(parents=True)
        (root / pid / "t-stage.json").write_text(t)
        (root / pid / "n-stage.json").write_text(n)
    (root / "CHUV-003").mkdir()
    (root / "CHUV-003" / "t-stage.json").write_text('"T1"')
    with pytest.raises(SubmissionRejected) as info:
        _score3(tmp_path, root)
    text = "\n".join(str(p) for p in info.value.problems)
    assert "CHUM-001/ (CHUM-001): T-stage is 'T9'; expected one of T1, T2, T3, T4" in text
    assert 'CHUM-002/t-stage.json: found 2; expected one JSON string such as "T2"' in text
    assert "CHUV-003/n-stage.json: missing" in text
    assert "'XX-9' is not a case of this phase" in text
    assert "no folder CHUV-004/ with t-stage.json and n-stage.json" in text


def test_staging_csv_wrong_header(tmp_path: Path) -> None:
    sub = tmp_path / "s.csv"
    sub.write_text("PatientID,Prediction\nCHUM-001,T1\n")
    with pytest.raises(
        SubmissionRejected, match="expected exactly the columns PatientID, T-stage, N-stage"
    ):
        _score3(tmp_path, sub)


def test_task2_records_the_rfs_meaning_and_2025_results_do_not(tmp_path: Path) -> None:
    sub = tmp_path / "rfs.csv"
    sub.write_text(
        "PatientID,Prediction\nCHUM-001,90\nCHUM-002,400\nCHUV-003,40\nCHUV-004,250\nCHUV-005,100\n"
    )
    timed = HECKTOR2026.with_changes(rfs_meaning="time")
    gt = load_ground_truth(2, _gt(tmp_path), protocol=timed)
    doc = score_submission(2, gt, sub, protocol=timed)
    assert doc["status"] == "scored"
    assert doc["notes"]["rfs_meaning"] == "time"  # type: ignore[typeddict-item]
    # times 100e 200c 50e 300e 80c; predicted 90 400 40 250 100. Comparable pairs (the
    # earlier one an event): 50-80, 50-100, 50-200, 50-300, 100-200, 100-300; in each the
    # earlier event has the shorter predicted time -> 6/6
    assert doc["metrics"]["rfs_cindex"] == 1.0
    gt25 = load_ground_truth(2, _gt(tmp_path), protocol=HECKTOR2025)
    doc25 = score_submission(2, gt25, sub, protocol=HECKTOR2025)
    assert "notes" not in doc25 and set(doc25["metrics"]) == {"c_index"}  # type: ignore[typeddict-item]


def test_prepare_staging_ground_truth(tmp_path: Path) -> None:
    prepared = prepare_ground_truth(3, _gt(tmp_path), tmp_path / "dest", protocol=HECKTOR2026)
    assert prepared.n_cases == 4 and isinstance(prepared.ground_truth, StagingGroundTruth)


def test_task2_messages_say_how_the_prediction_is_read(tmp_path: Path) -> None:
    sub = tmp_path / "rfs.csv"
    sub.write_text("PatientID,Prediction\nCHUM-001,soon\n")
    timed = HECKTOR2026.with_changes(rfs_meaning="time")
    gt = load_ground_truth(2, _gt(tmp_path), protocol=timed)
    with pytest.raises(SubmissionRejected) as info:
        score_submission(2, gt, sub, protocol=timed)
    text = "\n".join(str(p) for p in info.value.problems)
    assert "expected a finite number (predicted RFS time: higher = later recurrence)" in text
    assert "no prediction for CHUM-002; add one with a finite number (predicted RFS time" in text
    gt25 = load_ground_truth(2, _gt(tmp_path), protocol=HECKTOR2025)
    with pytest.raises(SubmissionRejected) as info:
        score_submission(2, gt25, sub, protocol=HECKTOR2025)
    assert "a finite risk score (a number, higher = earlier recurrence)" in str(
        info.value.problems[0]
    )
