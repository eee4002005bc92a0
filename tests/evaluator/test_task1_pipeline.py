"""Task 1 end to end: ground-truth folder -> archive -> CLI -> docs/scoring.md section 5 document,
per-case numbers against the slow reference, and validation messages listed at once."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from evaluator.cli import main
from evaluator.errors import GroundTruthError, SubmissionRejected
from evaluator.io.prepared import load_prepared_task1
from evaluator.protocol import Protocol
from evaluator.scoring import load_ground_truth, score_submission
from tests.builders import affine_for, make_tar, make_zip, nifti_bytes, write_nifti
from tests.reference import ref_aggregate, ref_case

SHAPE = (24, 20, 12)
SPACINGS = {"CHUM-001": (1.0, 1.0, 3.0), "CHUM-002": (0.5, 0.5, 2.0), "MDA-010": (1.2, 1.2, 1.0)}


def random_labels(rng: np.random.Generator) -> np.ndarray:
    arr = np.zeros(SHAPE, np.uint8)
    for _ in range(rng.integers(0, 5)):
        x, y, z = (
            rng.integers(0, SHAPE[0] - 4),
            rng.integers(0, SHAPE[1] - 4),
            rng.integers(0, SHAPE[2] - 3),
        )
        arr[x : x + rng.integers(1, 5), y : y + rng.integers(1, 5), z : z + rng.integers(1, 4)] = (
            rng.integers(1, 3)
        )
    return arr


@pytest.fixture()
def challenge(tmp_path: Path):
    rng = np.random.default_rng(42)
    gt_root = tmp_path / "Task 1"
    preds = {}
    truths = {}
    for i, (pid, sp) in enumerate(SPACINGS.items()):
        gt = random_labels(rng)
        aff = affine_for(sp, (i, -i, 2 * i))
        if i == 0:  # nested layout, with image files beside the label
            write_nifti(gt_root / pid / f"{pid}.nii.gz", gt, aff)
            write_nifti(gt_root / pid / f"{pid}__CT.nii.gz", np.zeros(SHAPE, np.int16), aff)
            write_nifti(gt_root / pid / f"{pid}__PT.nii.gz", np.zeros(SHAPE, np.float32), aff)
        else:  # flat layout
            write_nifti(gt_root / f"{pid}.nii.gz", gt, aff)
            write_nifti(gt_root / f"{pid}_CT.nii.gz", np.zeros(SHAPE, np.int16), aff)
        pred = np.where(rng.random(SHAPE) < 0.9, gt, 0).astype(np.uint8)
        pred[rng.random(SHAPE) < 0.01] = 2
        truths[pid] = (gt, sp)
        preds[pid] = (pred, aff)
    return gt_root, truths, preds


def pred_files(preds, **overrides) -> dict[str, bytes]:
    files = {f"{pid}.nii.gz": nifti_bytes(p, a) for pid, (p, a) in preds.items()}
    files.update(overrides)
    return {k: v for k, v in files.items() if v is not None}


def expected_doc(truths, preds):
    cases = []
    for pid, (gt, sp) in truths.items():
        c = ref_case(gt, preds[pid][0])
        # NIfTI-1 stores pixdim as float32: the voxel volume is the product of those values
        z = [float(np.float32(v)) for v in sp]
        c["voxel_volume_mm3"] = z[0] * z[1] * z[2]
        cases.append(c)
    return cases, ref_aggregate(cases)


def score_cli(gt_root: Path, predictions: Path, *extra: str | Path) -> int:
    """``hecktor-eval score --task 1`` with the given ground truth and predictions."""
    args = ["score", "--task", "1", "--ground-truth", str(gt_root), "--predictions"]
    return main([*args, str(predictions), *(str(a) for a in extra)])


def test_ground_truth_layouts(challenge) -> None:
    gt_root, truths, _ = challenge
    gt = load_ground_truth(1, gt_root)
    assert gt.case_ids == tuple(sorted(truths))
    assert gt.cases["MDA-010"].center == "MDA"
    assert gt.cases["CHUM-002"].voxel_volume_mm3 == pytest.approx(0.5)
    assert len(gt.sha256) == 64


def test_ground_truth_problems_listed(tmp_path) -> None:
    root = tmp_path / "Task 1"
    write_nifti(root / "A-1.nii.gz", np.full((3, 3, 3), 4, np.uint8))
    (root / "B-1.nii.gz").write_bytes(b"garbage")
    with pytest.raises(GroundTruthError) as e:
        load_ground_truth(1, root)
    text = str(e.value)
    assert "A-1: holds label value(s) 4" in text and "B-1:" in text and "2 problem(s)" in text


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "tar", "dir"])
def test_cli_scores_and_matches_reference(tmp_path, challenge, kind, capsys) -> None:
    gt_root, truths, preds = challenge
    files = pred_files(preds)
    if kind == "zip":
        sub = make_zip(tmp_path / "sub.zip", {f"team/{k}": v for k, v in files.items()})
    elif kind == "tar.gz":
        sub = make_tar(tmp_path / "sub.tgz", files)
    elif kind == "tar":
        sub = make_tar(tmp_path / "sub.tar", files, mode="w")
    else:
        sub = tmp_path / "subdir"
        sub.mkdir()
        for k, v in files.items():
            (sub / k).write_bytes(v)
    out, cases_csv = tmp_path / "result.json", tmp_path / "cases.csv"
    rc = score_cli(gt_root, sub, "--output", out, "--cases", cases_csv)
    assert rc == 0
    doc = json.loads(out.read_text())
    ref_cases, ref_metrics = expected_doc(truths, preds)
    assert doc["task"] == 1 and doc["status"] == "scored"
    assert doc["protocol"] == Protocol().summary()
    assert len(doc["ground_truth_sha256"]) == 64 and len(doc["submission_sha256"]) == 64
    for got, want in zip(doc["cases"], ref_cases, strict=True):
        for k, v in want.items():
            assert got[k] == pytest.approx(v, rel=1e-15), (got["patient_id"], k)
    for k, v in ref_metrics.items():
        assert doc["metrics"][k] == pytest.approx(v, rel=1e-12)
    rows = list(csv.DictReader(cases_csv.open()))
    assert [r["patient_id"] for r in rows] == list(truths)
    assert int(rows[0]["gtvn_tp"]) == doc["cases"][0]["gtvn_tp"]


def test_workers_give_identical_documents(tmp_path, challenge) -> None:
    gt_root, _, preds = challenge
    sub = make_zip(tmp_path / "s.zip", pred_files(preds))
    gt = load_ground_truth(1, gt_root)
    one = score_submission(1, gt, sub, workers=1)
    two = score_submission(1, gt, sub, workers=2)
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    # the prepared ground truth (foreground crops cached as .npy) gives the same document
    prepared = load_ground_truth(1, gt_root, cache_dir=tmp_path / "cache")
    assert all(c.crop_path is not None for c in prepared.cases.values() if c.bbox is not None)
    three = score_submission(1, prepared, sub, workers=2)
    assert json.dumps(one, sort_keys=True) == json.dumps(three, sort_keys=True)
    # ... and so does the prepared form loaded back from its manifest, without decoding
    reloaded = load_prepared_task1(tmp_path / "cache")
    assert reloaded.sha256 == gt.sha256 and reloaded.case_ids == gt.case_ids
    four = score_submission(1, reloaded, sub)
    assert json.dumps(one, sort_keys=True) == json.dumps(four, sort_keys=True)
    # a crop changed on disk is noticed
    crop = next(c.crop_path for c in reloaded.cases.values() if c.crop_path is not None)
    crop.write_bytes(crop.read_bytes()[:-1] + b"\x01")
    with pytest.raises(ValueError, match="changed on disk"):
        score_submission(1, reloaded, sub)


def test_every_problem_listed_at_once(tmp_path, challenge, capsys) -> None:
    gt_root, _, preds = challenge
    (p1, a1), (p2, a2), _ = preds.values()
    bad_affine = a2.copy()
    bad_affine[0, 3] += 1.0
    wrong_label = p1.copy()
    wrong_label[0, 0, 0] = 3
    float_pred = p2.astype(np.float32)
    float_pred[1, 1, 1] = 0.25
    files = {
        "CHUM-001.nii.gz": nifti_bytes(wrong_label, a1),  # label 3
        "CHUM-002.nii.gz": nifti_bytes(p2, bad_affine),  # shifted origin
        # MDA-010 missing
        "XYZ-999.nii.gz": nifti_bytes(p1, a1),  # unknown case
        "../evil.nii.gz": b"x",  # path traversal
    }
    sub = make_zip(tmp_path / "bad.zip", files)
    out = tmp_path / "r.json"
    rc = score_cli(gt_root, sub, "--output", out)
    assert rc == 2
    doc = json.loads(out.read_text())
    assert doc["status"] == "failed"
    # the unsafe member makes the whole archive unsafe: that is reported alone, before any case
    assert doc["errors"] == [
        {
            "case": "bad.zip",
            "kind": "archive",
            "message": "member '../evil.nii.gz' points outside the archive ('..' in its path); "
            "archive the prediction files themselves, without '..'",
        }
    ]
    # without the unsafe member every case problem is listed at once
    del files["../evil.nii.gz"]
    files["CHUM-002.nii.gz"] = nifti_bytes(p2, bad_affine)
    sub = make_zip(tmp_path / "bad2.zip", files)
    rc = score_cli(gt_root, sub, "--output", out)
    assert rc == 2
    errors = json.loads(out.read_text())["errors"]
    by_kind = {e["kind"]: e for e in errors}
    assert len(errors) == 4, errors
    assert (
        by_kind["labels"]["case"] == "CHUM-001.nii.gz"
        and "label value(s) 3" in by_kind["labels"]["message"]
    )
    assert (
        by_kind["geometry"]["case"] == "CHUM-002.nii.gz"
        and "origin" in by_kind["geometry"]["message"]
    )
    assert by_kind["missing_case"]["message"].startswith("no prediction for case MDA-010")
    assert by_kind["extra_case"]["case"] == "XYZ-999.nii.gz"
    assert "not part of this phase" in by_kind["extra_case"]["message"]
    err = capsys.readouterr().err
    assert "Submission rejected: 4 problem(s)" in err


def test_other_validation_messages(tmp_path, challenge) -> None:
    gt_root, _, preds = challenge
    gt = load_ground_truth(1, gt_root)
    (p1, a1), (_p2, a2), (p3, a3) = preds.values()
    f = p1.astype(np.float32)
    f[2, 2, 2] = 1.5
    files = {
        "CHUM-001.nii.gz": nifti_bytes(f, a1),
        "CHUM-002.nii.gz": nifti_bytes(np.zeros((*SHAPE, 2), np.uint8), a2),
        "MDA-010.nii.gz": nifti_bytes(p3, a3)[:-40] + b"\0" * 10,
    }
    with pytest.raises(SubmissionRejected) as e:
        score_submission(1, gt, make_zip(tmp_path / "s.zip", files))
    msgs = {p.case: p.message for p in e.value.problems}
    assert "non-integer values (1.5)" in msgs["CHUM-001.nii.gz"]
    assert "4-D with shape (24, 20, 12, 2)" in msgs["CHUM-002.nii.gz"]
    assert "corrupt" in msgs["MDA-010.nii.gz"] or "truncated" in msgs["MDA-010.nii.gz"]
    # wrong shape
    files = pred_files(
        preds, **{"CHUM-001.nii.gz": nifti_bytes(np.zeros((24, 20, 11), np.uint8), a1)}
    )
    with pytest.raises(SubmissionRejected) as e:
        score_submission(1, gt, make_zip(tmp_path / "s2.zip", files))
    assert [p.message for p in e.value.problems] == [
        "shape (24, 20, 11) does not match the CT (24, 20, 12); predictions must be on the "
        "CT grid, they are not resampled"
    ]


def test_extra_cases_ignored_when_the_protocol_says_so(tmp_path, challenge) -> None:
    gt_root, _, preds = challenge
    files = pred_files(preds, **{"EXTRA-1.nii.gz": nifti_bytes(np.zeros(SHAPE, np.uint8))})
    sub = make_zip(tmp_path / "s.zip", files)
    gt = load_ground_truth(1, gt_root)
    with pytest.raises(SubmissionRejected):
        score_submission(1, gt, sub)
    doc = score_submission(1, gt, sub, protocol=Protocol(ignore_extra_cases=True))
    assert len(doc["cases"]) == 3


def test_resample_nearest_switch(tmp_path, challenge) -> None:
    # a prediction on a grid shifted by exactly one voxel along x: with resampling the
    # labels land back on the CT grid (shifted by one voxel), without it it is rejected
    gt_root, truths, preds = challenge
    gt = load_ground_truth(1, gt_root)
    pid = "CHUM-001"
    truth, sp = truths[pid]
    aff = preds[pid][1].copy()
    aff[0, 3] += sp[0]  # origin one voxel further along x
    shifted = np.zeros_like(truth)
    shifted[:-1] = truth[1:]  # pred voxel i sits where the CT's voxel i+1 is
    files = pred_files(preds, **{f"{pid}.nii.gz": nifti_bytes(shifted, aff)})
    sub = make_zip(tmp_path / "s.zip", files)
    with pytest.raises(SubmissionRejected, match="origin"):
        score_submission(1, gt, sub)
    doc = score_submission(1, gt, sub, protocol=Protocol(geometry_mismatch="resample_nearest"))
    case = doc["cases"][0]
    truth_on_grid = truth.copy()
    truth_on_grid[0] = 0  # the first CT slice has no counterpart in the shifted grid
    want = ref_case(truth, truth_on_grid)
    for k, v in want.items():
        assert case[k] == v


def test_dry_run_validates_without_scores(tmp_path, challenge) -> None:
    gt_root, _, preds = challenge
    gt = load_ground_truth(1, gt_root)
    doc = score_submission(1, gt, make_zip(tmp_path / "s.zip", pred_files(preds)), dry_run=True)
    assert doc == {"status": "valid", "task": 1, "n_cases": 3}


def test_cli_exit_codes(tmp_path, challenge, capsys) -> None:
    gt_root, _, _preds = challenge
    not_archive = tmp_path / "notes.txt"
    not_archive.write_text("hello")
    assert score_cli(gt_root, not_archive) == 2
    out = json.loads(capsys.readouterr().out)
    assert "not a .zip, .tar or .tar.gz archive" in out["errors"][0]["message"]
    assert score_cli(tmp_path / "nope", not_archive) == 1
    bad_protocol = tmp_path / "p.json"
    bad_protocol.write_text('{"connectivity": 5}')
    assert score_cli(gt_root, not_archive, "--protocol", bad_protocol) == 1
    assert "connectivity must be 6, 18 or 26" in capsys.readouterr().err
    shutil.rmtree(gt_root)
