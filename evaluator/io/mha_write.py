"""Writing a 3-D image as a zlib-compressed MetaImage (``.mha``) that SimpleITK and
:mod:`evaluator.io.mha_header` read back exactly.

The array is indexed ``[i, j, k]`` (x, y, z), the project readers' order (a NIfTI's
``dataobj``, a MetaImage's ``DimSize``); SimpleITK's ``GetArrayFromImage`` gives its
transpose ``(2, 1, 0)``. Geometry is ITK's (LPS): ``spacing`` per axis, ``origin`` the
position of voxel ``(0, 0, 0)``, ``direction`` the row-major 3x3 matrix of
``GetDirection()`` whose columns are the axes' directions. The header lists it as
SimpleITK writes it: ``TransformMatrix`` column by column, ``Offset`` the origin,
numbers in their shortest exact decimal form (each double reads back bit for bit).
The voxels are one zlib stream, x fastest, little endian.
"""

from __future__ import annotations

import os
import types
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

_zlib: types.ModuleType
try:  # zlib-ng is a dependency: the same stream, several times faster
    from zlib_ng import zlib_ng as _zlib
except ImportError:  # pragma: no cover
    _zlib = zlib

# NumPy kind and size -> MetaIO element type
ELEMENT_TYPES: dict[tuple[str, int], str] = {
    ("u", 1): "MET_UCHAR",
    ("i", 1): "MET_CHAR",
    ("i", 2): "MET_SHORT",
    ("u", 2): "MET_USHORT",
    ("i", 4): "MET_INT",
    ("u", 4): "MET_UINT",
    ("i", 8): "MET_LONG_LONG",
    ("u", 8): "MET_ULONG_LONG",
    ("f", 4): "MET_FLOAT",
    ("f", 8): "MET_DOUBLE",
}

_SLAB_BYTES = 8 << 20  # voxel bytes compressed at a time


def _number(x: float) -> str:
    """The shortest decimal that reads back as the same double (``1`` for 1.0)."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def _numbers(values: npt.NDArray[np.float64]) -> str:
    return " ".join(_number(float(v)) for v in values.ravel())


def _orientation(direction: npt.NDArray[np.float64]) -> str:
    """ITK's informational AnatomicalOrientation: per axis, the LPS axis it runs most
    along, named as ITK names it (identity: ``RAI``)."""
    out = []
    for col in direction.T:
        axis = int(np.argmax(np.abs(col)))
        out.append(("RAI" if col[axis] > 0 else "LPS")[axis])
    return "".join(out)


def _geometry(
    spacing: Sequence[float], origin: Sequence[float], direction: Any
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    sp = np.asarray(spacing, dtype=np.float64)
    org = np.asarray(origin, dtype=np.float64)
    dirs = np.asarray(direction, dtype=np.float64)
    if dirs.shape == (9,):
        dirs = dirs.reshape(3, 3)
    if sp.shape != (3,) or not (np.all(np.isfinite(sp)) and np.all(sp > 0)):
        raise ValueError(f"spacing must be three positive finite numbers, not {spacing!r}")
    if org.shape != (3,) or not np.all(np.isfinite(org)):
        raise ValueError(f"origin must be three finite numbers, not {origin!r}")
    if dirs.shape != (3, 3) or not np.all(np.isfinite(dirs)):
        raise ValueError("direction must be a finite 3x3 matrix (row-major, or 9 numbers)")
    if abs(float(np.linalg.det(dirs))) < 1e-6:
        raise ValueError("direction is singular; expected a rotation (e.g. the identity)")
    return sp, org, dirs


def mha_bytes(
    array: npt.NDArray[Any],
    *,
    spacing: Sequence[float],
    origin: Sequence[float],
    direction: Any = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    level: int = 1,
) -> bytes:
    """``array`` (indexed x, y, z) with its ITK geometry as the bytes of a compressed
    ``.mha``. ``level`` is the zlib level (1: fast; the stream is valid at any)."""
    arr = np.asarray(array)
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise ValueError(f"a 3-D image with no empty axis is expected, not shape {arr.shape}")
    element = ELEMENT_TYPES.get((arr.dtype.kind, arr.dtype.itemsize))
    if element is None:
        raise ValueError(
            f"voxel type {arr.dtype} cannot be written; use one of "
            "uint8, int8, int16, uint16, int32, uint32, int64, uint64, float32, float64"
        )
    sp, org, dirs = _geometry(spacing, origin, direction)
    little = arr.dtype.newbyteorder("<")
    comp = _zlib.compressobj(level, _zlib.DEFLATED, 15)
    parts: list[bytes] = []
    nx, ny, nz = arr.shape
    per_slice = nx * ny * arr.dtype.itemsize
    step = max(1, _SLAB_BYTES // per_slice)
    for k in range(0, nz, step):
        slab = arr[:, :, k : k + step].astype(little, copy=False)
        data = slab.tobytes(order="F")  # x fastest, then y, then z
        out = comp.compress(data)
        if out:
            parts.append(out)
    parts.append(comp.flush())
    size = sum(len(p) for p in parts)
    header = "\n".join(
        [
            "ObjectType = Image",
            "NDims = 3",
            "BinaryData = True",
            "BinaryDataByteOrderMSB = False",
            "CompressedData = True",
            f"CompressedDataSize = {size}",
            f"TransformMatrix = {_numbers(dirs.T)}",  # column by column
            f"Offset = {_numbers(org)}",
            "CenterOfRotation = 0 0 0",
            f"AnatomicalOrientation = {_orientation(dirs)}",
            f"ElementSpacing = {_numbers(sp)}",
            f"DimSize = {nx} {ny} {nz}",
            f"ElementType = {element}",
            "ElementDataFile = LOCAL",
            "",
        ]
    )
    return header.encode("ascii") + b"".join(parts)


def write_mha(
    path: Path,
    array: npt.NDArray[Any],
    *,
    spacing: Sequence[float],
    origin: Sequence[float],
    direction: Any = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    level: int = 1,
) -> int:
    """Write :func:`mha_bytes` to ``path`` (through a temporary file beside it, renamed
    into place: a reader never sees half a file). Returns the file's size."""
    data = mha_bytes(array, spacing=spacing, origin=origin, direction=direction, level=level)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(data)
