"""Task 1 archives as segmentation tools and people write them: documents beside the
label maps (nnU-Net's dataset.json, plans.json, predict_from_raw_data_args.json, a
README.txt) are skipped and named in the result's notes; unknown image files are still
refused; a naming mistake every file shares is one message with the fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evaluator.errors import SubmissionRejected
from evaluator.scoring import load_ground_truth, score_submission
from tests.builders import affine_for, make_tar, make_zip, nifti_bytes, write_nifti
from tests.evaluator.test_task1_pipeline import score_cli

SHAPE = (8, 7, 5)
IDS = ("CHUM-001", "CHUM-002", "MDA-010")
NNUNET = {
    "dataset.json": b'{"channel_names": {"0": "CT", "1": "PET"}}',
    "plans.json": b'{"dataset_name": "Dataset101_HECKTOR"}',
    "predict_from_raw_data_args.json": b'{"folds": [0, 1, 2, 3, 4]}',
    "README.txt": b"fold 0-4 ensemble\n",
}


@pytest.fixture()
def truth(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "Task 1"
    files = {}
    for i, pid in enumerate(IDS):
        arr = np.zeros(SHAPE, np.uint8)
        arr[1 : 3 + i, 2:4, 1:3] = 1
        arr[5:7, 4:6, 2:4] = 2
        write_nifti(root / f"{pid}.nii.gz", arr, affine_for())
        files[pid] = nifti_bytes(arr, affine_for())
    return root, files


def _problems(gt_root: Path, sub: Path) -> list[str]:
    gt = load_ground_truth(1, gt_root)
    with pytest.raises(SubmissionRejected) as info:
        score_submission(1, gt, sub)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize("dry_run", [False, True])
def test_nnunet_metadata_and_readme_are_skipped_and_named(truth, tmp_path, dry_run) -> None:
    gt_root, labels = truth
    members = {f"{pid}.nii.gz": data for pid, data in labels.items()}
    sub = make_zip(tmp_path / "nnunet.zip", {**members, **NNUNET})
    doc = score_submission(1, load_ground_truth(1, gt_root), sub, dry_run=dry_run)
    assert doc["status"] == ("valid" if dry_run else "scored")
    assert doc["notes"] == {
        "ignored_files": "README.txt, dataset.json, plans.json, "
        "predict_from_raw_data_args.json: not label maps, not read"
    }
    if not dry_run:  # the same score as without the documents
        plain = make_zip(tmp_path / "plain.zip", members)
        same = score_submission(1, load_ground_truth(1, gt_root), plain)
        assert doc["metrics"] == same["metrics"] and "notes" not in same


def test_unknown_image_files_are_still_refused(truth, tmp_path) -> None:
    gt_root, labels = truth
    members = {f"{pid}.nii.gz": data for pid, data in labels.items()}
    sub = make_zip(tmp_path / "s.zip", {**members, **NNUNET, "CHUM-001.nrrd": b"NRRD0004\n"})
    assert _problems(gt_root, sub) == [
        "CHUM-001.nrrd: unexpected file: a Task 1 submission holds only <PatientID>.nii.gz "
        "(or <PatientID>.mha) label maps, one per case; remove this file"
    ]


@pytest.mark.parametrize(
    ("name", "ext", "fix"),
    [
        ("{}_pred", ".nii.gz", "end in `_pred`"),
        ("{}_seg", ".nii.gz", "end in `_seg`"),
        ("{}__CT", ".nii.gz", "end in `__CT`"),
        ("{}_pred", ".mha", "end in `_pred`"),
        ("pred_{}", ".nii.gz", "begin with `pred_`"),
    ],
)
def test_a_naming_mistake_shared_by_all_files_is_one_message(
    truth, tmp_path, name, ext, fix
) -> None:
    gt_root, labels = truth
    members = {name.format(pid) + ext: data for pid, data in labels.items()}
    sub = make_tar(tmp_path / "s.tar.gz", members)
    first = name.format(IDS[0]) + ext
    assert _problems(gt_root, sub) == [
        f"all 3 files {fix}: name them `<PatientID>{ext}` (e.g. {first} -> {IDS[0]}{ext}); "
        "a prediction is named after its case only"
    ]


def test_a_shared_mistake_of_some_files_leaves_the_others_listed(truth, tmp_path) -> None:
    gt_root, labels = truth
    members = {
        "CHUM-001_pred.nii.gz": labels["CHUM-001"],
        "CHUM-002_pred.nii.gz": labels["CHUM-002"],
        "MDA-010.nii.gz": labels["MDA-010"],
        "NOPE-001.nii.gz": labels["MDA-010"],
    }
    sub = make_zip(tmp_path / "s.zip", members)
    assert _problems(gt_root, sub) == [
        "2 files end in `_pred`: name them `<PatientID>.nii.gz` (e.g. CHUM-001_pred.nii.gz "
        "-> CHUM-001.nii.gz); a prediction is named after its case only",
        "NOPE-001.nii.gz: case 'NOPE-001' is not part of this phase; remove it (or check "
        "the name: files are named <PatientID>.nii.gz or <PatientID>.mha, e.g. "
        "CHUM-001.nii.gz)",
    ]


def test_cli_prints_one_line_for_the_shared_mistake(truth, tmp_path, capsys) -> None:
    gt_root, labels = truth
    members = {f"{pid}_pred.nii.gz": data for pid, data in labels.items()}
    sub = make_zip(tmp_path / "s.zip", members)
    out = tmp_path / "r.json"
    assert score_cli(gt_root, sub, "--output", out, "-q") == 2
    err = capsys.readouterr().err
    assert err == (
        "Submission rejected: 1 problem(s):\n"
        "  - all 3 files end in `_pred`: name them `<PatientID>.nii.gz` (e.g. "
        "CHUM-001_pred.nii.gz -> CHUM-001.nii.gz); a prediction is named after its case only\n"
    )
    assert json.loads(out.read_text())["errors"][0]["kind"] == "format"
