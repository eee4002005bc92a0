"""The 2026 synthetic challenge: its layout, its truth as the 2026 rules read it, and
the teams' order, checked with independent computations (nibabel + numpy DSC,
scikit-learn balanced accuracy, lifelines C-index); and the command line."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from lifelines.utils import concordance_index
from sklearn.metrics import balanced_accuracy_score

from evaluator.cli import main
from evaluator.synth import generate_challenge

TEAMS = ("perfect", "good", "mediocre", "poor")
FOLD = {"N2A": "N2", "N2B": "N2", "N2C": "N2", "T4A": "T4", "T4B": "T4"}


@pytest.fixture(scope="module")
def challenge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("s2026") / "c"
    generate_challenge(out, seed=0, small=True, edition=2026)
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_layout_and_manifest(challenge: Path) -> None:
    gt = challenge / "ground_truth"
    assert (gt / "Task 2" / "HECKTOR_2026_Task_2.csv").is_file()
    clinical = _rows(gt / "Task 3" / "HECKTOR_2026_clinical.csv")
    assert list(clinical[0]) == ["PatientID", "CenterID", "RFS", "Relapse", "T-stage", "N-stage"]
    manifest = json.loads((challenge / "manifest.json").read_text())
    assert manifest["edition"] == 2026 and manifest["protocol"] == "hecktor2026"
    for team in TEAMS:
        sub = challenge / "submissions" / team
        assert (sub / "task1.zip").is_file() and (sub / "task2.zip").is_file()
        assert (sub / "task3.zip").is_file() != (sub / "task3.csv").is_file()
    with zipfile.ZipFile(challenge / "submissions" / "good" / "task3.zip") as z:
        names = z.namelist()
        assert names[0].endswith("/t-stage.json") and json.loads(z.read(names[0])) in (
            "T1",
            "T2",
            "T3",
            "T4",
        )
    # the truth is written as clinical tables write it: aliases, lower case, unknowns
    cells = {r["T-stage"] for r in clinical} | {r["N-stage"] for r in clinical}
    assert "" in cells and any(c != c.upper() or c.upper() in FOLD for c in cells)


def _stage(text: str) -> str:
    key = text.strip().upper()
    return FOLD.get(key, key)


def _staging_bacc(challenge: Path, team: str) -> float:
    truth = {
        r["PatientID"]: (_stage(r["T-stage"]), _stage(r["N-stage"]))
        for r in _rows(challenge / "ground_truth" / "Task 3" / "HECKTOR_2026_clinical.csv")
        if r["T-stage"].strip() and r["N-stage"].strip()
    }
    sub = challenge / "submissions" / team
    if (sub / "task3.csv").is_file():
        pred = {r["PatientID"]: (r["T-stage"], r["N-stage"]) for r in _rows(sub / "task3.csv")}
    else:
        with zipfile.ZipFile(sub / "task3.zip") as z:
            pred = {
                pid: (
                    json.loads(z.read(f"{pid}/t-stage.json")),
                    json.loads(z.read(f"{pid}/n-stage.json")),
                )
                for pid in truth
            }
    ids = sorted(truth)
    t = balanced_accuracy_score([truth[i][0] for i in ids], [pred[i][0] for i in ids])
    n = balanced_accuracy_score([truth[i][1] for i in ids], [pred[i][1] for i in ids])
    return float(t + n) / 2.0


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def _seg_dsc(challenge: Path, team: str) -> float:
    per_label: dict[int, list[float]] = {1: [], 2: []}
    with zipfile.ZipFile(challenge / "submissions" / team / "task1.zip") as z:
        members = {Path(n).name.removesuffix(".nii.gz"): n for n in z.namelist()}
        for pid, name in sorted(members.items()):
            gt = np.asanyarray(
                nib.load(challenge / "ground_truth" / "Task 1" / pid / f"{pid}.nii.gz").dataobj
            )
            pred_file = challenge / f"{pid}.tmp.nii.gz"
            pred_file.write_bytes(z.read(name))
            pred = np.asanyarray(nib.load(pred_file).dataobj)
            pred_file.unlink()
            for label in (1, 2):
                per_label[label].append(_dice(gt == label, pred == label))
    return (float(np.mean(per_label[1])) + float(np.mean(per_label[2]))) / 2.0


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_teams_are_ordered_on_every_2026_ranked_metric(challenge: Path) -> None:
    staging = [_staging_bacc(challenge, t) for t in TEAMS]
    assert staging[0] == 1.0 and staging == sorted(staging, reverse=True)
    assert len(set(staging)) == 4
    seg = [_seg_dsc(challenge, t) for t in TEAMS]
    assert seg[0] == 1.0 and seg == sorted(seg, reverse=True)
    rfs = {
        r["PatientID"]: r
        for r in _rows(challenge / "ground_truth" / "Task 2" / "HECKTOR_2026_Task_2.csv")
        if r["RFS"]
    }
    ids = sorted(rfs)
    c = []
    for team in TEAMS:
        with zipfile.ZipFile(challenge / "submissions" / team / "task2.zip") as z:
            risk = [json.loads(z.read(f"{pid}/rfs.json")) for pid in ids]
        c.append(
            concordance_index(
                [float(rfs[i]["RFS"]) for i in ids],
                [-r for r in risk],
                [int(rfs[i]["Relapse"]) for i in ids],
            )
        )
    assert c == sorted(c, reverse=True) and len(set(c)) == 4


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_cli_synth_and_score_with_the_builtin_protocol(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c"
    assert main(["synth", "--edition", "2026", "--small", "--cases", "10", "--out", str(out)]) == 0
    capsys.readouterr()
    result = tmp_path / "r.json"
    code = main(
        [
            "score",
            "--task",
            "3",
            "--protocol",
            "hecktor2026",
            "--ground-truth",
            str(out / "ground_truth" / "Task 3"),
            "--predictions",
            str(out / "submissions" / "mediocre" / "task3.csv"),
            "--output",
            str(result),
            "-q",
        ]
    )
    assert code == 0
    doc = json.loads(result.read_text())
    assert doc["protocol"]["name"] == "hecktor2026"
    assert doc["metrics"]["staging_bacc"] == pytest.approx(_staging_bacc(out, "mediocre"))
    assert (
        main(
            [
                "score",
                "--task",
                "3",
                "--protocol",
                "hecktor2099",
                "--ground-truth",
                str(out),
                "--predictions",
                str(out),
            ]
        )
        == 1
    )
    assert "hecktor2099: neither a built-in protocol" in capsys.readouterr().err
