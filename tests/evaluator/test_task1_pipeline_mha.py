"""Task 1 with MetaImage files: an .mha submission scores exactly as the equivalent
.nii.gz one, formats may be mixed, the ground truth may be MetaImage too, and the
naming rules (one file per case, .mhd only in folders) hold."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from evaluator.errors import SubmissionRejected
from evaluator.io.hashing import combine_hashes, sha256_file
from evaluator.io.prepared import prepare_task1
from evaluator.scoring import load_ground_truth, score_submission
from tests.builders import make_tar, make_zip
from tests.evaluator.test_mha import mha_from_affine
from tests.evaluator.test_task1_pipeline import challenge, pred_files

__all__ = ["challenge"]


def mha_bytes(tmp: Path, arr: np.ndarray, affine: np.ndarray, *, compressed=True) -> bytes:
    """The MetaImage SimpleITK writes of ``arr`` on the grid of the NIfTI ``affine``."""
    tmp.mkdir(parents=True, exist_ok=True)
    return mha_from_affine(tmp / "x.mha", arr, affine, compressed=compressed).read_bytes()


def mha_files(tmp: Path, preds, **kw) -> dict[str, bytes]:
    return {f"{pid}.mha": mha_bytes(tmp / pid, p, a, **kw) for pid, (p, a) in preds.items()}


def _without_hashes(doc):
    return {k: v for k, v in doc.items() if k not in ("ground_truth_sha256", "submission_sha256")}


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "dir"])
@pytest.mark.parametrize("compressed", [True, False])
def test_mha_submission_scores_as_the_nifti_one(tmp_path, challenge, kind, compressed) -> None:
    gt_root, _, preds = challenge
    gt = load_ground_truth(1, gt_root)
    nii = score_submission(1, gt, make_zip(tmp_path / "nii.zip", pred_files(preds)))
    files = mha_files(tmp_path / "w", preds, compressed=compressed)
    if kind == "zip":
        sub = make_zip(tmp_path / "mha.zip", files)
    elif kind == "tar.gz":
        sub = make_tar(tmp_path / "mha.tgz", files)
    else:
        sub = tmp_path / "mha"
        sub.mkdir()
        for k, v in files.items():
            (sub / k).write_bytes(v)
    mha = score_submission(1, gt, sub)
    assert mha["cases"] == nii["cases"]
    assert mha["metrics"] == nii["metrics"]


def test_mixed_formats_and_two_files_for_one_case(tmp_path, challenge) -> None:
    gt_root, _, preds = challenge
    gt = load_ground_truth(1, gt_root)
    nii = score_submission(1, gt, make_zip(tmp_path / "nii.zip", pred_files(preds)))
    pid = "CHUM-002"
    p, a = preds[pid]
    mixed = pred_files(preds, **{f"{pid}.nii.gz": None, f"{pid}.mha": mha_bytes(tmp_path, p, a)})
    assert score_submission(1, gt, make_zip(tmp_path / "mixed.zip", mixed))["cases"] == nii["cases"]
    both = pred_files(preds, **{f"{pid}.mha": mha_bytes(tmp_path, p, a)})
    with pytest.raises(SubmissionRejected) as e:
        score_submission(1, gt, make_zip(tmp_path / "both.zip", both))
    [problem] = e.value.problems
    assert problem.case in (f"{pid}.mha", f"{pid}.nii.gz")
    assert f"{pid}.mha" in str(problem) and f"{pid}.nii.gz" in str(problem)
    assert "keep exactly one file per case" in problem.message


def test_mha_ground_truth_scores_as_the_nifti_one(tmp_path, challenge) -> None:
    gt_root, _, preds = challenge
    nii_gt = load_ground_truth(1, gt_root)
    mha_root = tmp_path / "Task 1 mha"
    for pid, case in nii_gt.cases.items():
        img = nib.load(case.path)
        arr = np.asanyarray(img.dataobj)
        folder = mha_root / pid if pid == "CHUM-001" else mha_root  # nested and flat
        mha_from_affine(folder / f"{pid}.mha", arr, img.affine)
    mha_gt = load_ground_truth(1, mha_root)
    assert mha_gt.case_ids == nii_gt.case_ids
    for pid in nii_gt.case_ids:
        assert np.allclose(
            mha_gt.cases[pid].header.affine, nii_gt.cases[pid].header.affine, atol=1e-4
        )
    sub = make_zip(tmp_path / "nii.zip", pred_files(preds))
    expected = score_submission(1, nii_gt, sub)
    got = score_submission(1, mha_gt, sub)
    assert _without_hashes(got)["cases"] == expected["cases"]
    assert got["metrics"] == expected["metrics"]
    prepared = load_ground_truth(1, mha_root, cache_dir=tmp_path / "cache")
    assert score_submission(1, prepared, sub)["cases"] == expected["cases"]


def test_mhd_in_a_folder_scores_and_in_an_archive_is_refused(tmp_path, challenge) -> None:
    gt_root, _, preds = challenge
    gt = load_ground_truth(1, gt_root)
    nii = score_submission(1, gt, make_zip(tmp_path / "nii.zip", pred_files(preds)))
    folder = tmp_path / "mhd"
    for pid, (p, a) in preds.items():
        mha_from_affine(folder / f"{pid}.mhd", p, a, compressed=pid != "MDA-010")
    assert sorted(q.suffix for q in folder.iterdir()).count(".mhd") == 3
    assert score_submission(1, gt, folder)["cases"] == nii["cases"]
    files = {q.name: q.read_bytes() for q in folder.iterdir()}
    with pytest.raises(SubmissionRejected) as e:
        score_submission(1, gt, make_zip(tmp_path / "mhd.zip", files))
    messages = {p.case: p.message for p in e.value.problems}
    assert "cannot be read from an archive" in messages["CHUM-001.mhd"]
    assert "save the label map as one .mha file" in messages["CHUM-001.mhd"]
    assert "a separate voxel data file (of a .mhd header)" in messages["CHUM-001.zraw"]
    assert "a separate voxel data file" in messages["MDA-010.raw"]


def test_mhd_ground_truth_is_hashed_and_copied_with_its_data_file(tmp_path, challenge) -> None:
    gt_root, _, preds = challenge
    nii_gt = load_ground_truth(1, gt_root)
    root = tmp_path / "Task 1 mhd"
    for pid, case in nii_gt.cases.items():
        img = nib.load(case.path)
        mha_from_affine(root / f"{pid}.mhd", np.asanyarray(img.dataobj), img.affine)
    gt = load_ground_truth(1, root)
    sub = make_zip(tmp_path / "nii.zip", pred_files(preds))
    assert score_submission(1, gt, sub)["cases"] == score_submission(1, nii_gt, sub)["cases"]
    # the case's hash covers both files
    mhd, data = root / "CHUM-001.mhd", root / "CHUM-001.zraw"
    both = combine_hashes([(mhd.name, sha256_file(mhd)), (data.name, sha256_file(data))])
    assert gt.cases["CHUM-001"].sha256 == both
    copied = prepare_task1(root, tmp_path / "copy")
    assert (tmp_path / "copy" / "CHUM-001" / data.name).read_bytes() == data.read_bytes()
    assert (tmp_path / "copy" / "CHUM-001" / mhd.name).read_bytes() == mhd.read_bytes()
    assert copied.cases["CHUM-001"].sha256 == both
    assert score_submission(1, copied, sub)["cases"] == score_submission(1, nii_gt, sub)["cases"]


def test_single_mha_upload_is_named_by_sniff() -> None:
    from evaluator.io.sniff import UnsupportedUpload, sniff_type

    with pytest.raises(UnsupportedUpload, match="the upload is a single MetaImage"):
        sniff_type(b"ObjectType = Image\nNDims = 3\n", 1)


def test_label_file_hash_of_a_mhd_covers_its_data_file(tmp_path) -> None:
    from evaluator.io.task1_truth import label_file_sha256

    mhd = mha_from_affine(tmp_path / "A-1.mhd", np.zeros((3, 3, 3), np.uint8), np.eye(4))
    data = tmp_path / "A-1.zraw"
    both = combine_hashes([(mhd.name, sha256_file(mhd)), (data.name, sha256_file(data))])
    assert label_file_sha256(mhd) == both
    assert label_file_sha256(data) == sha256_file(data)


def test_prepared_manifests_written_before_metaimage_still_load(tmp_path, challenge) -> None:
    """Manifests that recorded ``vox_offset`` and ``gzipped`` (no ``compression``) load
    to the same headers."""
    import json

    from evaluator.io.prepared import MANIFEST, load_prepared_task1, prepared_path

    gt_root, _, _ = challenge
    gt = prepare_task1(gt_root, tmp_path / "copy")
    cache = prepared_path(tmp_path / "copy")
    data = json.loads((cache / MANIFEST).read_text())
    for c in data["cases"]:
        h = c["header"]
        h["vox_offset"] = h.pop("data_offset")
        h["gzipped"] = h.pop("compression") == "gzip"
        del h["compressed_size"], h["data_file"]
    (cache / MANIFEST).write_text(json.dumps(data))
    old = load_prepared_task1(cache)
    for pid, case in gt.cases.items():
        a, b = old.cases[pid].header, case.header
        assert (a.shape, a.data_offset, a.compression, a.dtype) == (
            b.shape,
            b.data_offset,
            b.compression,
            b.dtype,
        )
        assert np.array_equal(a.affine, b.affine)
