"""NIfTI geometry read the way ITK reads it (SimpleITK is the reference): which of the
qform and sform gives the affine, for every pair of codes, so that a NIfTI and a
MetaImage of one image compare in one frame."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from evaluator.errors import FormatError
from evaluator.io.nifti import read_header

CAP = 10_000_000
F = np.diag([-1.0, -1.0, 1.0])


def _rot(degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    return np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])


ZOOMS = (0.9, 0.8, 2.5)
QFORM = np.eye(4)
QFORM[:3, :3] = _rot(10) @ np.diag([1.0, 1.0, -1.0]) @ np.diag(ZOOMS)  # 10 degrees, z flipped
QFORM[:3, 3] = (10.0, 20.0, 30.0)
SFORM = np.eye(4)
SFORM[:3, :3] = _rot(-20) @ np.diag(ZOOMS)
SFORM[:3, 3] = (-5.0, 7.0, 11.5)


def sitk_ras(path) -> np.ndarray:
    img = sitk.ReadImage(str(path))
    a = np.eye(4)
    a[:3, :3] = F @ np.array(img.GetDirection()).reshape(3, 3) @ np.diag(img.GetSpacing())
    a[:3, 3] = F @ np.array(img.GetOrigin())
    return a


def nifti(path, qform_code: int, sform_code: int, *, sform=SFORM, zooms=None, nifti2=False):
    cls = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    img = cls(np.zeros((5, 4, 3), np.uint8), None)
    img.set_qform(QFORM, code=qform_code)
    img.set_sform(sform, code=sform_code)
    if zooms is not None:
        img.header.set_zooms(zooms)
    nib.save(img, path)
    return path


@pytest.mark.parametrize("nifti2", [False, True])
@pytest.mark.parametrize("qform_code", [0, 1, 2])
@pytest.mark.parametrize("sform_code", [0, 1, 2])
def test_affine_is_simpleitks_for_every_pair_of_codes(tmp_path, qform_code, sform_code, nifti2):
    p = nifti(tmp_path / "x.nii.gz", qform_code, sform_code, nifti2=nifti2)
    ours = read_header(p, max_voxels=CAP).affine
    if not nifti2:  # SimpleITK 2.5 does not read NIfTI-2: the rule it follows is checked below
        assert np.allclose(ours, sitk_ras(p), rtol=0, atol=1e-5)
    # the two forms differ by centimetres, so the test tells which one was taken
    expected = SFORM if sform_code == 1 or (qform_code == 0 and sform_code > 0) else QFORM
    if qform_code == 0 and sform_code == 0:  # ITK's default: LPS identity, origin 0
        expected = np.diag([-ZOOMS[0], -ZOOMS[1], ZOOMS[2], 1.0])
    assert np.allclose(ours, expected, rtol=0, atol=1e-5)


def test_nibabel_and_itk_differ_where_the_rule_says(tmp_path) -> None:
    """qform_code=1, sform_code=2: nibabel takes the sform, ITK (and the scorer) the qform."""
    p = nifti(tmp_path / "x.nii.gz", 1, 2)
    assert np.allclose(nib.load(p).affine, SFORM, atol=1e-5)
    assert np.allclose(read_header(p, max_voxels=CAP).affine, QFORM, atol=1e-5)


def test_spacing_comes_from_pixdim_as_in_itk(tmp_path) -> None:
    """An sform whose column norms are not pixdim: ITK keeps the sform's rotation and
    origin with pixdim's spacing."""
    p = nifti(tmp_path / "x.nii.gz", 0, 1, zooms=(1.0, 1.0, 1.0))
    assert np.allclose(read_header(p, max_voxels=CAP).affine, sitk_ras(p), rtol=0, atol=1e-5)


def test_shearing_sform_falls_back_to_the_qform_or_is_refused(tmp_path) -> None:
    sheared = SFORM.copy()
    sheared[0, 1] += 0.3
    p = nifti(tmp_path / "q.nii.gz", 1, 1, sform=sheared)
    assert np.allclose(read_header(p, max_voxels=CAP).affine, sitk_ras(p), rtol=0, atol=1e-5)
    p = nifti(tmp_path / "s.nii.gz", 0, 1, sform=sheared)
    with pytest.raises(RuntimeError, match="orthonormal"):
        sitk.ReadImage(str(p))
    with pytest.raises(FormatError, match="the sform is not a rotation with spacing"):
        read_header(p, max_voxels=CAP)


@pytest.mark.parametrize("unit", ["unknown", "mm", "meter", "micron"])
@pytest.mark.parametrize("codes", [(0, 2), (1, 1), (1, 0)])
def test_spatial_units_are_converted_to_millimetres_as_in_itk(tmp_path, unit, codes) -> None:
    img = nib.Nifti1Image(np.zeros((5, 4, 3), np.uint8), None)
    img.set_qform(QFORM, code=codes[0])
    img.set_sform(QFORM, code=codes[1])
    img.header.set_xyzt_units(unit)
    p = tmp_path / "u.nii.gz"
    nib.save(img, p)
    header = read_header(p, max_voxels=CAP)
    assert np.allclose(header.affine, sitk_ras(p), rtol=1e-6, atol=1e-5)
    assert header.zooms == pytest.approx(sitk.ReadImage(str(p)).GetSpacing(), rel=1e-6)
