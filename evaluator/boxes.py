"""Foreground boxes of label maps: the smallest box holding every non-zero voxel, and
crops to a box. Pure numpy; the readers and the metrics share them."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Bbox = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


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
