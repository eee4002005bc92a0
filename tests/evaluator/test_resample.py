"""Nearest-neighbour resampling of a prediction onto the ground truth's grid, checked
voxel for voxel against SimpleITK's resampler (the reference grand-challenge and the
HECKTOR templates use)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from evaluator.pipeline.case import resample_nearest

LPS = np.diag([-1.0, -1.0, 1.0])


def _sitk_image(arr: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A SimpleITK image of ``arr`` (indexed i, j, k as nibabel does) with the RAS
    ``affine``: ITK holds the same grid in LPS, its array indexed k, j, i."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(v) for v in LPS @ affine[:3, 3]])
    img.SetDirection([float(v) for v in (LPS @ affine[:3, :3] / spacing).ravel()])
    return img


def _itk_resample(
    arr: np.ndarray, src: np.ndarray, dst: np.ndarray, shape: tuple[int, int, int]
) -> np.ndarray:
    reference = _sitk_image(np.zeros(shape, np.uint8), dst)
    out = sitk.Resample(
        _sitk_image(arr, src), reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0
    )
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)


def _affine(spacing: tuple[float, float, float], origin: tuple[float, float, float]) -> np.ndarray:
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = origin
    return a


def test_sub_voxel_shift_keeps_the_edge_voxels() -> None:
    # 4x4x4 all GTVp, the prediction's origin 0.3 mm further along x: every ground-truth
    # voxel centre lies within half a voxel of a predicted one, so ITK keeps all 64
    gt_affine = np.eye(4)
    pred_affine = _affine((1.0, 1.0, 1.0), (0.3, 0.0, 0.0))
    arr = np.ones((4, 4, 4), np.uint8)
    out = resample_nearest(arr, pred_affine, gt_affine, (4, 4, 4))
    assert int(out.sum()) == 64
    np.testing.assert_array_equal(out, _itk_resample(arr, pred_affine, gt_affine, (4, 4, 4)))


@pytest.mark.parametrize(
    ("spacing", "origin"),
    [
        ((1.0, 1.0, 1.0), (0.3, 0.0, 0.0)),
        ((1.0, 1.0, 1.0), (-0.3, 0.45, -0.2)),
        ((1.0, 1.0, 1.0), (0.7, -0.7, 0.1)),
        ((0.8, 0.8, 0.8), (0.0, 0.0, 0.0)),
        ((0.8, 1.2, 2.5), (0.15, -0.35, 0.4)),
        ((1.25, 1.25, 1.25), (-0.2, 0.1, 0.3)),
    ],
)
def test_random_labels_equal_simpleitk(
    spacing: tuple[float, float, float], origin: tuple[float, float, float]
) -> None:
    rng = np.random.default_rng(7)
    shape = (9, 8, 7)
    arr = rng.integers(0, 3, size=shape).astype(np.uint8)
    gt_affine = _affine((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    pred_affine = _affine(spacing, origin)
    out = resample_nearest(arr, pred_affine, gt_affine, shape)
    np.testing.assert_array_equal(out, _itk_resample(arr, pred_affine, gt_affine, shape))


def test_rotated_and_flipped_grid_equals_simpleitk() -> None:
    rng = np.random.default_rng(11)
    arr = rng.integers(0, 3, size=(10, 9, 8)).astype(np.uint8)
    t = np.deg2rad(10.0)
    rot = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, -1.0]])
    pred_affine = np.eye(4)
    pred_affine[:3, :3] = rot @ np.diag([0.9, 1.1, 1.0])
    pred_affine[:3, 3] = (0.4, -0.3, 7.2)
    gt_affine = _affine((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    out = resample_nearest(arr, pred_affine, gt_affine, (10, 9, 8))
    np.testing.assert_array_equal(out, _itk_resample(arr, pred_affine, gt_affine, (10, 9, 8)))


def test_points_beyond_half_a_voxel_are_background() -> None:
    # shifted by 0.7 voxel: the last ground-truth slice along x is 0.7 voxel past the
    # prediction's last centre, so it lies outside the prediction and reads 0
    arr = np.ones((4, 4, 4), np.uint8)
    out = resample_nearest(arr, _affine((1.0, 1.0, 1.0), (-0.7, 0.0, 0.0)), np.eye(4), (4, 4, 4))
    assert int(out[3].sum()) == 0
    assert int(out[:3].sum()) == 48
