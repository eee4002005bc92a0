"""A prediction whose data and affine are flipped or transposed together lies on the
CT's voxels in another order: it is told to reorient onto the CT grid (and the fix
the message names, SimpleITK's resample onto the CT, gives the CT-grid mask back);
a really wrong header is still told to take the CT's geometry."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from evaluator.errors import SubmissionRejected
from evaluator.io.nifti import read_header
from evaluator.io.nifti_header import check_geometry
from evaluator.scoring import load_ground_truth, score_submission
from tests.builders import affine_for, make_zip, nifti_bytes

CAP = 10_000_000
SHAPE = (9, 7, 5)
AFFINE = affine_for((0.9, 0.9, 3.0), (-20.0, 14.0, 7.5))
FIX = (
    "the same physical space, stored differently; reorient it onto the CT grid, e.g. "
    "sitk.Resample(pred, ct, sitk.Transform(), sitk.sitkNearestNeighbor) in SimpleITK, or "
    "nibabel.processing.resample_from_to(pred, ct, order=0) (nibabel.as_closest_canonical "
    "when the CT is stored canonical, RAS); do not copy the CT's header into it, which "
    "would mirror the mask"
)


def _mask() -> np.ndarray:
    arr = np.zeros(SHAPE, np.uint8)
    arr[1:4, 2:5, 1:3] = 1  # asymmetric in every axis: a mirror would not match
    arr[6:8, 0:2, 3:5] = 2
    return arr


def _flipped(img: nib.Nifti1Image, axes: tuple[int, ...]) -> nib.Nifti1Image:
    """``img`` with its array reversed along ``axes`` and its affine moved with it (the
    first voxel of each reversed axis is the old last one): the same voxels in space."""
    arr = np.asanyarray(img.dataobj)
    flip = np.eye(4)
    for a in axes:
        arr = np.flip(arr, axis=a)
        flip[a, a], flip[a, 3] = -1.0, arr.shape[a] - 1
    return nib.Nifti1Image(np.ascontiguousarray(arr), img.affine @ flip)


def _header(tmp: Path, name: str, img: nib.Nifti1Image):  # type: ignore[no-untyped-def]
    path = tmp / name
    nib.save(img, path)
    return read_header(path, max_voxels=CAP), path


def test_flipped_data_and_affine_is_told_to_reorient(tmp_path: Path) -> None:
    ct = nib.Nifti1Image(_mask(), AFFINE)
    gt, ct_path = _header(tmp_path, "ct.nii.gz", ct)
    flipped, path = _header(tmp_path, "CHUM-001.nii.gz", _flipped(ct, (0, 2)))
    err = check_geometry(flipped, gt, "CHUM-001.nii.gz", atol=1e-3)
    assert err is not None and err.kind == "geometry"
    assert err.message == (
        "the prediction lies on the CT's voxels in another axis order or direction (axis i "
        "reversed; axis k reversed; shape (9, 7, 5), the CT (9, 7, 5)): " + FIX
    )
    # the fix the message names puts the mask back on the CT grid, voxel for voxel
    fixed = sitk.Resample(
        sitk.ReadImage(str(path)),
        sitk.ReadImage(str(ct_path)),
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
    )
    assert np.array_equal(sitk.GetArrayFromImage(fixed).transpose(2, 1, 0), _mask())


def test_transposed_data_and_affine_is_told_to_reorient(tmp_path: Path) -> None:
    gt, _ = _header(tmp_path, "ct.nii.gz", nib.Nifti1Image(_mask(), AFFINE))
    swapped_affine = AFFINE.copy()
    swapped_affine[:, [0, 1]] = AFFINE[:, [1, 0]]
    img = nib.Nifti1Image(np.ascontiguousarray(_mask().transpose(1, 0, 2)), swapped_affine)
    swapped, _ = _header(tmp_path, "t.nii.gz", img)
    err = check_geometry(swapped, gt, "CHUM-001.nii.gz", atol=1e-3)
    assert err is not None
    assert err.message == (
        "the prediction lies on the CT's voxels in another axis order or direction (axis i "
        "along the CT's axis j; axis j along the CT's axis i; shape (7, 9, 5), the CT "
        "(9, 7, 5)): " + FIX
    )


def test_a_wrong_header_is_still_told_to_take_the_ct_geometry(tmp_path: Path) -> None:
    gt, _ = _header(tmp_path, "ct.nii.gz", nib.Nifti1Image(_mask(), AFFINE))
    # the array on the CT grid, the header mirrored (flip without moving the origin):
    # another physical space, and copying the CT's header is the fix
    wrong = AFFINE.copy()
    wrong[0, 0] = -0.9
    bad, _ = _header(tmp_path, "w.nii.gz", nib.Nifti1Image(_mask(), wrong))
    err = check_geometry(bad, gt, "CHUM-001.nii.gz", atol=1e-3)
    assert err is not None
    assert err.message == (
        "the affine differs from the CT's by up to 1.8 mm (row 0, column 0: found -0.9, "
        "expected 0.9; orientation/spacing), more than the tolerance of 0.001 mm; copy the "
        "CT's header (affine) into the prediction when you save it"
    )
    # a shifted origin: another space too
    shifted = affine_for((0.9, 0.9, 3.0), (-20.0, 14.0, 10.5))
    moved, _ = _header(tmp_path, "m.nii.gz", nib.Nifti1Image(_mask(), shifted))
    err = check_geometry(moved, gt, "CHUM-001.nii.gz", atol=1e-3)
    assert err is not None and "copy the CT's header" in err.message


def test_the_pipeline_tells_the_flipped_case(tmp_path: Path) -> None:
    root = tmp_path / "Task 1"
    root.mkdir()
    nib.save(nib.Nifti1Image(_mask(), AFFINE), root / "CHUM-001.nii.gz")
    img = _flipped(nib.Nifti1Image(_mask(), AFFINE), (1,))
    data = nifti_bytes(np.asanyarray(img.dataobj), img.affine)
    sub = make_zip(tmp_path / "s.zip", {"CHUM-001.nii.gz": data})
    with pytest.raises(SubmissionRejected) as info:
        score_submission(1, load_ground_truth(1, root), sub)
    assert [str(p) for p in info.value.problems] == [
        "CHUM-001.nii.gz: the prediction lies on the CT's voxels in another axis order or "
        "direction (axis j reversed; shape (9, 7, 5), the CT (9, 7, 5)): " + FIX
    ]
