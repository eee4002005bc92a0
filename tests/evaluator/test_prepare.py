"""Ground truth prepared once (validated, hashed, copied, cropped in one read of the
organizer's folder) and opened by the judge: checked against facts found independently
(the source files' own hashes and bytes, the labels decoded from the source)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import evaluator.io.task1_truth as task1_truth
import evaluator.scoring as scoring
from evaluator.boxes import crop
from evaluator.errors import GroundTruthChanged, GroundTruthError
from evaluator.io.hashing import combine_hashes, sha256_file
from evaluator.io.nifti import read_label_map
from evaluator.io.prepared import MANIFEST, prepared_path
from evaluator.io.task1_truth import Task1GroundTruth
from evaluator.scoring import (
    load_ground_truth,
    open_ground_truth,
    prepare_ground_truth,
    score_submission,
)
from tests.builders import affine_for, make_zip, nifti_bytes, write_nifti

SHAPE = (16, 14, 8)
IDS = ("CHUM-001", "CHUM-002", "MDA-010")


def _labels(seed: int) -> np.ndarray:
    arr = np.zeros(SHAPE, np.uint8)
    if seed == 2:
        return arr  # an empty case: no crop
    arr[2 + seed : 6 + seed, 3:7, 1:4] = 1
    arr[9:12, 8 : 10 + seed, 5:7] = 2
    return arr


@pytest.fixture()
def task1(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """A Task 1 folder: one case nested beside its images, two flat."""
    root = tmp_path / "organizer" / "Task 1"
    files = {}
    for i, pid in enumerate(IDS):
        aff = affine_for((1.0, 1.0, 2.0), (i, 0, 0))
        if i == 0:
            files[pid] = write_nifti(root / pid / f"{pid}.nii.gz", _labels(i), aff)
            write_nifti(root / pid / f"{pid}__CT.nii.gz", np.zeros(SHAPE, np.int16), aff)
        else:
            files[pid] = write_nifti(root / f"{pid}.nii.gz", _labels(i), aff)
    return root, files


def test_task1_hash_rows_and_copies_match_the_source(tmp_path: Path, task1: Any) -> None:
    source, files = task1
    dest = tmp_path / "data" / "Task 1"
    prepared = prepare_ground_truth(1, source, dest)
    # the hash is the one the plain loader computes, and the one of the files themselves
    assert prepared.sha256 == load_ground_truth(1, source).sha256
    assert prepared.sha256 == combine_hashes((pid, sha256_file(p)) for pid, p in files.items())
    assert prepared.task == 1 and prepared.n_cases == 3
    assert [c.patient_id for c in prepared.cases] == list(IDS)
    for c in prepared.cases:
        assert c.center == c.patient_id.split("-")[0]
        assert c.sha256 == sha256_file(files[c.patient_id])
        assert c.file == f"{c.patient_id}/{c.patient_id}.nii.gz"
        assert (dest / c.file).read_bytes() == files[c.patient_id].read_bytes()
    # only label files are copied; the prepared form lives beside the copy
    assert sorted(p.name for p in dest.rglob("*") if p.is_file()) == sorted(
        f"{pid}.nii.gz" for pid in IDS
    )
    assert (prepared_path(dest) / MANIFEST).is_file()
    assert prepared_path(dest) == tmp_path / "data" / "Task 1.prepared"


def test_prepared_crops_decode_as_the_source_labels(tmp_path: Path, task1: Any) -> None:
    source, files = task1
    dest = tmp_path / "data" / "Task 1"
    prepared = prepare_ground_truth(1, source, dest)
    opened = open_ground_truth(1, dest)
    assert isinstance(opened, Task1GroundTruth)
    assert opened.sha256 == prepared.sha256 and opened.case_ids == IDS
    for pid, path in files.items():
        truth = read_label_map(path, max_voxels=1 << 20)
        case = opened.cases[pid]
        assert case.crop_path is not None or truth.bbox is None  # read from the .npy
        assert case.bbox == truth.bbox
        got = case.load_crop(max_voxels=1 << 20)
        if truth.bbox is None:
            assert got is None
        else:
            assert got is not None and np.array_equal(got, crop(truth.array, truth.bbox))


def test_opened_ground_truth_scores_as_the_source(tmp_path: Path, task1: Any) -> None:
    source, _ = task1
    dest = tmp_path / "data" / "Task 1"
    prepare_ground_truth(1, source, dest)
    preds = {
        f"{pid}.nii.gz": nifti_bytes(_labels((i + 1) % 3), affine_for((1.0, 1.0, 2.0), (i, 0, 0)))
        for i, pid in enumerate(IDS)
    }
    sub = make_zip(tmp_path / "s.zip", preds)
    want = json.dumps(score_submission(1, load_ground_truth(1, source), sub), sort_keys=True)
    assert json.dumps(score_submission(1, open_ground_truth(1, dest), sub), sort_keys=True) == want
    # without its prepared form, the copy is read as the plain loader reads it
    (prepared_path(dest) / MANIFEST).unlink()
    plain = open_ground_truth(1, dest)
    assert isinstance(plain, Task1GroundTruth) and plain.cases["CHUM-001"].crop_path is None
    assert json.dumps(score_submission(1, plain, sub), sort_keys=True) == want


def test_invalid_task1_lists_the_loaders_problems(tmp_path: Path, task1: Any) -> None:
    source, files = task1
    files["CHUM-002"].write_bytes(b"not a nifti file at all")
    arr = _labels(0)
    arr[0, 0, 0] = 7
    write_nifti(files["MDA-010"], arr, affine_for())
    with pytest.raises(GroundTruthError) as loaded:
        load_ground_truth(1, source)
    with pytest.raises(GroundTruthError) as prepared:
        prepare_ground_truth(1, source, tmp_path / "data" / "Task 1")
    assert prepared.value.problems == loaded.value.problems
    assert len(prepared.value.problems) == 2


def test_a_source_file_changed_while_read_is_detected(
    tmp_path: Path, task1: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, files = task1
    before = load_ground_truth(1, source).sha256
    target = files["CHUM-002"]
    real_read = task1_truth._ReadOnce.read
    touched: list[bool] = []

    def read_then_overwrite(self: Any, n: int = -1, /) -> bytes:
        data = real_read(self, n)
        if not touched and self.file.name == str(target):
            touched.append(True)
            with open(target, "r+b") as f:  # the gzip header's time stamp, already read
                f.seek(4)
                f.write(b"\x01\x02\x03\x04")
            st = target.stat()
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        return data

    monkeypatch.setattr(task1_truth._ReadOnce, "read", read_then_overwrite)
    with pytest.raises(GroundTruthChanged) as exc:
        prepare_ground_truth(1, source, tmp_path / "data" / "Task 1")
    assert touched
    assert exc.value.copy_sha256 == before
    assert exc.value.source_sha256 == load_ground_truth(1, source).sha256 != before


TASK2_GT = "PatientID,RFS,Relapse\nCHUM-001,2,1\nCHUM-002,4,0\nMDA-004,6,1\nHGJ-006,,\n"


def test_task2_table_copied_and_recorded(tmp_path: Path) -> None:
    source = tmp_path / "organizer" / "Task 2"
    source.mkdir(parents=True)
    (source / "rfs.csv").write_text(TASK2_GT)
    dest = tmp_path / "data" / "Task 2"
    prepared = prepare_ground_truth(2, source, dest)
    assert prepared.sha256 == load_ground_truth(2, source).sha256
    assert (dest / "rfs.csv").read_bytes() == (source / "rfs.csv").read_bytes()
    assert [(c.patient_id, c.center, c.sha256, c.file) for c in prepared.cases] == [
        ("CHUM-001", "CHUM", None, "rfs.csv"),
        ("CHUM-002", "CHUM", None, "rfs.csv"),
        ("MDA-004", "MDA", None, "rfs.csv"),
    ]
    assert prepared.n_cases == 3
    assert open_ground_truth(2, dest).sha256 == prepared.sha256


def test_task3_table_changed_before_its_copy_is_detected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "organizer" / "Task 3"
    source.mkdir(parents=True)
    table = source / "hpv.csv"
    table.write_text("PatientID,HPV Status\nA-1,0\nA-2,1\n")
    before = load_ground_truth(3, source).sha256
    real_copy = scoring._copy_file

    def edited_then_copied(src: Path, dst: Path) -> None:
        table.write_text("PatientID,HPV Status\nA-1,1\nA-2,1\n")
        real_copy(src, dst)

    monkeypatch.setattr(scoring, "_copy_file", edited_then_copied)
    with pytest.raises(GroundTruthChanged) as exc:
        prepare_ground_truth(3, source, tmp_path / "data" / "Task 3")
    assert exc.value.source_sha256 == before
    assert exc.value.copy_sha256 == load_ground_truth(3, source).sha256 != before


def test_unknown_task_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="task must be 1, 2 or 3"):
        prepare_ground_truth(4, tmp_path, tmp_path / "d")
    with pytest.raises(ValueError, match="task must be 1, 2 or 3"):
        open_ground_truth(0, tmp_path)
