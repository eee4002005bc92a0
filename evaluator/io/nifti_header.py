"""A label map's header as the readers use it (:class:`ImageHeader`, NIfTI or
MetaImage); a NIfTI header parsed by nibabel and checked before any voxel is read; a
prediction's grid checked against the ground truth's.

Geometry is read the way ITK (SimpleITK, Grand Challenge) reads it, so a NIfTI and a
MetaImage of one image agree: spacing from ``pixdim``; rotation and origin from the
sform when its code is 1 (scanner) or when the qform code is 0, else from the qform;
with both codes 0, ITK's default (no rotation, origin 0, LPS axes); metres and
microns (``xyzt_units``) converted to millimetres. nibabel prefers
any sform with a non-zero code instead: with ``qform_code=1, sform_code=2`` the two
differ, and ITK's choice is taken.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Literal

import nibabel as nib
import numpy as np
import numpy.typing as npt

from evaluator.errors import FormatError, GeometryError, LimitError, SubmissionError

MAX_VOX_OFFSET = 1 << 20  # header and extensions: where the voxel data may start

Compression = Literal["none", "gzip", "zlib"]
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class ImageHeader:
    """A label map's header, NIfTI or MetaImage, as the voxel readers use it.

    ``shape`` is in array index order ``(i, j, k)``, ``i`` fastest on disk (NIfTI's
    Fortran order, a MetaImage's ``DimSize``); ``affine`` maps ``(i, j, k, 1)`` to RAS
    millimetres; ``dtype`` is the on-disk type (byte order included); the voxel data
    starts ``data_offset`` bytes into the (decompressed) file, or into the separate data
    file ``data_file`` of a .mhd; ``compression`` says how the file is stored (NIfTI:
    gzip or none; MetaImage: zlib or none, ``compressed_size`` its declared
    ``CompressedDataSize``)."""

    shape: tuple[int, int, int]
    affine: npt.NDArray[np.float64]
    zooms: tuple[float, float, float]
    dtype: np.dtype
    data_offset: int
    slope: float | None
    inter: float | None
    compression: Compression
    compressed_size: int | None = None
    data_file: str | None = None

    @property
    def vox_offset(self) -> int:
        return self.data_offset

    @property
    def gzipped(self) -> bool:
        return self.compression == "gzip"

    @property
    def scaled(self) -> bool:
        return self.slope is not None and (self.slope != 1.0 or (self.inter or 0.0) != 0.0)

    @property
    def voxel_volume_mm3(self) -> float:
        z = self.zooms
        return float(z[0]) * float(z[1]) * float(z[2])


def ras_affine(
    direction: npt.NDArray[np.float64],
    spacing: npt.NDArray[np.float64],
    origin: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """The RAS affine of an ITK (LPS) geometry: ``F @ direction @ diag(spacing)`` and
    ``F @ origin`` with ``F = diag(-1, -1, 1)``."""
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ direction @ np.diag(spacing)
    affine[:3, 3] = LPS_TO_RAS @ origin
    return affine


def check_voxel_count(shape: tuple[int, int, int], name: str, *, max_voxels: int) -> None:
    nvox = shape[0] * shape[1] * shape[2]  # Python integers: no overflow
    if nvox > max_voxels:
        raise LimitError(
            name,
            f"the header declares {shape[0]}x{shape[1]}x{shape[2]} = {nvox:,} voxels, over "
            f"the limit of {max_voxels:,}; predictions must be on the CT grid",
        )


def parse_header(head: bytes, name: str, *, max_voxels: int, gzipped: bool) -> ImageHeader:
    """The header in the first (decompressed) bytes ``head`` of a file, checked: a
    single-file NIfTI-1 or NIfTI-2 holding one 3-D integer or float image of at most
    ``max_voxels`` voxels, a finite affine, and voxel data within MAX_VOX_OFFSET."""
    fields = _read_fields(_header_class(head, name), head, name)
    shape = _checked_shape(fields.shape, name)
    dtype = fields.dtype
    if dtype.kind not in "uif" or dtype.fields is not None:
        raise FormatError(
            name,
            f"the voxel type is {dtype} ; an integer label map (uint8 recommended) is expected",
        )
    check_voxel_count(shape, name, max_voxels=max_voxels)
    affine = _itk_affine(fields, name)
    if not np.all(np.isfinite(affine)):
        raise FormatError(name, "the affine holds NaN or infinite values; re-save the label map")
    if fields.vox_offset > MAX_VOX_OFFSET:
        raise FormatError(
            name,
            f"the header puts the voxel data at byte {fields.vox_offset:,}, beyond the "
            f"{MAX_VOX_OFFSET:,} bytes allowed for the header and its extensions; save "
            "the label map without header extensions",
        )
    zooms = tuple(z * fields.unit_mm for z in fields.zooms)
    slope, inter = fields.slope, fields.inter
    return ImageHeader(
        shape=shape,
        affine=affine,
        zooms=(zooms[0], zooms[1], zooms[2]),
        dtype=dtype,
        data_offset=fields.vox_offset,
        slope=None if slope is None else float(slope),
        inter=None if inter is None else float(inter),
        compression="gzip" if gzipped else "none",
    )


def _header_class(head: bytes, name: str) -> type[nib.Nifti1Header]:
    """NIfTI-1 or NIfTI-2, from the header size field (either byte order); the magic
    must name a single-file image."""
    if len(head) < 348:
        raise FormatError(
            name,
            f"the file is only {len(head)} bytes after decompression, too short for a "
            "NIfTI header (348 bytes); upload the complete .nii.gz file",
        )
    sizeof = int.from_bytes(head[:4], "little")
    if sizeof not in (348, 540):
        sizeof = int.from_bytes(head[:4], "big")
    hdr_class: type[nib.Nifti1Header]
    if sizeof == 348:
        hdr_class, magic_at = nib.Nifti1Header, slice(344, 348)
    elif sizeof == 540:
        hdr_class, magic_at = nib.Nifti2Header, slice(4, 12)
    else:
        raise FormatError(
            name,
            "not a NIfTI file (the header size field is neither 348 nor 540); save the "
            "label map as NIfTI (.nii.gz)",
        )
    magic = head[magic_at]
    if not (magic.startswith(b"n+1") or magic.startswith(b"n+2")):
        raise FormatError(
            name,
            f"wrong NIfTI magic {magic.rstrip(bytes(1))!r} (expected 'n+1', a single-file "
            "NIfTI); save the label map as one .nii.gz file, not a .hdr/.img pair",
        )
    return hdr_class


@dataclass(frozen=True)
class _Fields:
    """What nibabel reads from a header, not yet checked."""

    shape: tuple[int, ...]
    dtype: np.dtype
    affine: npt.NDArray[np.float64]  # nibabel's best affine
    zooms: tuple[float, ...]
    slope: Any
    inter: Any
    vox_offset: int
    qform: npt.NDArray[np.float64]
    sform: npt.NDArray[np.float64]
    qform_code: int
    sform_code: int
    unit_mm: float  # millimetres per spatial unit (xyzt_units): ITK converts to mm


_UNIT_MM = {"meter": 1000.0, "mm": 1.0, "micron": 0.001}


def _read_fields(hdr_class: type[nib.Nifti1Header], head: bytes, name: str) -> _Fields:
    try:
        hdr = hdr_class.from_fileobj(io.BytesIO(head), check=True)  # type: ignore[no-untyped-call, unused-ignore]
        shape = tuple(int(s) for s in hdr.get_data_shape())
        dtype = hdr.get_data_dtype()
        affine = np.asarray(hdr.get_best_affine(), dtype=np.float64)
        zooms = tuple(float(z) for z in hdr.get_zooms())
        slope, inter = hdr.get_slope_inter()
        vox_offset = int(hdr.get_data_offset())
        qform = np.asarray(hdr.get_qform(), dtype=np.float64)
        sform = np.asarray(hdr.get_sform(), dtype=np.float64)
        codes = int(hdr["qform_code"]), int(hdr["sform_code"])
        unit_mm = _UNIT_MM.get(str(hdr.get_xyzt_units()[0]), 1.0)
    except Exception as exc:  # nibabel raises several types for bad headers
        raise FormatError(
            name, f"the NIfTI header is invalid ({exc}); re-save the label map"
        ) from None
    return _Fields(
        shape,
        dtype,
        affine,
        zooms,
        slope,
        inter,
        vox_offset,
        qform,
        sform,
        codes[0],
        codes[1],
        unit_mm,
    )


_ORTHO_ATOL = 1e-4  # the rotation of an sform ITK accepts: orthonormal to float32 precision


def _itk_affine(fields: _Fields, name: str) -> npt.NDArray[np.float64]:
    """The affine ITK reads, in millimetres (metres and microns converted, as ITK does)."""
    affine = _itk_form(fields, name)
    affine[:3, :] *= fields.unit_mm
    return affine


def _itk_form(fields: _Fields, name: str) -> npt.NDArray[np.float64]:
    """The affine ITK reads in the file's units: the sform's rotation and origin when
    its code is 1 or the qform's code is 0 (and it is a rotation: else the qform, when
    there is one), else the qform; spacing from ``pixdim`` (the qform is built from it
    already); with no form at all ITK's default: identity LPS direction, origin 0."""
    zooms = np.abs(np.asarray(fields.zooms[:3], dtype=np.float64))
    q_code, s_code = fields.qform_code, fields.sform_code
    if s_code > 0 and (s_code == 1 or q_code == 0):
        m = fields.sform[:3, :3]
        norms = np.linalg.norm(m, axis=0)
        if np.all(np.isfinite(m)) and np.all(norms > 0):
            direction = m / norms
            if np.allclose(direction.T @ direction, np.eye(3), rtol=0.0, atol=_ORTHO_ATOL):
                affine = np.eye(4)
                affine[:3, :3] = direction @ np.diag(zooms)
                affine[:3, 3] = fields.sform[:3, 3]
                return affine
        if q_code == 0:
            raise FormatError(
                name,
                "the sform is not a rotation with spacing (it shears, is singular or holds "
                "NaN) and there is no qform; ITK cannot read this geometry: save the label "
                "map with the CT's header",
            )
    if q_code > 0:
        return fields.qform.copy()
    return ras_affine(np.eye(3), zooms, np.zeros(3))


def _checked_shape(shape: tuple[int, ...], name: str) -> tuple[int, int, int]:
    """The shape of a 3-D image (trailing axes of length 1 dropped), none empty."""
    while len(shape) > 3 and shape[-1] == 1:  # (X, Y, Z, 1) is still a 3-D image
        shape = shape[:-1]
    if len(shape) != 3:
        raise FormatError(
            name,
            f"the image is {len(shape)}-D with shape {shape}; a 3-D label map on the CT "
            "grid is expected (one channel, no time axis)",
        )
    if min(shape) < 1:
        raise FormatError(name, f"the image has an empty dimension, shape {shape}")
    return (shape[0], shape[1], shape[2])


_AXES = "ijk"
REORIENT_FIX = (
    "reorient it onto the CT grid, e.g. sitk.Resample(pred, ct, sitk.Transform(), "
    "sitk.sitkNearestNeighbor) in SimpleITK, or nibabel.processing.resample_from_to(pred, "
    "ct, order=0) (nibabel.as_closest_canonical when the CT is stored canonical, RAS); do "
    "not copy the CT's header into it, which would mirror the mask"
)


def reorientation(
    found: ImageHeader, expected: ImageHeader, *, atol: float
) -> tuple[tuple[int, int], ...] | None:
    """How ``found``'s array axes lie on ``expected``'s when both grids hold the same
    voxel centres in another axis order or direction: per axis of ``found`` the CT axis
    it runs along and its direction (+1 or -1); None when the grids differ in space
    (or are the same grid)."""
    try:
        m = np.linalg.solve(expected.affine, found.affine)
    except np.linalg.LinAlgError:
        return None
    rot = np.rint(m[:3, :3])
    if not (np.all(np.abs(rot).sum(axis=0) == 1) and np.all(np.abs(rot).sum(axis=1) == 1)):
        return None  # not a signed permutation of the axes
    axes: list[tuple[int, int]] = []
    offset = np.zeros(3)
    for a in range(3):
        b = int(np.flatnonzero(rot[:, a])[0])
        sign = int(rot[b, a])
        if found.shape[a] != expected.shape[b]:
            return None
        axes.append((b, sign))
        offset[b] = 0.0 if sign > 0 else expected.shape[b] - 1
    exact = np.eye(4)
    exact[:3, :3], exact[:3, 3] = rot, offset
    if not np.allclose(found.affine, expected.affine @ exact, rtol=0.0, atol=atol):
        return None
    if all(b == a and sign > 0 for a, (b, sign) in enumerate(axes)):
        return None
    return tuple(axes)


def _describe_axes(axes: tuple[tuple[int, int], ...]) -> str:
    parts = []
    for a, (b, sign) in enumerate(axes):
        if b == a and sign > 0:
            continue
        if b == a:
            parts.append(f"axis {_AXES[a]} reversed")
        else:
            flipped = ", reversed" if sign < 0 else ""
            parts.append(f"axis {_AXES[a]} along the CT's axis {_AXES[b]}{flipped}")
    return "; ".join(parts)


def check_geometry(
    found: ImageHeader, expected: ImageHeader, name: str, *, atol: float
) -> SubmissionError | None:
    """Shape and affine of a prediction against the ground truth's. A grid holding the
    CT's voxel centres in another axis order or direction (data and affine flipped or
    transposed together) is told to reorient, not to copy the CT's header."""
    if found.shape == expected.shape and np.allclose(
        found.affine, expected.affine, rtol=0.0, atol=atol
    ):
        return None
    axes = reorientation(found, expected, atol=atol)
    if axes is not None:
        return GeometryError(
            name,
            f"the prediction lies on the CT's voxels in another axis order or direction "
            f"({_describe_axes(axes)}; shape {found.shape}, the CT {expected.shape}): the "
            f"same physical space, stored differently; {REORIENT_FIX}",
        )
    if found.shape != expected.shape:
        return GeometryError(
            name,
            f"shape {found.shape} does not match the CT {expected.shape}; predictions must "
            "be on the CT grid, they are not resampled",
        )
    diff = np.abs(found.affine - expected.affine)
    if not np.allclose(found.affine, expected.affine, rtol=0.0, atol=atol):
        i, j = np.unravel_index(int(np.argmax(diff)), diff.shape)
        what = "origin" if j == 3 else "orientation/spacing"
        return GeometryError(
            name,
            f"the affine differs from the CT's by up to {diff.max():.4g} mm "
            f"(row {i}, column {j}: found {found.affine[i, j]:.6g}, expected "
            f"{expected.affine[i, j]:.6g}; {what}), more than the tolerance of {atol:g} mm; "
            "copy the CT's header (affine) into the prediction when you save it",
        )
    return None
