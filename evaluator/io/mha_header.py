"""A MetaImage header (``.mha``, or a ``.mhd`` beside its data file), parsed from its
ASCII ``Key = Value`` lines and checked before any voxel is read.

The header ends with the ``ElementDataFile`` line, within MAX_HEADER bytes; the voxel
data follows it (``ElementDataFile = LOCAL``) or is the named sibling file of a .mhd.
Accepted: ``ObjectType = Image`` (or absent), ``NDims = 3``, three positive
``DimSize`` values, one channel, the integer and float ``ElementType`` values of
ELEMENT_TYPES (floats are checked to hold integers, as for NIfTI), binary data in
either byte order, zlib-compressed or not, no ``HeaderSize``.

Geometry, as ITK reads it: ``Offset`` is the LPS origin, ``TransformMatrix`` lists the
direction column by column (``direction = reshape(3, 3).T``, SimpleITK's
``GetDirection()``), ``ElementSpacing`` the spacing; in RAS, with ``F = diag(-1, -1,
1)``: ``A[:3, :3] = F @ direction @ diag(spacing)``, ``A[:3, 3] = F @ Offset``.
The voxels are stored x fastest: the array ``data[i, j, k]`` of shape ``DimSize``, the
order of a NIfTI file on disk.
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

from evaluator.errors import FormatError
from evaluator.io.nifti_header import ImageHeader, check_voxel_count, ras_affine

MAX_HEADER = 64 * 1024

# MetaIO element types read: name -> NumPy type (little endian; MSB files are swapped)
ELEMENT_TYPES: dict[str, str] = {
    "MET_UCHAR": "u1",
    "MET_CHAR": "i1",
    "MET_SHORT": "<i2",
    "MET_USHORT": "<u2",
    "MET_INT": "<i4",
    "MET_UINT": "<u4",
    "MET_LONG_LONG": "<i8",
    "MET_ULONG_LONG": "<u8",
    "MET_FLOAT": "<f4",
    "MET_DOUBLE": "<f8",
}

# the MetaIO keys of an image header: its first line names one of them
_KEYS = [
    "ObjectType",
    "ObjectSubType",
    "NDims",
    "Comment",
    "FormTypeName",
    "Name",
    "ID",
    "ParentID",
    "Color",
    "CompressedData",
    "CompressedDataSize",
    "BinaryData",
    "BinaryDataByteOrderMSB",
    "ElementByteOrderMSB",
    "Position",
    "Offset",
    "Origin",
    "Orientation",
    "Rotation",
    "TransformMatrix",
    "CenterOfRotation",
    "AnatomicalOrientation",
    "ElementSpacing",
    "ElementSize",
    "DimSize",
    "HeaderSize",
    "Modality",
    "SequenceID",
    "ElementMin",
    "ElementMax",
    "ElementNumberOfChannels",
    "ElementType",
    "ElementDataFile",
]
_FIRST_LINE = re.compile(rb"\A\s*(" + "|".join(_KEYS).encode() + rb")[ \t]*=")
_DATA_FILE_LINE = re.compile(rb"(?m)^[ \t]*ElementDataFile[ \t]*=[^\n]*(\n|\Z)")
_SYNONYMS = {
    "Position": "Offset",
    "Origin": "Offset",
    "Rotation": "TransformMatrix",
    "Orientation": "TransformMatrix",
    "ElementByteOrderMSB": "BinaryDataByteOrderMSB",
}
_SAVE = "save the label map as a MetaImage with SimpleITK or ITK (sitk.WriteImage(img, 'x.mha'))"


def looks_like_mha(head: bytes) -> bool:
    """Whether a file's first bytes are the start of a MetaImage header."""
    return _FIRST_LINE.match(head) is not None


def header_end(buf: bytes) -> int | None:
    """The offset just past the ``ElementDataFile`` line (where LOCAL data starts), or
    None when ``buf`` does not hold that whole line yet."""
    m = _DATA_FILE_LINE.search(buf)
    if m is None or not m.group(1):
        return None
    return m.end()


def parse_mha_header(text: bytes, name: str, *, max_voxels: int, data_offset: int) -> ImageHeader:
    """The header ``text`` (its lines up to and with ``ElementDataFile``) checked; the
    voxel data starts at ``data_offset`` (the header's length, 0 for a .mhd's data file
    is set by the caller)."""
    fields = _fields(text, name)
    _check_kind(fields, name)
    shape = _shape(fields, name)
    check_voxel_count(shape, name, max_voxels=max_voxels)
    dtype = _dtype(fields, name)
    compressed = _bool(fields, "CompressedData", False, name)
    size = _compressed_size(fields, name) if compressed else None
    spacing_key = "ElementSpacing" if "ElementSpacing" in fields else "ElementSize"
    spacing = _floats(fields, spacing_key, 3, name, default=np.ones(3))
    volume = float(spacing[0]) * float(spacing[1]) * float(spacing[2])  # inf, no warning
    if not (np.all(spacing > 0) and np.isfinite(volume)):
        raise FormatError(
            name,
            f"ElementSpacing must be three positive numbers, found {_show(spacing)}; {_SAVE}",
        )
    origin = _floats(fields, "Offset", 3, name, default=np.zeros(3))
    matrix = _floats(fields, "TransformMatrix", 9, name, default=np.eye(3).ravel())
    direction = matrix.reshape(3, 3).T  # listed column by column
    if abs(float(np.linalg.det(direction))) < 1e-6:
        raise FormatError(
            name,
            f"TransformMatrix {_show(matrix)} is singular (expected a rotation, e.g. "
            f"1 0 0 0 1 0 0 0 1); {_SAVE}",
        )
    data_file = _data_file(fields, name)
    return ImageHeader(
        shape=shape,
        affine=ras_affine(direction, spacing, origin),
        zooms=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        dtype=dtype,
        data_offset=data_offset if data_file is None else 0,
        slope=1.0,
        inter=0.0,
        compression="zlib" if compressed else "none",
        compressed_size=size,
        data_file=data_file,
    )


def _fields(text: bytes, name: str) -> dict[str, str]:
    try:
        lines = text.decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise FormatError(
            name, f"the MetaImage header holds bytes that are not ASCII text; {_SAVE}"
        ) from None
    out: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            continue
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq or not key:
            raise FormatError(
                name,
                f"the MetaImage header line {line.strip()[:60]!r} is not 'Key = Value'; {_SAVE}",
            )
        key = _SYNONYMS.get(key, key)
        if key in out:
            raise FormatError(name, f"the MetaImage header sets {key} twice; keep one {key} line")
        out[key] = value.strip()
    return out


def _check_kind(fields: dict[str, str], name: str) -> None:
    kind = fields.get("ObjectType", "Image")
    if kind.lower() != "image":
        raise FormatError(name, f"ObjectType is {kind!r}, expected 'Image' (a label map); {_SAVE}")
    ndims = fields.get("NDims")
    if ndims != "3":
        found = "missing" if ndims is None else repr(ndims)
        raise FormatError(
            name,
            f"NDims is {found}, expected 3: a 3-D label map on the CT grid (one channel, "
            "no time axis)",
        )
    channels = fields.get("ElementNumberOfChannels", "1")
    if channels != "1":
        raise FormatError(
            name,
            f"ElementNumberOfChannels is {channels!r}, expected 1: a label map holds one "
            "value per voxel (not a vector or RGB image)",
        )
    header_size = fields.get("HeaderSize", "0")
    if header_size != "0":
        raise FormatError(
            name,
            f"HeaderSize is {header_size!r}, expected 0 or absent (the voxel data right "
            f"after the header); {_SAVE}",
        )
    if not _bool(fields, "BinaryData", False, name):
        raise FormatError(
            name,
            "BinaryData is False or missing: ASCII voxel data is not read; save the label "
            "map with binary data (BinaryData = True)",
        )


def _shape(fields: dict[str, str], name: str) -> tuple[int, int, int]:
    raw = fields.get("DimSize")
    parts = [] if raw is None else raw.split()
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        found = "missing" if raw is None else repr(raw)
        raise FormatError(
            name,
            f"DimSize is {found}, expected three positive integers (x y z, e.g. 512 512 200)",
        )
    return int(parts[0]), int(parts[1]), int(parts[2])


def _dtype(fields: dict[str, str], name: str) -> np.dtype:
    kind = fields.get("ElementType")
    code = ELEMENT_TYPES.get(kind or "")
    if code is None:
        raise FormatError(
            name,
            f"ElementType is {kind or 'missing'}, expected an integer type (MET_UCHAR "
            "recommended; also "
            + ", ".join(t for t in ELEMENT_TYPES if t != "MET_UCHAR")
            + "); save the label map as uint8",
        )
    dtype = np.dtype(code)
    if _bool(fields, "BinaryDataByteOrderMSB", False, name):
        dtype = dtype.newbyteorder(">")
    return dtype


def _bool(fields: dict[str, str], key: str, default: bool, name: str) -> bool:
    value = fields.get(key)
    if value is None:
        return default
    low = value.lower()
    if low in ("true", "t", "1"):
        return True
    if low in ("false", "f", "0"):
        return False
    raise FormatError(name, f"{key} is {value!r}, expected True or False; {_SAVE}")


def _compressed_size(fields: dict[str, str], name: str) -> int | None:
    raw = fields.get("CompressedDataSize")
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) == 0:
        raise FormatError(
            name,
            f"CompressedDataSize is {raw!r}, expected the positive byte count of the "
            f"compressed voxel data; {_SAVE}",
        )
    return int(raw)


def _floats(
    fields: dict[str, str],
    key: str,
    n: int,
    name: str,
    *,
    default: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    raw = fields.get(key)
    if raw is None:
        return np.asarray(default, dtype=np.float64)
    try:
        values = np.asarray([float(v) for v in raw.split()], dtype=np.float64)
    except ValueError:
        values = np.zeros(0)
    if values.size != n or not np.all(np.isfinite(values)):
        raise FormatError(name, f"{key} is {raw[:80]!r}, expected {n} finite numbers; {_SAVE}")
    return values


def _data_file(fields: dict[str, str], name: str) -> str | None:
    """None for LOCAL data; else the plain file name of a .mhd's data file."""
    value = fields.get("ElementDataFile", "")
    if value.upper() == "LOCAL":
        return None
    plain = (
        value
        and value not in (".", "..")
        and value.upper() != "LIST"
        and not any(c in value for c in "/\\%:")
        and not any(c.isspace() for c in value)
    )
    if not plain:
        raise FormatError(
            name,
            f"ElementDataFile is {value!r}: only LOCAL (a .mha, the data in the same file) "
            "or the plain name of one data file beside the .mhd (e.g. CHUM-001.raw; no "
            "folder, no '..', no LIST or file pattern) is read; save the label map as one "
            ".mha file",
        )
    return value


def _show(values: npt.NDArray[np.float64]) -> str:
    return " ".join(f"{v:g}" for v in values.tolist())
