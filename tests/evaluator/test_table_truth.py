"""Ground truth of Task 2/3: reading, validation, centres, hashing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluator.errors import GroundTruthError
from evaluator.io.hashing import combine_hashes, sha256_file
from evaluator.io.table_truth import (
    ClassificationGroundTruth,
    SurvivalGroundTruth,
    center_of,
    read_task2_ground_truth,
    read_task3_ground_truth,
)
from evaluator.protocol import Protocol

TASK2 = "PatientID,RFS,Relapse\nCHUM-001,12.5,1\nCHUM-002,40,0\nMDA-010,3,1\n"
TASK3 = "PatientID,HPV Status\nCHUM-001,1\nCHUM-002,0\nMDA-010,1.0\n"


def write(folder: Path, name: str, text: str, *, encoding: str = "utf-8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def gt_problems(func: object, path: Path, **kw: object) -> list[str]:
    with pytest.raises(GroundTruthError) as info:
        func(path, **kw)  # type: ignore[operator]
    return info.value.problems


def test_task2_reads_times_events_and_centres(tmp_path: Path) -> None:
    gt = read_task2_ground_truth(write(tmp_path, "gt.csv", TASK2))
    assert isinstance(gt, SurvivalGroundTruth)
    assert gt.ids == gt.case_ids == ("CHUM-001", "CHUM-002", "MDA-010")
    assert gt.centers == ("CHUM", "CHUM", "MDA")
    assert gt.times.tolist() == [12.5, 40.0, 3.0]
    assert gt.events.tolist() == [1, 0, 1]
    assert gt.n_unknown == 0 and len(gt) == 3
    assert not gt.times.flags.writeable


def test_task3_reads_labels(tmp_path: Path) -> None:
    gt = read_task3_ground_truth(write(tmp_path, "gt.csv", TASK3))
    assert isinstance(gt, ClassificationGroundTruth)
    assert gt.ids == ("CHUM-001", "CHUM-002", "MDA-010")
    assert gt.labels.tolist() == [1, 0, 1]


def test_hash_is_over_the_csv_contents(tmp_path: Path) -> None:
    path = write(tmp_path, "gt.csv", TASK2)
    gt = read_task2_ground_truth(path)
    assert gt.sha256 == combine_hashes([("task2.csv", sha256_file(path))])
    renamed = write(tmp_path / "other", "renamed.csv", TASK2)
    assert read_task2_ground_truth(renamed).sha256 == gt.sha256
    changed = write(tmp_path / "changed", "gt.csv", TASK2.replace("12.5", "12.6"))
    assert read_task2_ground_truth(changed).sha256 != gt.sha256


@pytest.mark.parametrize("token", ["", "NA", "nan", "NaN", "unknown", "Unknown", "N/A", "?"])
def test_unknown_targets_are_left_out_and_counted(tmp_path: Path, token: str) -> None:
    text = f"PatientID,HPV Status\nCHUM-001,1\nCHUM-002,{token}\nMDA-010,0\n"
    gt = read_task3_ground_truth(write(tmp_path, "gt.csv", text))
    assert gt.ids == ("CHUM-001", "MDA-010")
    assert gt.n_unknown == 1 and gt.unknown_ids == ("CHUM-002",)


def test_task2_row_with_either_value_missing_is_unknown(tmp_path: Path) -> None:
    text = "PatientID,RFS,Relapse\nA-1,10,1\nA-2,,1\nA-3,5,\nA-4,7,0\n"
    gt = read_task2_ground_truth(write(tmp_path, "gt.csv", text))
    assert gt.ids == ("A-1", "A-4")
    assert gt.unknown_ids == ("A-2", "A-3")


def test_centre_column_is_preferred(tmp_path: Path) -> None:
    text = "PatientID,CenterID,RFS,Relapse\nCHUM-001,7,1,1\nCHUM-002,,2,0\n"
    gt = read_task2_ground_truth(write(tmp_path, "gt.csv", text))
    assert gt.centers == ("7", "CHUM")  # an empty centre falls back to the id prefix
    text = "PatientID,Center,HPV Status\nP1,HGJ,1\nP2,HMR,0\n"
    assert read_task3_ground_truth(write(tmp_path, "c.csv", text)).centers == ("HGJ", "HMR")


def test_center_of() -> None:
    assert center_of("CHUM-001") == "CHUM"
    assert center_of("USZ-12-3") == "USZ"
    assert center_of("P001") == ""


def test_bom_semicolons_and_crlf(tmp_path: Path) -> None:
    text = "\ufeffPatientID;RFS;Relapse\r\nCHUM-001;12.5;1\r\nCHUM-002;40;0\r\n"
    gt = read_task2_ground_truth(write(tmp_path, "gt.csv", text))
    assert gt.ids == ("CHUM-001", "CHUM-002")
    assert gt.times.tolist() == [12.5, 40.0]


def test_utf16_with_bom(tmp_path: Path) -> None:
    gt = read_task3_ground_truth(write(tmp_path, "gt.csv", TASK3, encoding="utf-16"))
    assert gt.labels.tolist() == [1, 0, 1]


def test_configurable_columns(tmp_path: Path) -> None:
    protocol = Protocol(id_column="ID", rfs_time_column="time", rfs_event_column="dead")
    text = "ID,time,dead\nX-1,3,1\nX-2,4,0\n"
    gt = read_task2_ground_truth(write(tmp_path, "gt.csv", text), protocol=protocol)
    assert gt.ids == ("X-1", "X-2")
    problems = gt_problems(
        read_task2_ground_truth, write(tmp_path, "d.csv", TASK2), protocol=protocol
    )
    assert "missing (or duplicated) column(s) ID, time, dead" in problems[0]


def test_column_names_match_case_insensitively(tmp_path: Path) -> None:
    text = "PatientID,HPV status\nA-1,1\nA-2,0\n"
    assert read_task3_ground_truth(write(tmp_path, "gt.csv", text)).labels.tolist() == [1, 0]


def test_hpv_words(tmp_path: Path) -> None:
    text = "PatientID,HPV Status\nA-1,positive\nA-2,Negative\nA-3,POS\n"
    assert read_task3_ground_truth(write(tmp_path, "gt.csv", text)).labels.tolist() == [1, 0, 1]


def test_folder_with_one_csv(tmp_path: Path) -> None:
    write(tmp_path, "HECKTOR_2025_Training_Task_2.csv", TASK2)
    (tmp_path / "CHUM-001").mkdir()
    gt = read_task2_ground_truth(tmp_path)
    assert gt.source == tmp_path / "HECKTOR_2025_Training_Task_2.csv"


def test_folder_chooses_the_csv_with_the_needed_columns(tmp_path: Path) -> None:
    write(tmp_path, "a_clinical.csv", "PatientID,Age,Gender\nCHUM-001,60,M\n")
    write(tmp_path, "b_rfs.csv", TASK2)
    write(tmp_path, "c_hpv.csv", TASK3)
    assert read_task2_ground_truth(tmp_path).source.name == "b_rfs.csv"
    assert read_task3_ground_truth(tmp_path).source.name == "c_hpv.csv"


def test_folder_with_two_matching_csvs_is_ambiguous(tmp_path: Path) -> None:
    write(tmp_path, "one.csv", TASK3)
    write(tmp_path, "two.csv", TASK3)
    (problem,) = gt_problems(read_task3_ground_truth, tmp_path)
    assert "several CSV files have the columns PatientID, HPV Status" in problem
    assert "one.csv, two.csv" in problem and "pass the CSV file itself" in problem


def test_folder_without_a_matching_csv(tmp_path: Path) -> None:
    write(tmp_path, "clinical.csv", "PatientID,Age\nA-1,3\n")
    (problem,) = gt_problems(read_task2_ground_truth, tmp_path)
    assert "no CSV file has the columns PatientID, RFS, Relapse" in problem
    assert "clinical.csv (columns: PatientID, Age)" in problem


def test_folder_without_csv(tmp_path: Path) -> None:
    (problem,) = gt_problems(read_task2_ground_truth, tmp_path)
    assert "no .csv file" in problem


def test_missing_path(tmp_path: Path) -> None:
    (problem,) = gt_problems(read_task2_ground_truth, tmp_path / "nope")
    assert "no such file or folder" in problem


def test_empty_file(tmp_path: Path) -> None:
    (problem,) = gt_problems(read_task2_ground_truth, write(tmp_path, "gt.csv", "\n\n"))
    assert "the file is empty" in problem


def test_every_problem_is_reported_with_line_and_id(tmp_path: Path) -> None:
    text = (
        "PatientID,RFS,Relapse\n"
        "CHUM-001,12,1\n"  # line 2: fine
        "CHUM-001,13,0\n"  # line 3: duplicate
        ",14,1\n"  # line 4: empty id
        "CHUM-004,-1,1\n"  # line 5: negative time
        "CHUM-005,inf,0\n"  # line 6: infinite time
        "CHUM-006,abc,1\n"  # line 7: not a number
        "CHUM-007,8,2\n"  # line 8: event 2
        "CHUM-008,8,yes\n"  # line 9: event not a number
    )
    problems = gt_problems(read_task2_ground_truth, write(tmp_path, "gt.csv", text))
    assert problems == [
        "gt.csv line 3: CHUM-001: duplicate PatientID (first on line 2)",
        "gt.csv line 4: empty PatientID",
        "gt.csv line 5: CHUM-004: RFS is '-1'; expected a finite time >= 0",
        "gt.csv line 6: CHUM-005: RFS is 'inf'; expected a finite time >= 0",
        "gt.csv line 7: CHUM-006: RFS is 'abc'; expected a finite time >= 0",
        "gt.csv line 8: CHUM-007: Relapse is '2'; expected 1 (event) or 0 (censored)",
        "gt.csv line 9: CHUM-008: Relapse is 'yes'; expected 1 (event) or 0 (censored)",
    ]


def test_task3_label_problems(tmp_path: Path) -> None:
    text = "PatientID,HPV Status\nA-1,1\nA-2,2\nA-3,0.5\nA-1,0\n"
    problems = gt_problems(read_task3_ground_truth, write(tmp_path, "gt.csv", text))
    expected = "expected 1 (positive) or 0 (negative), or empty when unknown"
    assert problems == [
        "gt.csv line 5: A-1: duplicate PatientID (first on line 2)",
        f"gt.csv line 3: A-2: HPV Status is '2'; {expected}",
        f"gt.csv line 4: A-3: HPV Status is '0.5'; {expected}",
    ]


def test_a_duplicate_of_an_unknown_row_is_still_a_duplicate(tmp_path: Path) -> None:
    text = "PatientID,HPV Status\nA-1,\nA-1,1\nA-2,0\n"
    problems = gt_problems(read_task3_ground_truth, write(tmp_path, "gt.csv", text))
    assert problems == ["gt.csv line 3: A-1: duplicate PatientID (first on line 2)"]


def test_no_known_target_is_an_error(tmp_path: Path) -> None:
    text = "PatientID,HPV Status\nA-1,\nA-2,NA\n"
    (problem,) = gt_problems(read_task3_ground_truth, write(tmp_path, "gt.csv", text))
    assert "no row with a known target (2 row(s) with a missing or unknown one)" in problem


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "gt.csv"
    path.write_bytes(b"PatientID,HPV Status\n\xff\xfe\xfa,1\n")
    (problem,) = gt_problems(read_task3_ground_truth, path)
    assert "not UTF-8 text" in problem


def test_arrays_have_stable_dtypes(tmp_path: Path) -> None:
    gt = read_task2_ground_truth(write(tmp_path, "gt.csv", TASK2))
    assert gt.times.dtype == np.float64 and gt.events.dtype == np.int64
