"""Reading NIfTI label maps: safely, exactly as nibabel would, and fast.

nibabel parses the header (dtype, shape, scaling, affine: its semantics are the
reference). The voxel data is decoded here in one shot with zlib-ng, about 4x
faster than nibabel's default gzip reader, into a buffer whose size the header
declared, so a file can never make us allocate more than it announced and the caps
allow. Tests check that the arrays equal ``np.asanyarray(nib.load(f).dataobj)``.

Checked before the voxel data is allocated: the magic, the number of dimensions,
the data type, and the declared voxel count against ``max_voxels``.
Checked after: truncation, and that the values are labels 0, 1, 2.
"""

from __future__ import annotations

import io
import types
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt

from evaluator.errors import FormatError, LabelError, LimitError, SubmissionError

_zlib: types.ModuleType
try:  # zlib-ng is a dependency; stay correct (just slower) without it
    from zlib_ng import zlib_ng as _zlib
except ImportError:  # pragma: no cover
    _zlib = zlib
_ZERRORS: tuple[type[BaseException], ...] = (zlib.error, _zlib.error)

LABELS = (0, 1, 2)
_HEAD = 544  # enough for a NIfTI-2 header (540 bytes) and the extension flag
_STEP = 256 * 1024  # inflate step
_TRAILING_CHECK = 1 << 20  # bytes inflated after the voxel data to reach the gzip CRC

Bbox = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class NiftiHeader:
    shape: tuple[int, int, int]
    affine: npt.NDArray[np.float64]
    zooms: tuple[float, float, float]
    dtype: np.dtype
    vox_offset: int
    slope: float | None
    inter: float | None
    gzipped: bool

    @property
    def voxel_volume_mm3(self) -> float:
        z = self.zooms
        return float(z[0]) * float(z[1]) * float(z[2])


@dataclass(frozen=True)
class LabelMap:
    """A validated label map: uint8 values in {0,1,2}, Fortran order as on disk."""

    array: npt.NDArray[np.uint8]
    header: NiftiHeader
    bbox: Bbox | None  # bounding box of the non-zero voxels, half-open; None if empty

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.header.shape

    @property
    def affine(self) -> npt.NDArray[np.float64]:
        return self.header.affine


def _fail(name: str, msg: str) -> FormatError:
    return FormatError(name, msg)


def _parse_header(head: bytes, name: str, *, max_voxels: int, gzipped: bool) -> NiftiHeader:
    if len(head) < 348:
        raise _fail(
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
        raise _fail(
            name,
            "not a NIfTI file (the header size field is neither 348 nor 540); save the "
            "label map as NIfTI (.nii.gz)",
        )
    magic = head[magic_at]
    if not (magic.startswith(b"n+1") or magic.startswith(b"n+2")):
        raise _fail(
            name,
            f"wrong NIfTI magic {magic.rstrip(bytes(1))!r} (expected 'n+1', a single-file "
            "NIfTI); save the label map as one .nii.gz file, not a .hdr/.img pair",
        )
    try:
        hdr = hdr_class.from_fileobj(io.BytesIO(head), check=True)
        shape = tuple(int(s) for s in hdr.get_data_shape())
        dtype = hdr.get_data_dtype()
        affine = np.asarray(hdr.get_best_affine(), dtype=np.float64)
        zooms = tuple(float(z) for z in hdr.get_zooms())
        slope, inter = hdr.get_slope_inter()
        vox_offset = int(hdr.get_data_offset())
    except Exception as exc:  # nibabel raises several types for bad headers
        raise _fail(name, f"the NIfTI header is invalid ({exc}); re-save the label map") from None
    while len(shape) > 3 and shape[-1] == 1:  # (X, Y, Z, 1) is still a 3-D image
        shape = shape[:-1]
    if len(shape) != 3:
        raise _fail(
            name,
            f"the image is {len(shape)}-D with shape {shape}; a 3-D label map on the CT "
            "grid is expected (one channel, no time axis)",
        )
    if min(shape) < 1:
        raise _fail(name, f"the image has an empty dimension, shape {shape}")
    if dtype.kind not in "uif" or dtype.fields is not None:
        raise _fail(
            name,
            f"the voxel type is {dtype} ; an integer label map (uint8 recommended) is expected",
        )
    nvox = int(np.prod(shape, dtype=np.int64))
    if nvox > max_voxels:
        raise LimitError(
            name,
            f"the header declares {shape[0]}x{shape[1]}x{shape[2]} = {nvox:,} voxels, over "
            f"the limit of {max_voxels:,}; predictions must be on the CT grid",
        )
    if not np.all(np.isfinite(affine)):
        raise _fail(name, "the affine holds NaN or infinite values; re-save the label map")
    return NiftiHeader(
        shape=(shape[0], shape[1], shape[2]),
        affine=affine,
        zooms=(zooms[0], zooms[1], zooms[2]),
        dtype=dtype,
        vox_offset=vox_offset,
        slope=None if slope is None else float(slope),
        inter=None if inter is None else float(inter),
        gzipped=gzipped,
    )


def _decompress(raw: bytes, limit: int, name: str) -> bytes:
    """Decode a gzip stream (also multi-member) up to ``limit`` bytes."""
    parts: list[bytes] = []
    got = 0
    data = raw
    try:
        while data and got < limit:
            d = _zlib.decompressobj(wbits=31)
            out = d.decompress(data, limit - got)
            parts.append(out)
            got += len(out)
            if not d.eof:
                break  # either the limit was reached, or the stream is truncated
            data = d.unused_data
    except _ZERRORS as exc:
        raise _fail(
            name,
            f"the gzip data is corrupt ({exc}); re-create the .nii.gz file and upload it again",
        ) from None
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_header(path: Path, *, max_voxels: int, name: str | None = None) -> NiftiHeader:
    """Parse only the header (decompressing at most a few hundred bytes)."""
    name = name or path.name
    with open(path, "rb") as f:
        start = f.read(2)
        f.seek(0)
        if start == b"\x1f\x8b":
            d = _zlib.decompressobj(wbits=31)
            head = b""
            try:
                while len(head) < _HEAD:
                    chunk = f.read(16384)
                    if not chunk:
                        break
                    head += d.decompress(chunk, _HEAD - len(head))
                    if d.eof:
                        break
            except _ZERRORS as exc:
                raise _fail(
                    name, f"the gzip data is corrupt ({exc}); re-create the .nii.gz file"
                ) from None
            return _parse_header(head, name, max_voxels=max_voxels, gzipped=True)
        return _parse_header(f.read(_HEAD), name, max_voxels=max_voxels, gzipped=False)


def _inflate_voxels(raw: bytes, offset: int, nbytes: int, name: str) -> npt.NDArray[np.uint8]:
    """Decode the voxel bytes of a gzip stream (also multi-member) into a new array.

    Decoding in 256 KiB steps into one preallocated NumPy buffer is about twice as
    fast as a one-shot decompress: a fresh 50-80 MB ``bytes`` object costs more in
    page faults than the inflation itself, while NumPy's large buffers get huge pages.
    The header bytes before ``offset`` are skipped; at most ``offset + nbytes`` bytes
    are ever produced, whatever the stream holds.
    """
    out = np.empty(nbytes, dtype=np.uint8)
    pos = -offset  # where the next decoded byte goes in ``out`` (negative: header)
    data = raw
    d = _zlib.decompressobj(wbits=31)
    try:
        while pos < nbytes:
            chunk = d.decompress(data, min(_STEP, nbytes - pos))
            if chunk:
                n = len(chunk)
                skip = -pos if pos < 0 else 0
                if skip < n:
                    out[pos + skip : pos + n] = np.frombuffer(chunk, dtype=np.uint8)[skip:]
                pos += n
            data = d.unconsumed_tail
            if d.eof:
                data = d.unused_data
                if not data or pos >= nbytes:
                    break
                d = _zlib.decompressobj(wbits=31)  # next member of a multi-member file
            elif not chunk and not data:
                break
        # read on to the end of the gzip member, where zlib checks its CRC-32 (a corrupt
        # file can inflate to plausible labels), unless the member goes on for more than
        # _TRAILING_CHECK bytes after the voxel data
        budget = _TRAILING_CHECK
        while pos >= nbytes and not d.eof and budget > 0:
            extra = d.decompress(data, min(_STEP, budget))
            budget -= len(extra)
            data = d.unconsumed_tail
            if not extra and not data:
                break
    except _ZERRORS as exc:
        raise _fail(
            name,
            f"the gzip data is corrupt ({exc}); re-create the .nii.gz file and upload it again",
        ) from None
    if pos < nbytes:
        raise _truncated(name, nbytes, max(0, pos))
    return out


def _truncated(name: str, need: int, got: int) -> FormatError:
    return _fail(
        name,
        f"the file is truncated: the header declares {need:,} bytes of voxel data, the "
        f"file holds {got:,}; upload the complete file",
    )


def decode_voxels(raw: bytes, header: NiftiHeader, name: str) -> npt.NDArray[Any]:
    """The voxel array (Fortran order, as stored), from the file's bytes."""
    nvox = header.shape[0] * header.shape[1] * header.shape[2]
    nbytes = nvox * header.dtype.itemsize
    if header.gzipped:
        buf = _inflate_voxels(raw, header.vox_offset, nbytes, name)
        arr = buf.view(header.dtype)
    else:
        if len(raw) < header.vox_offset + nbytes:
            raise _truncated(name, nbytes, max(0, len(raw) - header.vox_offset))
        arr = np.frombuffer(raw, dtype=header.dtype, count=nvox, offset=header.vox_offset)
    return arr.reshape(header.shape, order="F")


def foreground_bbox(arr: npt.NDArray[Any]) -> Bbox | None:
    """Half-open bounding box of the non-zero voxels, or None if there are none.

    Works on the last axis first through a C-ordered view of the Fortran array
    (per-slice reductions on 8-byte words), then on the slab that holds voxels.
    """
    t = arr.T  # C-contiguous when arr is Fortran-contiguous
    if not t.flags.c_contiguous:
        t = np.ascontiguousarray(t)
    nz = t.shape[0]
    rows = t.reshape(nz, -1)
    width = rows.shape[1] * rows.itemsize
    if width % 8 == 0 and rows.flags.c_contiguous:
        occupied = rows.view(np.uint64).max(axis=1) != 0  # max is SIMD; any() is not
    else:
        occupied = rows.max(axis=1) != 0
    zs = np.flatnonzero(occupied)
    if zs.size == 0:
        return None
    z0, z1 = int(zs[0]), int(zs[-1]) + 1
    plane = np.any(t[z0:z1], axis=0)  # (ny, nx)
    ys = np.flatnonzero(plane.any(axis=1))
    xs = np.flatnonzero(plane.any(axis=0))
    return ((int(xs[0]), int(xs[-1]) + 1), (int(ys[0]), int(ys[-1]) + 1), (z0, z1))


def crop(arr: npt.NDArray[Any], bbox: Bbox) -> npt.NDArray[Any]:
    (x0, x1), (y0, y1), (z0, z1) = bbox
    return arr[x0:x1, y0:y1, z0:z1]


def _label_error(name: str, values: npt.NDArray[Any]) -> LabelError:
    bad = [v for v in np.unique(values).tolist() if v not in LABELS]
    shown = ", ".join(f"{v:g}" for v in bad[:10]) + (" ..." if len(bad) > 10 else "")
    return LabelError(
        name,
        f"holds label value(s) {shown}; only 0 (background), 1 (GTVp) and 2 (GTVn) "
        "are allowed. Map other classes to these before exporting",
    )


def to_labels(
    arr: npt.NDArray[Any], header: NiftiHeader, name: str
) -> tuple[npt.NDArray[np.uint8], Bbox | None]:
    """Validate the values and return a uint8 label map (Fortran order) and its bbox."""
    scaled = header.slope is not None and (header.slope != 1.0 or (header.inter or 0.0) != 0.0)
    if scaled:
        arr = arr.astype(np.float64) * float(header.slope or 1.0) + (header.inter or 0.0)
    if arr.dtype == np.uint8:
        bbox = foreground_bbox(arr)
        if bbox is not None:
            c = crop(arr, bbox)
            if int(c.max()) > 2:
                raise _label_error(name, c[c > 2])
        return arr, bbox
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            raise _fail(
                name,
                "the image holds NaN or infinite values; a label map holds only the "
                "integers 0, 1 and 2",
            )
        frac = arr != np.floor(arr)
        if frac.any():
            examples = ", ".join(f"{v:g}" for v in np.unique(arr[frac])[:5].tolist())
            raise _fail(
                name,
                f"the image is of type float and holds non-integer values ({examples}); "
                "a label map holds only 0, 1 and 2: save it as uint8 after thresholding",
            )
    lo, hi = arr.min(), arr.max()
    if lo < 0 or hi > 2:
        raise _label_error(name, arr[(arr < 0) | (arr > 2)])
    out = np.asfortranarray(arr.astype(np.uint8))
    return out, foreground_bbox(out)


def read_label_map(path: Path, *, max_voxels: int, name: str | None = None) -> LabelMap:
    """Read and validate one label map. Raises a :class:`SubmissionError` subclass."""
    name = name or path.name
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _fail(name, f"the file cannot be read ({exc.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        head = _decompress(raw, _HEAD, name)
        header = _parse_header(head, name, max_voxels=max_voxels, gzipped=True)
    else:
        header = _parse_header(raw[:_HEAD], name, max_voxels=max_voxels, gzipped=False)
    arr = decode_voxels(raw, header, name)
    labels, bbox = to_labels(arr, header, name)
    return LabelMap(labels, header, bbox)


@dataclass(frozen=True)
class LabelCrop:
    """A validated label map known by its foreground: the bounding box of the
    non-zero voxels and the uint8 crop inside it (Fortran order); None when empty."""

    header: NiftiHeader
    bbox: Bbox | None
    crop: npt.NDArray[np.uint8] | None

    def full(self) -> npt.NDArray[np.uint8]:
        out = np.zeros(self.header.shape, dtype=np.uint8, order="F")
        if self.bbox is not None and self.crop is not None:
            (x0, x1), (y0, y1), (z0, z1) = self.bbox
            out[x0:x1, y0:y1, z0:z1] = self.crop
        return out


class _GzipStream:
    """Sequential reads of exact lengths from a (multi-member) gzip stream."""

    def __init__(self, raw: bytes, name: str) -> None:
        self.name = name
        self.data = raw
        self.d = _zlib.decompressobj(wbits=31)
        self.produced = 0

    def read(self, n: int) -> bytes:
        parts: list[bytes] = []
        need = n
        try:
            while need > 0:
                out = self.d.decompress(self.data, need)
                if out:
                    parts.append(out)
                    need -= len(out)
                self.data = self.d.unconsumed_tail
                if self.d.eof:
                    self.data = self.d.unused_data
                    if not self.data:
                        break
                    self.d = _zlib.decompressobj(wbits=31)  # next member
                elif not out and not self.data:
                    break
        except _ZERRORS as exc:
            raise self._corrupt(exc) from None
        self.produced += n - need
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _corrupt(self, exc: BaseException) -> FormatError:
        return _fail(
            self.name,
            f"the gzip data is corrupt ({exc}); re-create the .nii.gz file and upload it again",
        )

    def finish(self) -> None:
        """Read on to the end of the member, where zlib checks its CRC-32 (a corrupt
        file can inflate to plausible labels), within _TRAILING_CHECK bytes."""
        budget = _TRAILING_CHECK
        try:
            while not self.d.eof and budget > 0:
                extra = self.d.decompress(self.data, min(_STEP, budget))
                budget -= len(extra)
                self.data = self.d.unconsumed_tail
                if not extra and not self.data:
                    break
        except _ZERRORS as exc:
            raise self._corrupt(exc) from None


def read_label_crop(
    path: Path,
    *,
    max_voxels: int,
    name: str | None = None,
    check_header: Callable[[NiftiHeader], SubmissionError | None] | None = None,
) -> LabelCrop:
    """Read and validate a label map, keeping only its foreground crop.

    The scorer's hot path. A .nii.gz is inflated one z-slice at a time (slices are
    contiguous on disk, Fortran order); an all-zero slice is dropped while it is
    still in the CPU cache, so the whole volume never goes through main memory. The
    values are validated exactly as :func:`read_label_map` does (the tests check that
    both agree); uncompressed and scaled files take that full path.

    ``check_header`` sees the parsed header before any voxel is decoded; the problem
    it returns (e.g. a geometry mismatch) is raised.
    """
    name = name or path.name
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _fail(name, f"the file cannot be read ({exc.strerror})") from None
    gzipped = raw[:2] == b"\x1f\x8b"
    head = _decompress(raw, _HEAD, name) if gzipped else raw[:_HEAD]
    header = _parse_header(head, name, max_voxels=max_voxels, gzipped=gzipped)
    if check_header is not None:
        problem = check_header(header)
        if problem is not None:
            raise problem
    scaled = header.slope is not None and (header.slope != 1.0 or (header.inter or 0.0) != 0.0)
    if not gzipped or scaled:
        lm = read_label_map(path, max_voxels=max_voxels, name=name)
        c = None if lm.bbox is None else np.asfortranarray(crop(lm.array, lm.bbox))
        return LabelCrop(lm.header, lm.bbox, c)
    sx, sy, sz = header.shape
    dtype = header.dtype
    slice_bytes = sx * sy * dtype.itemsize
    words = dtype == np.uint8 and slice_bytes % 8 == 0
    row_words = dtype == np.uint8 and sx % 8 == 0
    stream = _GzipStream(raw, name)
    stream.read(header.vox_offset)
    # per occupied slice: (z, first occupied row y, a copy of rows y..y1 as one block)
    kept: list[tuple[int, int, npt.NDArray[Any]]] = []
    for z in range(sz):
        b = stream.read(slice_bytes)
        if len(b) < slice_bytes:
            raise _truncated(
                name, sx * sy * sz * dtype.itemsize, max(0, stream.produced - header.vox_offset)
            )
        v = np.frombuffer(b, dtype=dtype)
        occupied = (v.view(np.uint64).max() != 0) if words else bool(np.any(v != 0))
        if not occupied:
            continue
        # only the rows (fixed y) that hold a non-zero value are kept, copied while the
        # slice is still in the CPU cache: a lesion's slices take kilobytes, not 256 KB each
        if row_words:
            ys = np.flatnonzero(v.view(np.uint64).reshape(sy, sx // 8).max(axis=1))
        else:
            ys = np.flatnonzero((v.reshape(sy, sx) != 0).any(axis=1))
        y0, y1 = int(ys[0]), int(ys[-1]) + 1
        kept.append((z, y0, v[y0 * sx : y1 * sx].copy()))
    stream.finish()
    if not kept:
        return LabelCrop(header, None, None)
    ylo = min(y0 for _, y0, _ in kept)
    yhi = max(y0 + r.size // sx for _, y0, r in kept)
    stack = np.zeros((sx, yhi - ylo, len(kept)), dtype=dtype, order="F")
    for i, (_, y0, r) in enumerate(kept):
        ny = r.size // sx
        stack[:, y0 - ylo : y0 - ylo + ny, i] = r.reshape((sx, ny), order="F")
    # every non-zero voxel is in the stack: same checks and messages as the full path
    labels, box = to_labels(stack, header, name)
    assert box is not None  # every kept slice holds a non-zero value
    (x0, x1), (by0, by1), _ = box
    y0, y1 = ylo + by0, ylo + by1
    z0, z1 = kept[0][0], kept[-1][0] + 1
    out = np.zeros((x1 - x0, y1 - y0, z1 - z0), dtype=np.uint8, order="F")
    for i, (z, _, _) in enumerate(kept):
        out[:, :, z - z0] = labels[x0:x1, by0:by1, i]
    return LabelCrop(header, ((x0, x1), (y0, y1), (z0, z1)), out)


def check_geometry(
    found: NiftiHeader, expected: NiftiHeader, name: str, *, atol: float
) -> SubmissionError | None:
    """Shape and affine of a prediction against the ground truth's."""
    from evaluator.errors import GeometryError

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
