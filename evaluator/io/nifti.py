"""Reading label maps (NIfTI, and MetaImage: :mod:`evaluator.io.mha_header`): safely,
exactly as nibabel (SimpleITK for MetaImage) would, and fast.

nibabel parses the header (dtype, shape, scaling, affine: its semantics are the
reference). The voxel data is decoded here with zlib-ng, about 4x faster than
nibabel's default gzip reader, from a file or straight from a binary stream (an
archive member read in place). Tests check that the arrays equal
``np.asanyarray(nib.load(f).dataobj)``.

The header is parsed from the first bytes (at most a few hundred are inflated) and
checked before any voxel is: the magic, the number of dimensions, the data type, the
declared voxel count against ``max_voxels``, where the voxel data starts (at most
MAX_VOX_OFFSET), and whatever the caller checks (the ground truth's grid). Inflation
then stops at the declared size: ``vox_offset + shape * itemsize`` bytes, plus at
most TRAILING_LOOK bytes to reach the end of the gzip member and its CRC-32; the
compressed input consumed is bounded too (:func:`input_bound`). Checked after:
truncation, the CRC, and that the values are labels 0, 1, 2.

A MetaImage is told from a NIfTI by its first bytes (a ``Key = Value`` text header);
its voxels are stored as NIfTI's are (x fastest), zlib-compressed or not, so the same
slice-by-slice reader decodes both. A file named .mha/.mhd must hold a MetaImage, one
named .nii/.nii.gz a NIfTI.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from evaluator.boxes import Bbox, crop, foreground_bbox
from evaluator.errors import FormatError, LabelError, SubmissionError
from evaluator.io.inflate import TRAILING_LOOK, ByteSource, GzipStream, input_bound
from evaluator.io.members import open_data_file
from evaluator.io.mha_header import MAX_HEADER, header_end, looks_like_mha, parse_mha_header
from evaluator.io.nifti_header import MAX_VOX_OFFSET, ImageHeader, parse_header

_HEAD = 544  # enough for a NIfTI-2 header (540 bytes) and the extension flag
_MHA_STEP = 4096  # MetaImage header bytes read at a time

# opens the data file a .mhd names (None: the source cannot, e.g. an archive member)
OpenSibling = Callable[[str], ByteSource | None]


LABELS = (0, 1, 2)


@dataclass(frozen=True)
class LabelMap:
    """A validated label map: uint8 values in {0,1,2}, Fortran order as on disk."""

    array: npt.NDArray[np.uint8]
    header: ImageHeader
    bbox: Bbox | None  # bounding box of the non-zero voxels, half-open; None if empty

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.header.shape

    @property
    def affine(self) -> npt.NDArray[np.float64]:
        return self.header.affine


def max_file_bytes(shape: tuple[int, int, int]) -> int:
    """The largest file (.nii.gz or .nii) a label map on the grid ``shape`` can need:
    a header with extensions up to MAX_VOX_OFFSET, voxels of up to 8 bytes, the gzip
    framing allowed by :func:`input_bound` and TRAILING_LOOK bytes after the data."""
    nvox = int(np.prod(shape, dtype=np.int64))
    return input_bound(MAX_VOX_OFFSET + 8 * nvox + TRAILING_LOOK)


def open_label_stream(
    f: ByteSource, name: str, *, max_voxels: int, sibling: OpenSibling | None = None
) -> tuple[ImageHeader, GzipStream, bytes]:
    """Parse the header from the first bytes of ``f`` (inflating at most a few hundred
    bytes; a MetaImage header is read up to MAX_HEADER bytes); returns the header, the
    stream, and the bytes already read past the header.

    The caller checks the header, then :func:`start_voxels` positions the stream at the
    voxel data with a bound on the input it may consume. ``sibling`` opens the data
    file of a .mhd (without it a .mhd is refused)."""
    start = f.read(2)
    if start == b"\x1f\x8b":
        _check_family(name, mha=False)
        stream = GzipStream(f, name, mode="gzip")
        stream.data = start
        stream.taken = 2
        stream.max_in = input_bound(_HEAD)
        head = stream.read(_HEAD)
        return parse_header(head, name, max_voxels=max_voxels, gzipped=True), stream, head
    stream = GzipStream(f, name, mode="none")
    head = start + stream.read(_HEAD - len(start))
    if looks_like_mha(head):
        _check_family(name, mha=True)
        return _open_mha(f, head, name, max_voxels=max_voxels, sibling=sibling)
    _check_family(name, mha=False)
    return parse_header(head, name, max_voxels=max_voxels, gzipped=False), stream, head


def _check_family(name: str, *, mha: bool) -> None:
    """A file's name and content agree: .mha/.mhd a MetaImage, .nii/.nii.gz a NIfTI."""
    low = name.lower()
    if mha and low.endswith((".nii", ".nii.gz")):
        raise FormatError(
            name,
            "the file is named as a NIfTI image but holds a MetaImage header "
            "('Key = Value' lines); rename it <PatientID>.mha",
        )
    if not mha and low.endswith((".mha", ".mhd")):
        raise FormatError(
            name,
            "the file is named as a MetaImage but does not start with a MetaImage header "
            "('ObjectType = Image' or 'NDims = 3' lines); save the label map with "
            "SimpleITK (sitk.WriteImage(img, 'CHUM-001.mha', useCompression=True)), or "
            "name a NIfTI file .nii.gz",
        )


def _mha_header_bytes(f: ByteSource, head: bytes, name: str) -> tuple[bytes, int]:
    """The bytes read so far (``head`` and more, up to MAX_HEADER) and where the header
    ends in them (just past its ``ElementDataFile`` line)."""
    buf = head
    end = header_end(buf)
    while end is None or end > MAX_HEADER:
        if len(buf) >= MAX_HEADER or (end is not None and end > MAX_HEADER):
            raise FormatError(
                name,
                f"no ElementDataFile line in the first {MAX_HEADER:,} bytes: a MetaImage "
                "header ends with 'ElementDataFile = LOCAL' (data in the same file) within "
                f"{MAX_HEADER >> 10} KiB; save the label map with SimpleITK as a .mha",
            )
        more = f.read(min(_MHA_STEP, MAX_HEADER - len(buf)))
        if not more:
            if buf.rstrip().split(b"\n")[-1].lstrip().startswith(b"ElementDataFile"):
                return buf, len(buf)  # a .mhd whose last line has no newline
            raise FormatError(
                name,
                "the file ends inside its MetaImage header, before the ElementDataFile "
                "line; upload the complete file",
            )
        buf += more
        end = header_end(buf)
    return buf, end


def _open_mha(
    f: ByteSource, head: bytes, name: str, *, max_voxels: int, sibling: OpenSibling | None
) -> tuple[ImageHeader, GzipStream, bytes]:
    buf, end = _mha_header_bytes(f, head, name)
    header = parse_mha_header(buf[:end], name, max_voxels=max_voxels, data_offset=end)
    fix = "the .mha file (sitk.WriteImage(img, 'CHUM-001.mha', useCompression=True))"
    if header.data_file is None:
        source, text, rest = f, buf[:end], buf[end:]
    else:
        data = sibling(header.data_file) if sibling is not None else None
        if data is None:
            raise FormatError(
                name,
                f"a .mhd header whose voxel data is a separate file ({header.data_file}) "
                "cannot be read from an archive, which holds one file per case; save the "
                "label map as one .mha file instead (sitk.WriteImage(img, 'CHUM-001.mha', "
                "useCompression=True))",
            )
        source, text, rest = data, b"", b""
    stream = GzipStream(source, name, mode=header.compression, fix=fix)
    if header.compression == "zlib":
        stream.data = rest  # compressed bytes read with the header
        stream.taken = len(text) + len(rest)
        stream.base = len(text)
        return header, stream, text
    stream.strict_end = True
    return header, stream, text + rest


def voxel_bytes(header: ImageHeader) -> int:
    return header.shape[0] * header.shape[1] * header.shape[2] * header.dtype.itemsize


def start_voxels(stream: GzipStream, header: ImageHeader, head: bytes) -> bytes:
    """Skip to the voxel data (the header's ``vox_offset``); returns the voxel bytes
    already read with the header. From here the stream may consume no more input than
    an encoding of the declared header and voxel data (and TRAILING_LOOK) needs."""
    if header.compression == "zlib":
        size = header.compressed_size
        stream.expect_in = size
        stream.max_in = stream.base + (input_bound(voxel_bytes(header)) if size is None else size)
        return head[header.vox_offset :]
    end = header.vox_offset + voxel_bytes(header)
    stream.max_in = input_bound(end + TRAILING_LOOK)
    if header.vox_offset <= len(head):
        return head[header.vox_offset :]
    stream.skip(header.vox_offset - len(head))
    return b""


class _Voxels:
    """The voxel bytes of a label map, read in order: what came with the header first."""

    def __init__(self, stream: GzipStream, header: ImageHeader, head: bytes) -> None:
        self.stream = stream
        self.header = header
        self.pending = start_voxels(stream, header, head)
        self.nbytes = voxel_bytes(header)
        self.got = 0

    def read(self, n: int) -> bytes:
        if self.pending:
            first, self.pending = self.pending[:n], self.pending[n:]
            rest = self.stream.read(n - len(first)) if len(first) < n else b""
            b = first + rest
        else:
            b = self.stream.read(n)
        self.got += len(b)
        if len(b) < n:
            raise _truncated(self.stream.name, self.nbytes, self.got)
        return b

    def array(self) -> npt.NDArray[np.uint8]:
        first = np.frombuffer(self.pending, dtype=np.uint8)[: self.nbytes]
        self.pending = self.pending[self.nbytes :]  # what follows the voxel data
        out = np.empty(self.nbytes, dtype=np.uint8)
        out[: first.size] = first
        self.got = first.size + self.stream.read_into(out[first.size :])
        if self.got < self.nbytes:
            raise _truncated(self.stream.name, self.nbytes, self.got)
        return out

    def finish(self) -> None:
        self.stream.finish(self.header.vox_offset + self.nbytes, unread=len(self.pending))


def _truncated(name: str, need: int, got: int) -> FormatError:
    return FormatError(
        name,
        f"the file is truncated: the header declares {need:,} bytes of voxel data, the "
        f"file holds {got:,}; upload the complete file",
    )


def _open(
    source: Path | ByteSource, name: str | None, stack: contextlib.ExitStack
) -> tuple[ByteSource, str, OpenSibling | None]:
    """A binary stream for ``source`` (closed with ``stack`` when opened here), its
    name, and how to open a .mhd's data file beside it (None: not possible)."""
    if isinstance(source, Path):
        try:
            f = stack.enter_context(open(source, "rb"))  # noqa: SIM115 - closed by the stack
        except OSError as exc:
            raise FormatError(
                name or source.name, f"the file cannot be read ({exc.strerror})"
            ) from None
        shown = name or source.name
        folder = source.parent

        def beside(data_file: str) -> ByteSource:
            return stack.enter_context(open_data_file(folder, data_file, shown))

        return f, shown, beside
    opener = getattr(source, "open_sibling", None)
    sibling: OpenSibling | None = None
    if callable(opener):

        def sibling(data_file: str) -> ByteSource | None:
            data = opener(data_file)
            if data is not None and callable(getattr(data, "close", None)):
                stack.callback(data.close)
            return cast("ByteSource | None", data)

    return source, name or "label map", sibling


def read_header(
    source: Path | ByteSource, *, max_voxels: int, name: str | None = None
) -> ImageHeader:
    """Parse only the header (decompressing at most a few hundred bytes)."""
    with contextlib.ExitStack() as stack:
        f, name, sibling = _open(source, name, stack)
        return open_label_stream(f, name, max_voxels=max_voxels, sibling=sibling)[0]


def _full_array(voxels: _Voxels) -> npt.NDArray[Any]:
    header = voxels.header
    arr = voxels.array().view(header.dtype)
    return arr.reshape(header.shape, order="F")


def _label_error(name: str, values: npt.NDArray[Any]) -> LabelError:
    bad = [v for v in np.unique(values).tolist() if v not in LABELS]
    shown = ", ".join(f"{v:g}" for v in bad[:10]) + (" ..." if len(bad) > 10 else "")
    return LabelError(
        name,
        f"holds label value(s) {shown}; only 0 (background), 1 (GTVp) and 2 (GTVn) "
        "are allowed. Map other classes to these before exporting",
    )


def to_labels(
    arr: npt.NDArray[Any], header: ImageHeader, name: str
) -> tuple[npt.NDArray[np.uint8], Bbox | None]:
    """Validate the values and return a uint8 label map (Fortran order) and its bbox."""
    if header.scaled:
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
            raise FormatError(
                name,
                "the image holds NaN or infinite values; a label map holds only the "
                "integers 0, 1 and 2",
            )
        frac = arr != np.floor(arr)
        if frac.any():
            examples = ", ".join(f"{v:g}" for v in np.unique(arr[frac])[:5].tolist())
            raise FormatError(
                name,
                f"the image is of type float and holds non-integer values ({examples}); "
                "a label map holds only 0, 1 and 2: save it as uint8 after thresholding",
            )
    lo, hi = arr.min(), arr.max()
    if lo < 0 or hi > 2:
        raise _label_error(name, arr[(arr < 0) | (arr > 2)])
    out = np.asfortranarray(arr.astype(np.uint8))
    return out, foreground_bbox(out)


def read_label_map(
    source: Path | ByteSource, *, max_voxels: int, name: str | None = None
) -> LabelMap:
    """Read and validate one label map. Raises a :class:`SubmissionError` subclass."""
    with contextlib.ExitStack() as stack:
        f, name, sibling = _open(source, name, stack)
        header, stream, head = open_label_stream(f, name, max_voxels=max_voxels, sibling=sibling)
        voxels = _Voxels(stream, header, head)
        arr = _full_array(voxels)
        voxels.finish()
    labels, bbox = to_labels(arr, header, name)
    return LabelMap(labels, header, bbox)


def read_image(
    source: Path | ByteSource, *, max_voxels: int, name: str | None = None
) -> tuple[ImageHeader, npt.NDArray[Any]]:
    """Read one 3-D image (NIfTI or MetaImage) as stored: its header and its voxels in
    the on-disk type (no scaling applied, no label check), Fortran order."""
    with contextlib.ExitStack() as stack:
        f, name, sibling = _open(source, name, stack)
        header, stream, head = open_label_stream(f, name, max_voxels=max_voxels, sibling=sibling)
        voxels = _Voxels(stream, header, head)
        arr = _full_array(voxels)
        voxels.finish()
    return header, arr


@dataclass(frozen=True)
class LabelCrop:
    """A validated label map known by its foreground: the bounding box of the
    non-zero voxels and the uint8 crop inside it (Fortran order); None when empty."""

    header: ImageHeader
    bbox: Bbox | None
    crop: npt.NDArray[np.uint8] | None

    def full(self) -> npt.NDArray[np.uint8]:
        out = np.zeros(self.header.shape, dtype=np.uint8, order="F")
        if self.bbox is not None and self.crop is not None:
            (x0, x1), (y0, y1), (z0, z1) = self.bbox
            out[x0:x1, y0:y1, z0:z1] = self.crop
        return out


def read_label_crop(
    source: Path | ByteSource,
    *,
    max_voxels: int,
    name: str | None = None,
    check_header: Callable[[ImageHeader], SubmissionError | None] | None = None,
) -> LabelCrop:
    """Read and validate a label map, keeping only its foreground crop.

    The scorer's hot path. ``source`` is a file or a binary stream (an archive member
    read in place). The voxel data is decoded one z-slice at a time (slices are
    contiguous on disk, Fortran order); an all-zero slice is dropped while it is still
    in the CPU cache, so the whole volume never goes through main memory. The values
    are validated exactly as :func:`read_label_map` does (the tests check that both
    agree); scaled files take that full path.

    ``check_header`` sees the parsed header before any voxel is inflated; the problem
    it returns (e.g. a grid other than the ground truth's) is raised. No more than the
    header's declared voxel bytes are ever inflated (and TRAILING_LOOK bytes after them).
    """
    with contextlib.ExitStack() as stack:
        f, name, sibling = _open(source, name, stack)
        return _read_crop(
            f, name, max_voxels=max_voxels, check_header=check_header, sibling=sibling
        )


def _read_crop(
    f: ByteSource,
    name: str,
    *,
    max_voxels: int,
    check_header: Callable[[ImageHeader], SubmissionError | None] | None,
    sibling: OpenSibling | None,
) -> LabelCrop:
    header, stream, head = open_label_stream(f, name, max_voxels=max_voxels, sibling=sibling)
    if check_header is not None:
        problem = check_header(header)
        if problem is not None:
            raise problem
    voxels = _Voxels(stream, header, head)
    if header.scaled:
        arr = _full_array(voxels)
        voxels.finish()
        labels, box = to_labels(arr, header, name)
        c = None if box is None else np.asfortranarray(crop(labels, box))
        return LabelCrop(header, box, c)
    kept = _occupied_rows(voxels)
    voxels.finish()
    if not kept:
        return LabelCrop(header, None, None)
    return _crop_of_rows(kept, header, name)


# per occupied slice: (z, first occupied row y, a copy of rows y..y1 as one block)
_Rows = list[tuple[int, int, npt.NDArray[Any]]]


def _occupied_rows(voxels: _Voxels) -> _Rows:
    """Read the voxels slice by slice, keeping of each slice that holds a non-zero
    value the rows (fixed y) from its first to its last occupied one."""
    sx, sy, sz = voxels.header.shape
    dtype = voxels.header.dtype
    slice_bytes = sx * sy * dtype.itemsize
    words = dtype == np.uint8 and slice_bytes % 8 == 0
    row_words = dtype == np.uint8 and sx % 8 == 0
    kept: _Rows = []
    for z in range(sz):
        v = np.frombuffer(voxels.read(slice_bytes), dtype=dtype)
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
    return kept


def _crop_of_rows(kept: _Rows, header: ImageHeader, name: str) -> LabelCrop:
    """The kept rows stacked, validated as labels and cut to their foreground box."""
    sx = header.shape[0]
    ylo = min(y0 for _, y0, _ in kept)
    yhi = max(y0 + r.size // sx for _, y0, r in kept)
    stack = np.zeros((sx, yhi - ylo, len(kept)), dtype=header.dtype, order="F")
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
