"""Lesion masks and where they sit in a volume: boxes, overlap windows, blob shapes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]

CUBE = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity


@dataclass
class Lesion:
    label: int
    corner: IntArray  # volume index of mask[0, 0, 0]; may lie outside the volume
    mask: BoolArray

    @property
    def voxels(self) -> int:
        return int(np.count_nonzero(self.mask))

    def centroid(self) -> FloatArray:
        idx = np.argwhere(self.mask)
        return np.asarray(idx.mean(axis=0) + self.corner, dtype=np.float64)


def crop_lesion(les: Lesion) -> Lesion | None:
    """Shrink the mask to its bounding box; None when empty."""
    if not les.mask.any():
        return None
    sl = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        nz = np.flatnonzero(les.mask.any(axis=other))
        sl.append(slice(int(nz[0]), int(nz[-1]) + 1))
    lo = np.array([s.start for s in sl], dtype=np.int64)
    return Lesion(les.label, les.corner + lo, np.ascontiguousarray(les.mask[tuple(sl)]))


def window(
    shape: tuple[int, ...], corner: IntArray, size: tuple[int, ...]
) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Slices of the volume and of a box at ``corner`` for their overlap (None if none)."""
    lo = np.maximum(corner, 0)
    hi = np.minimum(corner + np.asarray(size), np.asarray(shape))
    if np.any(hi <= lo):
        return None
    vsl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    msl = tuple(slice(int(a - c), int(b - c)) for a, b, c in zip(lo, hi, corner, strict=True))
    return vsl, msl


def paste(vol: NDArray[np.uint8], les: Lesion) -> tuple[slice, ...] | None:
    win = window(vol.shape, les.corner, les.mask.shape)
    if win is None:
        return None
    vsl, msl = win
    region = vol[vsl]
    region[les.mask[msl]] = les.label
    return vsl


def inside(
    shape: tuple[int, int, int], corner: IntArray, size: tuple[int, ...], margin: int
) -> bool:
    return bool(
        np.all(corner >= margin) and np.all(corner + np.asarray(size) <= np.asarray(shape) - margin)
    )


def is_free(vol: NDArray[np.uint8], corner: IntArray, mask: BoolArray, gap: int) -> bool:
    """True when no labelled voxel lies within ``gap`` voxels (Chebyshev) of the mask."""
    grown = ndimage.maximum_filter(np.pad(mask, gap), size=2 * gap + 1) if gap else mask
    win = window(vol.shape, corner - gap, grown.shape)
    if win is None:
        return True
    vsl, msl = win
    return not bool(np.any(vol[vsl][grown[msl]]))


def _random_rotation(rng: np.random.Generator) -> FloatArray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return np.asarray(q * np.sign(np.diag(r)), dtype=np.float64)


def blob(
    rng: np.random.Generator, ml: float, spacing: Sequence[float], bounds_ml: tuple[float, float]
) -> BoolArray:
    """An irregular, connected, hole-free blob of about ``ml`` millilitres, cropped.

    A union of 2-4 rotated ellipsoids around one centre plus smooth noise, cut at the
    level that keeps the wanted voxel count; the largest 26-connected piece is kept.
    The result's volume is within ``bounds_ml`` (retried otherwise)."""
    sp = np.asarray(spacing, dtype=np.float64)
    vox_ml = float(np.prod(sp)) / 1000.0
    lo_vox = math.ceil(bounds_ml[0] / vox_ml - 1e-9)
    hi_vox = math.floor(bounds_ml[1] / vox_ml + 1e-9)
    n_vox = min(max(round(ml / vox_ml), lo_vox), hi_vox)
    radius = (3.0 * n_vox * vox_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    half = np.ceil(2.0 * radius / sp).astype(np.int64) + 2
    axes = [
        np.arange(-h, h + 1, dtype=np.float32) * np.float32(s)
        for h, s in zip(half, sp, strict=True)
    ]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    best: BoolArray | None = None
    for attempt in range(8):
        n_ell = 1 if attempt == 7 else int(rng.integers(2, 5))
        field = _blob_field(rng, grid, n_ell, radius, sp)
        mask = _blob_mask(field, n_vox)
        count = int(np.count_nonzero(mask))
        if lo_vox <= count <= hi_vox:
            return _cropped_mask(mask)
        if best is None or abs(count - n_vox) < abs(int(best.sum()) - n_vox):
            best = mask
    # unreachable in practice: a single smooth ellipsoid always fits; keep the closest
    assert best is not None
    return _cropped_mask(best)


def _blob_field(
    rng: np.random.Generator,
    grid: NDArray[np.float32],
    n_ell: int,
    radius: float,
    sp: FloatArray,
) -> NDArray[np.float32]:
    """The union of ``n_ell`` rotated ellipsoids (a field > 0 inside), plus smooth
    noise when there are several."""
    shape = grid.shape[:3]
    field = np.full(shape, -np.inf, dtype=np.float32)
    for i in range(n_ell):
        centre = rng.normal(0.0, 0.3 * radius, 3) if i else np.zeros(3)
        radii = radius * rng.uniform(0.6, 1.15, 3)
        rot = _random_rotation(rng)
        d = (grid - centre.astype(np.float32)) @ rot.astype(np.float32)
        d /= radii.astype(np.float32)
        np.maximum(field, 1.0 - np.einsum("...k,...k->...", d, d), out=field)
    if n_ell > 1:
        noise = ndimage.gaussian_filter(
            rng.standard_normal(shape).astype(np.float32),
            sigma=tuple(float(x) for x in np.maximum(0.3 * radius / sp, 0.5)),
        )
        noise /= max(float(noise.std()), 1e-6)
        field += np.float32(0.15) * noise
    return field


def _blob_mask(field: NDArray[np.float32], n_vox: int) -> BoolArray:
    """The ``n_vox`` highest voxels of ``field``: their largest 26-connected piece,
    holes filled."""
    flat = field.ravel()
    k = min(n_vox, flat.size)
    thr = np.partition(flat, flat.size - k)[flat.size - k]
    mask = field >= thr
    labels, n = ndimage.label(mask, structure=CUBE)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = labels == int(np.argmax(sizes))
    filled: BoolArray = ndimage.binary_fill_holes(mask)
    return filled


def _cropped_mask(mask: BoolArray) -> BoolArray:
    cropped = crop_lesion(Lesion(1, np.zeros(3, dtype=np.int64), mask))
    assert cropped is not None
    return cropped.mask


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def boxes(vol: NDArray[np.uint8], lesions: list[Lesion]) -> list[tuple[slice, ...]]:
    out = []
    for les in lesions:
        win = window(vol.shape, les.corner, les.mask.shape)
        if win is not None:
            out.append(win[0])
    return out
