"""The algorithm inputs of a synthetic case, in the released layout::

    inputs/<PatientID>/<PatientID>__CT.nii.gz   int16 HU, on the label's grid
    inputs/<PatientID>/<PatientID>__PT.nii.gz   float32 SUV, on the label's grid
    inputs/<PatientID>/ehr.json                 the clinical record (no PatientID, no target)

PET model (a thresholding algorithm relies on it): the ideal uptake is 1.0 in the
background, 10.0 in the GTVp and 6.0 in the GTVn; each voxel then holds 0.6 times its
own ideal uptake plus 0.4 times the mean over its 3x3x3 neighbourhood (a partial-volume
rim one voxel wide on either side of every boundary: edge and corner voxels of a lesion
fall below its level, voxels just outside rise above the background), plus Gaussian
noise of standard deviation 0.3, drawn on blocks of about 4 mm (PET's resolution; one
voxel on the small grids), rounded to a multiple of 1/64; 0 in the air around the
body. Thresholding at PET >= 8 -> GTVp, 4 <= PET < 8 -> GTVn
therefore finds every lesion but not its exact boundary: on ``synth --small`` (seed 0)
the GTVp DSC is 0.88 on average (0.94 aggregated), the GTVn aggregated DSC 0.92.

CT model: air (-1000 HU) around an elliptic body (40 HU) with a spine (700 HU) behind
the airway level, lesions a little denser (GTVp 65, GTVn 55), noise of 15 HU on the
same blocks inside the body. Deterministic by seed (one stream per case).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from evaluator.synth.cohort import Grid, random_stream
from evaluator.synth.images import nifti_gz_bytes
from evaluator.synth.truth import Case

INPUTS_DIR = "inputs"
CT_SUFFIX = "__CT.nii.gz"
PET_SUFFIX = "__PT.nii.gz"
EHR_NAME = "ehr.json"

PET_UPTAKE = (1.0, 10.0, 6.0)  # background, GTVp, GTVn
PET_NOISE = 0.3
PET_STEPS = 64  # PET values are multiples of 1/64 (a smaller file, same thresholds)
PV_WEIGHT = 0.4  # the share of the 3x3x3 neighbourhood's mean in a voxel's uptake
CT_HU = (40, 65, 55)  # body, GTVp, GTVn
CT_NOISE_HU = 15.0
NOISE_BLOCK_MM = 4.0

_TREATMENTS = ("Radiotherapy", "Chemoradiotherapy", "Surgery + Radiotherapy")


def case_dir(inputs_dir: Path, patient_id: str) -> Path:
    return inputs_dir / patient_id


def _block_noise(rng: np.random.Generator, grid: Grid) -> NDArray[np.float32]:
    """Standard normal noise on blocks of about NOISE_BLOCK_MM (at least one voxel),
    Fortran order (a view into a volume padded to whole blocks)."""
    block = [max(1, round(NOISE_BLOCK_MM / s)) for s in grid.spacing]
    coarse_shape = [math.ceil(n / b) for n, b in zip(grid.shape, block, strict=True)]
    coarse = rng.standard_normal(coarse_shape, dtype=np.float32)
    (bx, by, bz), (cx, cy, cz) = block, coarse_shape
    padded = np.empty((bx * cx, by * cy, bz * cz), dtype=np.float32, order="F")
    # index i = block index * b + offset: in Fortran order the offset runs fastest
    blocks = padded.reshape((bx, cx, by, cy, bz, cz), order="F")
    blocks[...] = coarse[None, :, None, :, None, :]
    nx, ny, nz = grid.shape
    out: NDArray[np.float32] = padded[:nx, :ny, :nz]
    return out


def _lesion_box(vol: NDArray[np.uint8], pad: int) -> tuple[slice, ...] | None:
    """The bounding box of the labelled voxels grown by ``pad`` (clipped), or None."""
    out = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        nz = np.flatnonzero(vol.any(axis=others))
        if nz.size == 0:
            return None
        out.append(slice(max(0, int(nz[0]) - pad), min(vol.shape[axis], int(nz[-1]) + 1 + pad)))
    return tuple(out)


def _body(grid: Grid) -> NDArray[np.bool_]:
    """The body's cross-section (an ellipse around the centre of the plane), x by y."""
    nx, ny, _nz = grid.shape
    x = (np.arange(nx, dtype=np.float32) - nx / 2.0)[:, None] / np.float32(0.42 * nx)
    y = (np.arange(ny, dtype=np.float32) - ny / 2.0)[None, :] / np.float32(0.36 * ny)
    body: NDArray[np.bool_] = x * x + y * y <= 1.0
    return body


def pet_volume(vol: NDArray[np.uint8], grid: Grid, rng: np.random.Generator) -> NDArray[np.float32]:
    """The PET of a case (see the module's docstring), float32, Fortran order."""
    levels = np.asarray(PET_UPTAKE, dtype=np.float32)
    pet = _block_noise(rng, grid)  # transformed in place: one CT-size allocation
    pet *= np.float32(PET_NOISE)
    pet += levels[0]
    box = _lesion_box(vol, 2)
    if box is not None:
        ideal = levels[vol[box]]
        mean = ndimage.uniform_filter(ideal, size=3, mode="nearest")
        blurred = np.float32(1.0 - PV_WEIGHT) * ideal + np.float32(PV_WEIGHT) * mean
        pet[box] += blurred - levels[0]
    np.maximum(pet, np.float32(0.0), out=pet)
    pet *= _body(grid).astype(np.float32)[:, :, None]  # no uptake in the air
    pet *= np.float32(PET_STEPS)
    np.rint(pet, out=pet)
    pet /= np.float32(PET_STEPS)
    out: NDArray[np.float32] = np.asfortranarray(pet)
    return out


def ct_volume(vol: NDArray[np.uint8], grid: Grid, rng: np.random.Generator) -> NDArray[np.int16]:
    """The CT of a case (see the module's docstring), int16 HU, Fortran order."""
    nx, ny, _nz = grid.shape
    body = _body(grid)
    sx = (np.arange(nx, dtype=np.float32) - nx / 2.0)[:, None] / np.float32(0.06 * nx)
    sy = (np.arange(ny, dtype=np.float32) - 0.78 * ny)[None, :] / np.float32(0.06 * ny)
    spine = sx * sx + sy * sy <= 1.0
    plane = np.where(spine, 700.0, np.where(body, CT_HU[0], -1000.0)).astype(np.float32)
    hu = _block_noise(rng, grid)  # transformed in place: one CT-size allocation
    hu *= (np.float32(CT_NOISE_HU) * body)[:, :, None]  # air is uniform
    hu += plane[:, :, None]
    box = _lesion_box(vol, 0)
    if box is not None:  # lesions lie in the body: a little denser than soft tissue
        extra = np.asarray([0, CT_HU[1] - CT_HU[0], CT_HU[2] - CT_HU[0]], dtype=np.float32)
        hu[box] += extra[vol[box]]
    np.rint(hu, out=hu)
    out: NDArray[np.int16] = hu.astype(np.int16, order="F")
    return out


def _nifti(arr: NDArray[Any], grid: Grid) -> nib.Nifti1Image:
    """A NIfTI-1 image of ``arr`` (its own type, no scaling) on ``grid``, qform and sform
    set (code 1), in mm."""
    img = nib.Nifti1Image(arr, grid.affine)  # type: ignore[no-untyped-call, unused-ignore]
    hdr = img.header
    hdr.set_data_dtype(arr.dtype)  # type: ignore[no-untyped-call, unused-ignore]
    hdr.set_xyzt_units("mm", "sec")  # type: ignore[no-untyped-call, unused-ignore]
    img.set_qform(grid.affine, code=1)  # type: ignore[no-untyped-call, unused-ignore]
    img.set_sform(grid.affine, code=1)  # type: ignore[no-untyped-call, unused-ignore]
    return img


def write_case_images(
    case: Case, vol: NDArray[np.uint8], inputs_dir: Path, *, seed: int, index: int
) -> None:
    """The CT and PET of one case, on its label's grid."""
    pid = case.patient_id
    folder = case_dir(inputs_dir, pid)
    folder.mkdir(parents=True)
    rng = random_stream(seed, 60, index)
    ct = ct_volume(vol, case.grid, rng)
    (folder / f"{pid}{CT_SUFFIX}").write_bytes(
        nifti_gz_bytes(_nifti(ct, case.grid), codec="zlib-ng", level=1)
    )
    del ct
    pet = pet_volume(vol, case.grid, rng)
    (folder / f"{pid}{PET_SUFFIX}").write_bytes(
        nifti_gz_bytes(_nifti(pet, case.grid), codec="zlib-ng", level=1)
    )


def ehr_record(case: Case, *, seed: int, index: int) -> dict[str, Any]:
    """The clinical record of one case, keyed like the released clinical table: the
    centre (as the Task 2 table writes it) and covariates drawn per case; no PatientID
    and no target (RFS, relapse, HPV status, T/N stage). Tobacco use is commoner in
    HPV-negative patients, as in the cohort; some fields are unknown (null)."""
    rng = random_stream(seed, 61, index)

    def maybe(value: object) -> object:
        return None if rng.random() < 0.1 else value

    tobacco = int(rng.random() < (0.75 if case.hpv == 0 else 0.35))
    return {
        "CenterID": case.centre,
        "Age": int(np.clip(round(rng.normal(61.0, 9.0)), 25, 95)),
        "Gender": "M" if rng.random() < 0.82 else "F",
        "Tobacco Consumption": maybe(tobacco),
        "Alcohol Consumption": maybe(int(rng.random() < 0.45)),
        "Performance Status": maybe(int(rng.choice(4, p=(0.55, 0.35, 0.08, 0.02)))),
        "Treatment": _TREATMENTS[int(rng.choice(3, p=(0.2, 0.65, 0.15)))],
        "M-stage": "M1" if rng.random() < 0.03 else "M0",
    }


def write_ehr(cases: list[Case], inputs_dir: Path, *, seed: int) -> None:
    """Every case's ``ehr.json`` (after the clinical tables settled each case's HPV
    status)."""
    for index, case in enumerate(cases):
        record = ehr_record(case, seed=seed, index=index)
        path = case_dir(inputs_dir, case.patient_id) / EHR_NAME
        path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
