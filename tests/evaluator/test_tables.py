"""Task 2/3 prediction tables: formats, every validation message, end-to-end scoring."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from evaluator.errors import (
    ExtraCaseError,
    FormatError,
    LimitError,
    MissingCaseError,
    SubmissionError,
    SubmissionRejected,
    TableError,
)
from evaluator.io.table_json import json_depth
from evaluator.io.table_text import sniff_delimiter
from evaluator.io.tables import read_predictions
from evaluator.protocol import Limits, Protocol

IDS = ("CHUM-001", "CHUM-002", "MDA-010")
GOOD_CSV = "PatientID,Prediction\nCHUM-001,0.5\nCHUM-002,-1.25\nMDA-010,3e2\n"
GOOD_VALUES = {"CHUM-001": 0.5, "CHUM-002": -1.25, "MDA-010": 300.0}


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def read(path: Path, *, task: int = 2, ids: tuple[str, ...] = IDS, **kw: Any) -> dict[str, float]:
    return read_predictions(path, task=task, case_ids=ids, **kw)


def problems(
    path: Path, *, task: int = 2, ids: tuple[str, ...] = IDS, **kw: Any
) -> list[SubmissionError]:
    with pytest.raises(SubmissionRejected) as info:
        read(path, task=task, ids=ids, **kw)
    return info.value.problems


def messages(path: Path, **kw: Any) -> list[str]:
    return [p.message for p in problems(path, **kw)]


def only(path: Path, **kw: Any) -> SubmissionError:
    found = problems(path, **kw)
    assert len(found) == 1, [p.message for p in found]
    return found[0]


# -- CSV: accepted variants ---------------------------------------------------------------
def test_csv(tmp_path: Path) -> None:
    assert read(write(tmp_path, "p.csv", GOOD_CSV)) == GOOD_VALUES


def test_csv_in_a_folder_keeps_ground_truth_order(tmp_path: Path) -> None:
    write(tmp_path, "predictions.csv", "PatientID,Prediction\nMDA-010,1\nCHUM-002,2\nCHUM-001,3\n")
    assert list(read(tmp_path)) == list(IDS)


@pytest.mark.parametrize(
    "text",
    [
        "\ufeff" + GOOD_CSV,  # UTF-8 BOM (Excel's "CSV UTF-8")
        GOOD_CSV.replace(",", ";"),  # semicolon delimiter
        GOOD_CSV.replace(",", "\t"),  # tab delimiter
        GOOD_CSV.replace("\n", "\r\n"),  # Windows line ends
        "\n" + GOOD_CSV.replace("\n", "\n\n"),  # blank lines
        "Prediction,PatientID\n0.5,CHUM-001\n-1.25,CHUM-002\n3e2,MDA-010\n",  # column order
        "patientid , PREDICTION\n CHUM-001 , 0.5 \nCHUM-002,-1.25\nMDA-010,+3E+2\n",  # spaces, case
        "PatientID,Prediction,\nCHUM-001,0.5,\nCHUM-002,-1.25,,\nMDA-010,300\n",  # trailing cells
        '"PatientID","Prediction"\n"CHUM-001","0.5"\n"CHUM-002",-1.25\nMDA-010,300.\n',  # quotes
    ],
    ids=["bom", "semicolon", "tab", "crlf", "blank", "order", "spaces", "trailing", "quoted"],
)
def test_csv_variants_are_accepted(tmp_path: Path, text: str) -> None:
    assert read(write(tmp_path, "p.csv", text)) == GOOD_VALUES


def test_utf16_csv_is_accepted(tmp_path: Path) -> None:
    assert read(write(tmp_path, "p.csv", GOOD_CSV.encode("utf-16"))) == GOOD_VALUES


def test_task3_accepts_probabilities_booleans_and_0_1(tmp_path: Path) -> None:
    text = "PatientID,Prediction\nCHUM-001,true\nCHUM-002,FALSE\nMDA-010,0.25\n"
    assert read(write(tmp_path, "p.csv", text), task=3) == {
        "CHUM-001": 1.0,
        "CHUM-002": 0.0,
        "MDA-010": 0.25,
    }
    text = "PatientID,Prediction\nCHUM-001,1\nCHUM-002,0\nMDA-010,1.0\n"
    assert read(write(tmp_path, "q.csv", text), task=3) == {
        "CHUM-001": 1.0,
        "CHUM-002": 0.0,
        "MDA-010": 1.0,
    }


# -- CSV: header problems -----------------------------------------------------------------
def test_no_header(tmp_path: Path) -> None:
    err = only(write(tmp_path, "p.csv", "CHUM-001,0.5\nCHUM-002,0.1\nMDA-010,0.2\n"))
    assert isinstance(err, TableError)
    assert err.message == (
        "p.csv: no header; the first line ('CHUM-001', '0.5') looks like data. "
        "The first line must be the header 'PatientID,Prediction'"
    )


def test_wrong_columns(tmp_path: Path) -> None:
    err = only(write(tmp_path, "p.csv", "id,risk\nCHUM-001,0.5\n"))
    assert err.message == (
        "p.csv: wrong columns: found 'id', 'risk'; expected exactly the columns "
        "PatientID, Prediction. Rename the columns (the first line is the header)"
    )


def test_missing_column(tmp_path: Path) -> None:
    err = only(write(tmp_path, "p.csv", "PatientID,Risk\nCHUM-001,0.5\n"))
    assert err.message.startswith("p.csv: missing column Prediction: found 'PatientID', 'Risk'")


def test_extra_column_from_pandas_index(tmp_path: Path) -> None:
    err = only(write(tmp_path, "p.csv", ",PatientID,Prediction\n0,CHUM-001,0.5\n"))
    assert "unexpected column(s) ''" in err.message
    assert "index=False" in err.message


def test_duplicate_columns(tmp_path: Path) -> None:
    err = only(write(tmp_path, "p.csv", "PatientID,Prediction,Prediction\nCHUM-001,0.5,1\n"))
    assert "duplicate column names" in err.message


def test_empty_file(tmp_path: Path) -> None:
    err = only(write(tmp_path, "p.csv", " \n\n"))
    assert err.message == (
        "p.csv: the file is empty; the first line must be the header "
        "'PatientID,Prediction', then one line per case"
    )


def test_header_only(tmp_path: Path) -> None:
    err = only(write(tmp_path, "p.csv", "PatientID,Prediction\n"))
    assert "p.csv: holds no predictions; expected one per case (3 cases" in err.message


def test_wrong_number_of_fields(tmp_path: Path) -> None:
    text = "PatientID,Prediction\nCHUM-001,0,5\nCHUM-002\nMDA-010,0.1\n"
    found = messages(write(tmp_path, "p.csv", text))
    assert found[0].startswith("p.csv line 2: expected 2 fields (PatientID, Prediction), found 3")
    assert "decimal comma" in found[0]
    assert found[1].startswith("p.csv line 3: expected 2 fields (PatientID, Prediction), found 1")
    assert len(found) == 2  # the cases are present, so not also reported missing


def test_nul_bytes(tmp_path: Path) -> None:
    err = only(write(tmp_path, "p.csv", b"PatientID,Prediction\nCHUM\x00-001,0.5\n"))
    assert "NUL bytes" in err.message


def test_not_utf8(tmp_path: Path) -> None:
    err = only(write(tmp_path, "p.csv", b"PatientID,Prediction\nCHUM-\xff\xfd,0.5\n"))
    assert "not UTF-8 text" in err.message and "save it as UTF-8" in err.message


# -- values ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cell", "found"),
    [
        ("NaN", "the value 'NaN' is not a finite number"),
        ("inf", "the value 'inf' is not a finite number"),
        ("-Infinity", "the value '-Infinity' is not a finite number"),
        ("1e999", "the value '1e999' is too large to be a finite number"),
        ("", "the value is empty"),
        ("high", "the value 'high' is not a number"),
        ("0,5", "the value '0,5' uses a decimal comma; write a decimal point (0.5)"),
        ("1_000", "the value '1_000' is not a number"),
        ("true", "the value 'true' is not a number"),  # booleans are for Task 3 only
    ],
)
def test_task2_bad_values(tmp_path: Path, cell: str, found: str) -> None:
    text = f"PatientID;Prediction\nCHUM-001;{cell}\nCHUM-002;1\nMDA-010;2\n"
    err = only(write(tmp_path, "p.csv", text))
    assert isinstance(err, TableError)
    assert err.case == "CHUM-001"
    assert err.message == (
        f"p.csv line 2 (CHUM-001): {found}; expected a finite risk score "
        "(a number, higher = earlier recurrence), such as 1.37"
    )


@pytest.mark.parametrize(
    ("cell", "found"),
    [
        ("1.5", "the probability 1.5 is outside [0, 1]"),
        ("-0.1", "the probability -0.1 is outside [0, 1]"),
        ("yes", "the value 'yes' is not a number"),
    ],
)
def test_task3_bad_values(tmp_path: Path, cell: str, found: str) -> None:
    text = f"PatientID,Prediction\nCHUM-001,{cell}\nCHUM-002,1\nMDA-010,0\n"
    err = only(write(tmp_path, "p.csv", text), task=3)
    assert err.message == (
        f"p.csv line 2 (CHUM-001): {found}; expected a probability of HPV positive "
        "in [0, 1], or true/false, such as 0.42"
    )


# -- ids ------------------------------------------------------------------------------------
def test_missing_id(tmp_path: Path) -> None:
    err = only(write(tmp_path, "p.csv", "PatientID,Prediction\nCHUM-001,1\nCHUM-002,2\n"))
    assert isinstance(err, MissingCaseError)
    assert err.case == "MDA-010"
    assert err.message == (
        "p.csv: no prediction for MDA-010; add one with a finite risk score (a number, "
        "higher = earlier recurrence); every case of the phase needs one"
    )


def test_unknown_id(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", GOOD_CSV + "XYZ-999,0.3\n")
    err = only(path)
    assert isinstance(err, ExtraCaseError)
    assert err.message == "p.csv line 5: 'XYZ-999' is not a case of this phase; remove it."
    assert read(path, ignore_extra_cases=True) == GOOD_VALUES


def test_unknown_id_with_a_near_match(tmp_path: Path) -> None:
    text = "PatientID,Prediction\nchum_001,1\nCHUM-002,2\nMDA-010,3\n"
    found = problems(write(tmp_path, "p.csv", text))
    assert [type(p) for p in found] == [ExtraCaseError, MissingCaseError]
    assert "Did you mean 'CHUM-001'? Ids must match exactly." in found[0].message


def test_ids_with_unknown_ground_truth_are_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", GOOD_CSV + "HGJ-004,0.3\n")
    assert read(path, ignored_ids={"HGJ-004"}) == GOOD_VALUES


def test_duplicate_id(tmp_path: Path) -> None:
    err = only(write(tmp_path, "p.csv", GOOD_CSV + "CHUM-001,0.7\n"))
    assert err.case == "CHUM-001"
    assert err.message == (
        "p.csv: CHUM-001 appears 2 times (p.csv line 2; p.csv line 5); "
        "keep exactly one prediction per case"
    )


def test_empty_id(tmp_path: Path) -> None:
    err = only(write(tmp_path, "p.csv", GOOD_CSV + " ,0.7\n"))
    assert err.message == "p.csv line 5: empty PatientID; every row names its case"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        "PatientID,Prediction\n"
        "CHUM-001,NaN\n"  # non-finite
        "CHUM-001,0.3\n"  # duplicate
        "XYZ-1,0.1\n"  # unknown
        "CHUM-002,\n"  # empty
    )  # and MDA-010 missing
    found = problems(write(tmp_path, "p.csv", text))
    kinds = sorted(type(p).__name__ for p in found)
    assert kinds == ["ExtraCaseError", "MissingCaseError", "TableError", "TableError", "TableError"]
    doc = SubmissionRejected(found).as_document()
    assert doc["status"] == "failed"
    assert all("p.csv" in e["message"] for e in doc["errors"])  # type: ignore[attr-defined]


# -- JSON -----------------------------------------------------------------------------------
def test_json_records(tmp_path: Path) -> None:
    rows = [{"PatientID": k, "Prediction": v} for k, v in GOOD_VALUES.items()]
    assert read(write(tmp_path, "p.json", json.dumps(rows))) == GOOD_VALUES


def test_json_object(tmp_path: Path) -> None:
    assert read(write(tmp_path, "p.json", "\ufeff" + json.dumps(GOOD_VALUES))) == GOOD_VALUES


def test_json_task3_booleans(tmp_path: Path) -> None:
    text = '{"CHUM-001": true, "CHUM-002": false, "MDA-010": "true"}'
    assert read(write(tmp_path, "p.json", text), task=3) == {
        "CHUM-001": 1.0,
        "CHUM-002": 0.0,
        "MDA-010": 1.0,
    }


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("NaN", "the value is NaN, not a finite number"),
        ("Infinity", "the value is Infinity, not a finite number"),
        ("-Infinity", "the value is -Infinity, not a finite number"),
        ("1e999", "the value is Infinity, not a finite number"),
        ("1" + "0" * 400, "the value is too large to be a finite number"),
        ('"0.5"', "the value is the string '0.5', not a number (write numbers without quotes)"),
        ('"high"', "the value is the string 'high', not a number (write numbers without quotes)"),
        ('""', "the value is an empty string"),
        ("null", "the value is empty (null)"),
        ("true", "the value is the boolean true, not a number"),
        ('{"risk": 1}', "the value is an object, not a number"),
        ("[1]", "the value is a list, not a number"),
    ],
)
def test_json_bad_values(tmp_path: Path, value: str, found: str) -> None:
    text = f'{{"CHUM-001": {value}, "CHUM-002": 1, "MDA-010": 2}}'
    err = only(write(tmp_path, "p.json", text))
    assert err.case == "CHUM-001"
    assert err.message.startswith(f"p.json key 'CHUM-001' (CHUM-001): {found}; expected")


def test_json_out_of_range_task3(tmp_path: Path) -> None:
    text = (
        '[{"PatientID": "CHUM-001", "Prediction": 2}, {"PatientID": "CHUM-002", "Prediction": 0},'
        ' {"PatientID": "MDA-010", "Prediction": 1}]'
    )
    err = only(write(tmp_path, "p.json", text), task=3)
    assert err.message.startswith("p.json item 1 (CHUM-001): the probability 2.0 is outside [0, 1]")


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("42", "p.json: found 42; expected a list of"),
        ('"CHUM-001"', "p.json: found the string 'CHUM-001'; expected a list of"),
        ("null", "p.json: found null; expected a list of"),
        (
            '{"PatientID": ["CHUM-001"], "Prediction": [0.5]}',
            "p.json: this looks like a column-oriented table",
        ),
    ],
)
def test_json_wrong_shape(tmp_path: Path, text: str, found: str) -> None:
    err = only(write(tmp_path, "p.json", text))
    assert err.message.startswith(found)
    assert '{"PatientID": ..., "Prediction": ...}' in err.message


def test_json_bad_items(tmp_path: Path) -> None:
    text = json.dumps(
        [
            0.5,
            {"PatientID": "CHUM-001"},
            {"PatientID": "CHUM-002", "Prediction": 1, "Center": "CHUM"},
            {"PatientID": 10, "Prediction": 1},
            {"PatientID": "MDA-010", "Prediction": 1},
        ]
    )
    found = messages(write(tmp_path, "p.json", text))
    assert found == [
        'p.json item 1: found 0.5; expected a list of {"PatientID": ..., "Prediction": ...} '
        "objects or one object {PatientID: value}",
        "p.json item 2: found the keys 'PatientID'; expected exactly the keys "
        '"PatientID" and "Prediction"',
        "p.json item 3: found the keys 'PatientID', 'Prediction', 'Center'; expected exactly "
        'the keys "PatientID" and "Prediction"',
        "p.json item 4: PatientID is 10; expected a string such as 'CHUM-001'",
    ]


def test_json_duplicate_keys(tmp_path: Path) -> None:
    text = '{"CHUM-001": 1, "CHUM-002": 2, "MDA-010": 3, "CHUM-001": 4}'
    err = only(write(tmp_path, "p.json", text))
    assert err.message.startswith("p.json: CHUM-001 appears 2 times")


def test_json_syntax_error(tmp_path: Path) -> None:
    err = only(write(tmp_path, "p.json", '{"CHUM-001": 1,}'))
    assert err.message.startswith("p.json: not valid JSON (")
    assert "line 1, column" in err.message


def test_json_empty(tmp_path: Path) -> None:
    assert "the file is empty" in only(write(tmp_path, "p.json", "")).message
    assert "holds no predictions" in only(write(tmp_path, "q.json", "[]")).message


def test_json_deep_nesting_is_refused_before_parsing(tmp_path: Path) -> None:
    text = "[" * 200_000 + "]" * 200_000  # would blow the recursion limit
    err = only(write(tmp_path, "p.json", text))
    assert isinstance(err, TableError)
    assert err.message == (
        "p.json: JSON nested 200000 levels deep, more than the limit of 32; "
        "a prediction table needs at most 2"
    )
    shallow = Limits(max_nesting=1)
    rows = json.dumps([{"PatientID": k, "Prediction": v} for k, v in GOOD_VALUES.items()])
    assert "nested 2 levels deep" in only(write(tmp_path, "q.json", rows), limits=shallow).message


def test_json_depth_ignores_brackets_in_strings() -> None:
    assert json_depth('{"a[[[{": "]]]", "b": [1, [2]]}') == 3
    assert json_depth('"[[[\\"[["') == 0
    assert json_depth("1") == 0


def test_huge_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", GOOD_CSV + "X,1\n" * 100)
    err = only(path, limits=Limits(max_table_bytes=200))
    assert isinstance(err, LimitError)
    assert err.message.startswith(
        f"p.csv: the file is {path.stat().st_size:,} bytes, more than the 200-byte limit"
    )


# -- per-case folders (grand-challenge algorithm outputs) ------------------------------------
def write_cases(root: Path, values: dict[str, str], name: str = "rfs.json") -> Path:
    for pid, text in values.items():
        write(root / pid, name, text)
    return root


def test_per_case_folders_task2(tmp_path: Path) -> None:
    write_cases(tmp_path, {"CHUM-001": "0.5", "CHUM-002": "-1.25\n", "MDA-010": "300"})
    assert read(tmp_path) == GOOD_VALUES


def test_per_case_folders_task3(tmp_path: Path) -> None:
    write_cases(
        tmp_path, {"CHUM-001": "true", "CHUM-002": "0", "MDA-010": "0.25"}, "hpv-status.json"
    )
    assert read(tmp_path, task=3) == {"CHUM-001": 1.0, "CHUM-002": 0.0, "MDA-010": 0.25}


def test_per_case_folder_problems(tmp_path: Path) -> None:
    write_cases(tmp_path, {"CHUM-001": '{"risk": 0.5}', "XYZ-9": "1", "HGJ-1": "NaN", "E-1": ""})
    write(tmp_path / "CHUM-002", "output.json", "0.5")
    found = problems(tmp_path, ids=(*IDS, "HGJ-1", "E-1"))
    by_case = {p.case: p.message for p in found}
    assert by_case["CHUM-001"] == (
        "CHUM-001/rfs.json (CHUM-001): the value is an object, not a number; expected a "
        "finite risk score (a number, higher = earlier recurrence), such as 1.37"
    )
    assert by_case["CHUM-002"] == (
        "CHUM-002/: no rfs.json (found: output.json); each case folder must hold rfs.json "
        "with one JSON value such as 1.37"
    )
    assert isinstance(next(p for p in found if p.case == "CHUM-002"), FormatError)
    assert by_case["XYZ-9"] == "XYZ-9/rfs.json: 'XYZ-9' is not a case of this phase; remove it."
    assert by_case["HGJ-1"].startswith("HGJ-1/rfs.json (HGJ-1): the value is NaN")
    assert by_case["E-1"].startswith("E-1/rfs.json: the file is empty")
    assert by_case["MDA-010"] == (
        "<PatientID>/rfs.json: no folder MDA-010/ with rfs.json; add it, holding a finite "
        "risk score (a number, higher = earlier recurrence); every case of the phase needs one"
    )
    assert len(found) == 6


def test_per_case_files_of_the_other_task(tmp_path: Path) -> None:
    write_cases(tmp_path, {"CHUM-001": "0.5"}, "hpv-status.json")
    err = only(tmp_path)
    assert err.message.startswith("no prediction table found: expected one table file")
    assert "(per-case files for the other task, e.g. CHUM-001/hpv-status.json)" in err.message


def test_loose_case_file(tmp_path: Path) -> None:
    write(tmp_path, "rfs.json", "0.5")
    err = only(tmp_path)
    assert "rfs.json must sit in a folder named after its case, <PatientID>/rfs.json" in (
        err.message
    )


# -- finding the table ---------------------------------------------------------------------
def test_two_tables(tmp_path: Path) -> None:
    write(tmp_path, "a.csv", GOOD_CSV)
    write(tmp_path, "b.json", "{}")
    err = only(tmp_path)
    assert err.message == "the submission holds 2 table files (a.csv, b.json); keep exactly one"


def test_table_and_case_folders(tmp_path: Path) -> None:
    write(tmp_path, "a.csv", GOOD_CSV)
    write_cases(tmp_path, {"CHUM-001": "1"})
    err = only(tmp_path)
    assert "both a table (a.csv) and per-case folders" in err.message


def test_empty_folder(tmp_path: Path) -> None:
    err = only(tmp_path)
    assert err.message == (
        "no prediction table found: expected one table file (.csv with the header "
        "PatientID,Prediction, or .json) or one folder per case holding "
        "<PatientID>/rfs.json; the submission is empty"
    )


def test_folder_without_table(tmp_path: Path) -> None:
    write(tmp_path, "README.md", "hi")
    write(tmp_path, ".hidden.csv", GOOD_CSV)
    assert only(tmp_path).message.endswith("; found: README.md")


def test_junk_is_ignored(tmp_path: Path) -> None:
    write(tmp_path, "predictions.csv", GOOD_CSV)
    write(tmp_path, "._predictions.csv", b"\x00\x05")
    write(tmp_path / "__MACOSX", "x", "junk")
    write(tmp_path, "notes.txt.bak", "x")
    assert read(tmp_path) == GOOD_VALUES


def test_spreadsheet_file(tmp_path: Path) -> None:
    err = only(write(tmp_path, "p.xlsx", b"PK\x03\x04"))
    assert err.message.startswith("p.xlsx: not a .csv or .json file (export spreadsheets as CSV)")


def test_helpers() -> None:
    assert sniff_delimiter("PatientID;Prediction") == ";"
    assert sniff_delimiter("PatientID,Prediction") == ","
    assert sniff_delimiter("PatientID") == ","


# -- end to end, through evaluator.scoring ----------------------------------------------------
TASK2_GT = (
    "PatientID,RFS,Relapse\n"
    "CHUM-001,2,1\nCHUM-002,4,1\nCHUM-003,4,0\nMDA-004,6,1\nMDA-005,8,0\nHGJ-006,,\n"
)
TASK2_PRED = (
    "PatientID,Prediction\nCHUM-001,0.9\nCHUM-002,0.5\nCHUM-003,0.5\nMDA-004,0.7\nMDA-005,0.1\n"
)
TASK3_GT = "PatientID,HPV Status\nA-1,0\nA-2,0\nA-3,1\nB-4,1\nB-5,1\nB-6,unknown\n"


def zipped(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def tarred(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def gt2(tmp_path: Path) -> Any:
    from evaluator.scoring import load_ground_truth

    return load_ground_truth(2, write(tmp_path / "gt" / "Task 2", "rfs.csv", TASK2_GT).parent)


@pytest.fixture
def gt3(tmp_path: Path) -> Any:
    from evaluator.scoring import load_ground_truth

    return load_ground_truth(3, write(tmp_path / "gt3", "hpv.csv", TASK3_GT))


def test_score_task2_end_to_end(tmp_path: Path, gt2: Any) -> None:
    from evaluator.metrics.aggregate import aggregate
    from evaluator.scoring import score_submission

    calls: list[tuple[int, int]] = []
    archive = zipped(tmp_path / "sub.zip", {"team/predictions.csv": TASK2_PRED})
    doc = score_submission(2, gt2, archive, progress=lambda d, t: calls.append((d, t)))
    assert doc["status"] == "scored" and doc["task"] == 2
    assert doc["metrics"] == {"c_index": 0.8125}  # the hand-worked example of test_survival
    assert doc["ground_truth_sha256"] == gt2.sha256
    assert len(doc["submission_sha256"]) == 64
    assert doc["cases"][0] == {
        "patient_id": "CHUM-001",
        "center": "CHUM",
        "prediction": 0.9,
        "time": 2.0,
        "event": 1,
    }
    assert [c["patient_id"] for c in doc["cases"]] == list(gt2.ids)
    assert "HGJ-006" not in gt2.ids and gt2.n_unknown == 1
    assert calls[-1] == (5, 5)
    assert json.loads(json.dumps(doc)) == doc
    assert aggregate(2, doc["cases"]) == doc["metrics"]


def test_score_task2_plain_file_tar_and_folder_agree(tmp_path: Path, gt2: Any) -> None:
    from evaluator.scoring import score_submission

    plain = write(tmp_path / "plain", "predictions.csv", TASK2_PRED)
    tgz = tarred(tmp_path / "sub.tar.gz", {"predictions.csv": TASK2_PRED})
    folder = write_cases(
        tmp_path / "cases",
        {
            "CHUM-001": "0.9",
            "CHUM-002": "0.5",
            "CHUM-003": "0.5",
            "MDA-004": "0.7",
            "MDA-005": "0.1",
        },
    )
    folder_zip = zipped(
        tmp_path / "cases.zip",
        {f"out/{k}/rfs.json": "0.5" for k in gt2.ids} | {"out/HGJ-006/rfs.json": "9"},
    )
    results = [score_submission(2, gt2, p)["metrics"] for p in (plain, tgz, folder)]
    assert results == [{"c_index": 0.8125}] * 3
    assert score_submission(2, gt2, folder_zip)["metrics"] == {"c_index": 0.5}


def test_score_task3_end_to_end(tmp_path: Path, gt3: Any) -> None:
    from evaluator.metrics.aggregate import aggregate
    from evaluator.scoring import score_submission

    rows = [
        {"PatientID": k, "Prediction": v}
        for k, v in {
            "A-1": 0.1,
            "A-2": 0.6,
            "A-3": 0.6,
            "B-4": 0.8,
            "B-5": 0.4,
            "B-6": True,
        }.items()
    ]
    doc = score_submission(3, gt3, write(tmp_path, "p.json", json.dumps(rows)))
    assert doc["metrics"]["auc"] == pytest.approx(0.75)  # test_classification's example
    assert doc["metrics"]["f1_weighted"] == pytest.approx(0.6)
    assert doc["cases"][2] == {"patient_id": "A-3", "center": "A", "prediction": 0.6, "label": 1}
    assert aggregate(3, doc["cases"]) == doc["metrics"]


def test_dry_run(tmp_path: Path, gt2: Any) -> None:
    from evaluator.scoring import score_submission

    doc = score_submission(2, gt2, write(tmp_path, "p.csv", TASK2_PRED), dry_run=True)
    assert doc == {"status": "valid", "task": 2, "n_cases": 5}


def test_rejected_end_to_end(tmp_path: Path, gt2: Any) -> None:
    from evaluator.scoring import score_submission

    bad = TASK2_PRED.replace("0.7", "nan") + "XYZ-1,1\n"
    with pytest.raises(SubmissionRejected) as info:
        score_submission(2, gt2, zipped(tmp_path / "s.zip", {"p.csv": bad}), dry_run=True)
    assert sorted(p.kind for p in info.value.problems) == ["extra_case", "table"]
    protocol = Protocol(ignore_extra_cases=True)
    with pytest.raises(SubmissionRejected) as info:
        score_submission(2, gt2, write(tmp_path, "p.csv", bad), protocol=protocol)
    assert [p.kind for p in info.value.problems] == ["table"]


def test_hostile_nesting_in_an_archive(tmp_path: Path, gt2: Any) -> None:
    from evaluator.scoring import score_submission

    archive = zipped(tmp_path / "s.zip", {"p.json": "{" * 100_000})
    with pytest.raises(SubmissionRejected) as info:
        score_submission(2, gt2, archive)
    assert "nested 100000 levels deep" in info.value.problems[0].message
    # and the scorer still works afterwards
    good = score_submission(2, gt2, write(tmp_path, "p.csv", TASK2_PRED))
    assert good["status"] == "scored"


def test_huge_csv_field(tmp_path: Path) -> None:
    err = only(write(tmp_path, "p.csv", 'PatientID,Prediction\nCHUM-001,"' + "9" * 200_000 + '"\n'))
    assert err.message.startswith("p.csv line 2: not a readable CSV table (field larger than")


def test_degenerate_ground_truth_is_a_scoring_error_not_a_score(tmp_path: Path) -> None:
    from evaluator.errors import ScoringError
    from evaluator.scoring import load_ground_truth, score_submission

    gt = load_ground_truth(
        2, write(tmp_path, "gt2.csv", "PatientID,RFS,Relapse\nA-1,3,0\nA-2,5,0\n")
    )
    pred = write(tmp_path, "p2.csv", "PatientID,Prediction\nA-1,1\nA-2,2\n")
    with pytest.raises(ScoringError, match="no comparable pair"):
        score_submission(2, gt, pred)
    assert score_submission(2, gt, pred, dry_run=True)["status"] == "valid"
    gt = load_ground_truth(3, write(tmp_path, "gt3.csv", "PatientID,HPV Status\nA-1,1\nA-2,1\n"))
    pred = write(tmp_path, "p3.csv", "PatientID,Prediction\nA-1,1\nA-2,0.2\n")
    with pytest.raises(ScoringError, match="both classes"):
        score_submission(3, gt, pred)


def test_tables_are_capped_in_rows_and_listed_problems(tmp_path: Path) -> None:
    from evaluator.errors import MAX_LISTED_PROBLEMS

    lim = Limits(max_table_rows=1000)
    csv_path = tmp_path / "many.csv"
    csv_path.write_text("PatientID,Prediction\n" + "".join(f"X-{i},1\n" for i in range(1001)))
    with pytest.raises(SubmissionRejected) as e:
        read_predictions(csv_path, task=2, case_ids=["A"], limits=lim)
    assert [p.kind for p in e.value.problems] == ["limit"]
    assert "more than 1,000 rows" in e.value.problems[0].message
    json_path = tmp_path / "many.json"
    json_path.write_text(json.dumps({f"X-{i}": 1 for i in range(1001)}))
    with pytest.raises(SubmissionRejected) as e:
        read_predictions(json_path, task=2, case_ids=["A"], limits=lim)
    assert "more than 1,000 rows" in e.value.problems[0].message
    # under the row cap, a thousand unknown ids: the first problems listed, then a count
    csv_path.write_text("PatientID,Prediction\n" + "".join(f"X-{i},1\n" for i in range(999)))
    with pytest.raises(SubmissionRejected) as e:
        read_predictions(csv_path, task=2, case_ids=["A"], limits=lim)
    assert e.value.n_problems == 1000 and len(e.value.problems) == MAX_LISTED_PROBLEMS
    assert "more problems like the ones above" in e.value.problems[-1].message
