"""A seeded, deterministic synthetic HECKTOR challenge: ground truth and team submissions.

``generate_challenge(out_dir, seed=0)`` writes a folder laid out like the released data
(SPEC section 1) plus a few teams' submissions (SPEC section 2) of known, graded
quality, so the scorer, the service and the leaderboard can be exercised end to end
without the real (licensed) data::

    out_dir/
      ground_truth/Task 1/<PatientID>/<PatientID>.nii.gz   uint8: 0 bg, 1 GTVp, 2 GTVn
      ground_truth/Task 2/HECKTOR_2025_Task_2.csv          PatientID,CenterID,RFS,Relapse
      ground_truth/Task 3/HECKTOR_2025_Task_3.csv          PatientID,CenterID,HPV Status
      submissions/<team>/task1.zip                          <PatientID>.nii.gz per case
      submissions/<team>/task2.csv                          PatientID,Prediction (risk)
      submissions/<team>/task3.csv                          PatientID,Prediction (P(HPV+))
      manifest.json                                         seed, cases, teams, expected order

Realism follows the data paper (seed/): centres in the proportions of its Fig. 2a,
~80% censored RFS and ~67% HPV positive (Fig. 3); CT grids of 512x512 x 90-300
slices with per-centre spacing; one irregular GTVp of 5-80 ml in ~96% of patients,
0-6 GTVn of 0.5-20 ml in ~89%, kept apart from the GTVp and mostly from each other,
sometimes two nodes touching (one lesion under 26-connectivity). ``small=True``
gives 64x64 x 24-48 grids (spacing x4 in-plane, >= 5 mm slices) for fast tests.

Teams (``TEAM_PRESETS``) degrade the truth increasingly: perfect (exact copy, best
possible C-index, probability = label) > good > mediocre > poor on every ranking
metric (GTVp mean DSC, GTVn aggregated DSC and F1, C-index, AUC). The teams share
their random draws, each scaled by the team's damage, so a worse team makes the
better team's mistakes and more: for Task 2/3 the order then can only fall and is
made strict by redrawing; for Task 1 it holds in practice (tests check it on
several seeds; with very few cases, ties or swaps are possible).

Deterministic: one seed gives byte-identical files on one installation (numpy
``PCG64`` streams keyed by purpose and case, gzip streams with mtime 0, zip members
with a fixed timestamp); another zlib build may compress differently, the decoded
content stays the same. A team's output does not depend on which other teams are
requested.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import math
import shutil
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np
from nibabel.fileholders import FileHolder
from numpy.typing import NDArray
from scipy import ndimage

logger = logging.getLogger(__name__)

GENERATOR = "hecktor-eval synth"
GENERATOR_VERSION = 1

TASK2_CSV = "HECKTOR_2025_Task_2.csv"
TASK3_CSV = "HECKTOR_2025_Task_3.csv"
ZIP_DATE_TIME = (2025, 1, 1, 0, 0, 0)

# --- cohort ------------------------------------------------------------------------


@dataclass(frozen=True)
class Centre:
    """A contributing centre: its patient count in the data paper's Fig. 2a and the
    CT reconstructions it uses (field of view -> in-plane spacing ``fov / 512``;
    slice thickness, after Table 2)."""

    name: str
    patients: int
    fovs_mm: tuple[float, ...]
    slices_mm: tuple[float, ...]


# MDA 444, CHUB 216, USZ 101; the other seven share 362 (18-72 each): 1,123 in all.
CENTRES: tuple[Centre, ...] = (
    Centre("MDA", 444, (500.0, 600.0, 700.0), (2.5, 3.27, 3.75, 5.0)),
    Centre("CHUB", 216, (500.0, 600.0), (2.0, 3.0)),
    Centre("USZ", 101, (460.0, 500.0, 700.0), (1.5, 2.0, 3.0)),
    Centre("CHUP", 72, (500.0, 700.0), (2.0, 5.0)),
    Centre("CHUS", 72, (500.0, 600.0), (3.0, 3.27)),
    Centre("CHB", 59, (500.0,), (2.5, 3.27)),
    Centre("CHUM", 56, (500.0,), (1.5, 3.27, 3.75)),
    Centre("HGJ", 55, (500.0,), (3.27, 3.75)),
    Centre("CHUN", 30, (500.0, 700.0), (2.0, 3.27)),
    Centre("HMR", 18, (500.0, 700.0), (3.27, 3.75)),
)

P_GTVP = 0.96  # patients with a primary tumour
P_GTVN = 0.89  # patients with at least one involved node
N_NODES_P = (0.38, 0.25, 0.16, 0.10, 0.07, 0.04)  # 1..6 nodes, given >= 1
P_TOUCHING = 0.25  # cases with >= 2 nodes where one node touches another
GTVP_ML = (5.0, 80.0)
GTVN_ML = (0.5, 20.0)
P_HPV = 0.672  # Fig. 3
RFS_EVENT_SCALE_DAYS = 13000.0  # tuned so that ~80% are censored (Fig. 3)
CT_INPLANE = 512
SMALL_INPLANE = 64
SMALL_INPLANE_FACTOR = 4.0
SMALL_MIN_SLICE_MM = 5.0


# --- teams -------------------------------------------------------------------------

Codec = Literal["zlib", "zlib-ng"]


@dataclass(frozen=True)
class TeamPreset:
    """How a synthetic team damages the truth. Lengths are physical (mm), with a floor
    in voxels so that the damage is graded on the coarse small grid too."""

    name: str
    exact: bool = False  # an exact copy of the truth (the damage fields are ignored)
    shift_mm: float = 0.0  # each lesion moves by 0.5-1x this, rounded to voxels
    morph_mm: float = 0.0  # uniform dilation (+) or erosion (-) of up to this much
    edge_mm: float = 0.0  # sd of a smooth random displacement of the boundary
    # on coarse grids the same damage in voxels: each length above is at least this
    # fraction of the in-plane voxel size (shift, morph, edge)
    vox_floor: tuple[float, float, float] = (0.0, 0.0, 0.0)
    p_miss_gtvp: float = 0.0
    p_miss_node: float = 0.0
    spurious_rate: float = 0.0  # mean number of false nodes per case (at least one per team)
    p_merge: float = 0.0  # probability that two nearby predicted nodes are bridged into one
    p_gtvp_as_gtvn: float = 0.0  # probability that part of the GTVp is labelled GTVn
    p_node_as_gtvp: float = 0.0  # probability that a node is labelled GTVp
    risk_noise: float = 0.0  # sd of the noise added to the standardised ideal risk rank
    prob_noise: float = 0.0  # sd of the noise added to the logit of the HPV probability
    risk_style: Literal["ideal", "raw", "sigmoid", "scaled"] = "raw"
    codec: Codec = "zlib"
    gzip_level: int = 1
    zip_folder: str | None = None  # a single top-level folder inside task1.zip
    shuffle_rows: bool = False


# Best first. Their Task 2/3 order is enforced; their Task 1 order follows from the
# damage and is checked by tests/test_synth.py over several seeds.
TEAM_PRESETS: tuple[TeamPreset, ...] = (
    TeamPreset("perfect", exact=True, risk_style="ideal"),
    TeamPreset(
        "good",
        shift_mm=1.5,
        morph_mm=1.0,
        edge_mm=1.0,
        vox_floor=(0.5, 0.4, 0.45),
        p_miss_node=0.05,
        spurious_rate=0.15,
        risk_noise=0.35,
        prob_noise=1.0,
        risk_style="raw",
        codec="zlib-ng",
        gzip_level=6,
        zip_folder="predictions",
    ),
    TeamPreset(
        "mediocre",
        shift_mm=3.5,
        morph_mm=2.5,
        edge_mm=2.0,
        vox_floor=(1.0, 0.8, 0.7),
        p_miss_gtvp=0.03,
        p_miss_node=0.2,
        spurious_rate=0.5,
        p_merge=0.3,
        p_node_as_gtvp=0.03,
        risk_noise=0.9,
        prob_noise=1.8,
        risk_style="sigmoid",
        codec="zlib",
        gzip_level=1,
        shuffle_rows=True,
    ),
    TeamPreset(
        "poor",
        shift_mm=6.0,
        morph_mm=4.0,
        edge_mm=3.0,
        vox_floor=(1.6, 1.2, 1.0),
        p_miss_gtvp=0.1,
        p_miss_node=0.4,
        spurious_rate=1.0,
        p_merge=0.6,
        p_gtvp_as_gtvn=0.35,
        p_node_as_gtvp=0.1,
        risk_noise=2.0,
        prob_noise=3.5,
        risk_style="scaled",
        codec="zlib-ng",
        gzip_level=6,
        zip_folder="submission",
        shuffle_rows=True,
    ),
)
_PRESET_BY_NAME = {p.name: p for p in TEAM_PRESETS}
_GT_CODEC: tuple[Codec, int] = ("zlib", 1)  # what nibabel writes by default


@dataclass(frozen=True)
class SynthSummary:
    """Where :func:`generate_challenge` wrote what."""

    out_dir: Path
    ground_truth_dir: Path
    submissions_dir: Path
    case_ids: tuple[str, ...]
    teams: tuple[str, ...]

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / "manifest.json"


# --- small helpers -----------------------------------------------------------------

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]

_CUBE = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity
_EDGE_SMOOTH_MM = 4.0  # correlation length of the boundary noise of predictions


def _rng(seed: int, *key: int) -> np.random.Generator:
    """An independent stream per (purpose, case, team, ...) key."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


@dataclass
class _Lesion:
    label: int
    corner: IntArray  # volume index of mask[0, 0, 0]; may lie outside the volume
    mask: BoolArray

    @property
    def voxels(self) -> int:
        return int(np.count_nonzero(self.mask))

    def centroid(self) -> FloatArray:
        idx = np.argwhere(self.mask)
        return np.asarray(idx.mean(axis=0) + self.corner, dtype=np.float64)


@dataclass
class _Grid:
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    @property
    def voxel_mm3(self) -> float:
        return float(self.spacing[0] * self.spacing[1] * self.spacing[2])

    @property
    def affine(self) -> FloatArray:
        aff = np.diag([*self.spacing, 1.0])
        aff[:3, 3] = self.origin
        return aff


@dataclass
class _Case:
    patient_id: str
    centre: str
    grid: _Grid
    gtvp: _Lesion | None
    nodes: list[_Lesion]
    touching: int  # nodes placed touching an earlier node
    gtvn_components: int
    hpv: int
    lp: float  # linear predictor of the hazard
    time: int  # RFS, days
    event: int


def _crop(les: _Lesion) -> _Lesion | None:
    """Shrink the mask to its bounding box; None when empty."""
    if not les.mask.any():
        return None
    sl = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        nz = np.flatnonzero(les.mask.any(axis=other))
        sl.append(slice(int(nz[0]), int(nz[-1]) + 1))
    lo = np.array([s.start for s in sl], dtype=np.int64)
    return _Lesion(les.label, les.corner + lo, np.ascontiguousarray(les.mask[tuple(sl)]))


def _window(
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


def _paste(vol: NDArray[np.uint8], les: _Lesion) -> tuple[slice, ...] | None:
    win = _window(vol.shape, les.corner, les.mask.shape)
    if win is None:
        return None
    vsl, msl = win
    region = vol[vsl]
    region[les.mask[msl]] = les.label
    return vsl


def _inside(
    shape: tuple[int, int, int], corner: IntArray, size: tuple[int, ...], margin: int
) -> bool:
    return bool(
        np.all(corner >= margin) and np.all(corner + np.asarray(size) <= np.asarray(shape) - margin)
    )


def _free(vol: NDArray[np.uint8], corner: IntArray, mask: BoolArray, gap: int) -> bool:
    """True when no labelled voxel lies within ``gap`` voxels (Chebyshev) of the mask."""
    grown = ndimage.maximum_filter(np.pad(mask, gap), size=2 * gap + 1) if gap else mask
    win = _window(vol.shape, corner - gap, grown.shape)
    if win is None:
        return True
    vsl, msl = win
    return not bool(np.any(vol[vsl][grown[msl]]))


# --- lesion shapes -----------------------------------------------------------------


def _random_rotation(rng: np.random.Generator) -> FloatArray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return np.asarray(q * np.sign(np.diag(r)), dtype=np.float64)


def _blob(
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
    shape = grid.shape[:3]
    best: BoolArray | None = None
    for attempt in range(8):
        n_ell = 1 if attempt == 7 else int(rng.integers(2, 5))
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
        flat = field.ravel()
        k = min(n_vox, flat.size)
        thr = np.partition(flat, flat.size - k)[flat.size - k]
        mask = field >= thr
        labels, n = ndimage.label(mask, structure=_CUBE)
        if n > 1:
            sizes = np.bincount(labels.ravel())
            sizes[0] = 0
            mask = labels == int(np.argmax(sizes))
        mask = ndimage.binary_fill_holes(mask)
        count = int(np.count_nonzero(mask))
        if lo_vox <= count <= hi_vox:
            cropped = _crop(_Lesion(1, np.zeros(3, dtype=np.int64), mask))
            assert cropped is not None
            return cropped.mask
        if best is None or abs(count - n_vox) < abs(int(best.sum()) - n_vox):
            best = mask
    # unreachable in practice: a single smooth ellipsoid always fits; keep the closest
    assert best is not None
    cropped = _crop(_Lesion(1, np.zeros(3, dtype=np.int64), best))
    assert cropped is not None
    return cropped.mask


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


# --- cohort and grids --------------------------------------------------------------


def _allocate(n: int) -> list[tuple[Centre, int]]:
    """Split n cases over the centres by largest remainder (exact paper counts at 1,123)."""
    total = sum(c.patients for c in CENTRES)
    quotas = [n * c.patients / total for c in CENTRES]
    counts = [math.floor(q) for q in quotas]
    order = sorted(range(len(CENTRES)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return [(c, k) for c, k in zip(CENTRES, counts, strict=True) if k]


def _patient_ids(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """(PatientID, centre) pairs, sorted; numbers are sparse like in the real release."""
    out: list[tuple[str, str]] = []
    for centre, k in _allocate(n):
        top = min(max(999, k), 2 * k + 10) if k <= 999 else k
        numbers = np.sort(rng.choice(np.arange(1, top + 1), size=k, replace=False))
        width = max(3, len(str(top)))
        out.extend((f"{centre.name}-{int(x):0{width}d}", centre.name) for x in numbers)
    return sorted(out)


def _sample_grid(rng: np.random.Generator, centre: Centre, *, small: bool) -> _Grid:
    fov = float(rng.choice(centre.fovs_mm))
    dz = float(rng.choice(centre.slices_mm))
    dxy = fov / CT_INPLANE
    if small:
        n_xy, nz = SMALL_INPLANE, int(rng.integers(24, 49))
        dxy *= SMALL_INPLANE_FACTOR
        dz = max(2.0 * dz, SMALL_MIN_SLICE_MM)
    else:
        n_xy, nz = CT_INPLANE, int(rng.integers(90, 301))
    ox = round(-0.5 * n_xy * dxy + float(rng.uniform(-3.0, 3.0)), 3)
    oy = round(-0.5 * n_xy * dxy + float(rng.uniform(-30.0, 10.0)), 3)
    oz = round(-float(rng.uniform(0.5, 0.9)) * nz * dz, 3)
    return _Grid((n_xy, n_xy, nz), (dxy, dxy, dz), (ox, oy, oz))


# --- ground truth of one case ------------------------------------------------------

_MARGIN = 3  # voxels kept free at the volume's border
_GAP = 2  # voxels kept free between separate lesions


def _place_near(
    rng: np.random.Generator,
    vol: NDArray[np.uint8],
    mask: BoolArray,
    centre_vox: FloatArray,
    offset_mm: Callable[[np.random.Generator], FloatArray],
    spacing: FloatArray,
    tries: int = 40,
) -> IntArray | None:
    """A corner for ``mask`` near ``centre_vox + offset`` that is inside and free."""
    size = np.asarray(mask.shape)
    for _ in range(tries):
        c = centre_vox + offset_mm(rng) / spacing
        corner = np.round(c - size / 2.0).astype(np.int64)
        if _inside(vol.shape, corner, mask.shape, _MARGIN) and _free(vol, corner, mask, _GAP):
            return corner
    return None


def _place_touching(
    rng: np.random.Generator,
    vol: NDArray[np.uint8],
    mask: BoolArray,
    other: _Lesion,
    spacing: FloatArray,
) -> IntArray | None:
    """A corner where ``mask`` touches ``other`` (26-connectivity) without overlapping
    anything and stays ``_GAP`` away from the GTVp."""
    start = other.centroid()
    size = np.asarray(mask.shape)
    step = 0.5 * float(spacing.min())
    far = 0.5 * float(np.linalg.norm(np.asarray(other.mask.shape) * spacing)) + 0.5 * float(
        np.linalg.norm(size * spacing)
    )
    ring = np.pad(mask, 1)
    ring = ndimage.binary_dilation(ring, structure=_CUBE) & ~ring
    far_gap = ndimage.maximum_filter(np.pad(mask, _GAP), size=2 * _GAP + 1)
    for _ in range(12):
        u = rng.standard_normal(3)
        u /= np.linalg.norm(u)
        d = far
        while d > 0:
            c = start + u * d / spacing
            corner = np.round(c - size / 2.0).astype(np.int64)
            d -= step
            if not _inside(vol.shape, corner, mask.shape, _MARGIN):
                continue
            win = _window(vol.shape, corner - 1, ring.shape)
            assert win is not None
            vsl, msl = win
            region = vol[vsl]
            if np.any(region[np.pad(mask, 1)[msl]]):
                break  # overlaps: this direction went too far in
            if not np.any(region[ring[msl]] == 2):
                continue
            gwin = _window(vol.shape, corner - _GAP, far_gap.shape)
            assert gwin is not None
            if np.any(vol[gwin[0]][far_gap[gwin[1]]] == 1):
                break
            return corner
    return None


def _plan_case(
    patient_id: str, centre: Centre, *, seed: int, index: int, small: bool
) -> tuple[_Case, NDArray[np.uint8]]:
    """The truth of one case; returns it and its label volume (Fortran order)."""
    rng = _rng(seed, 10, index)
    grid = _sample_grid(rng, centre, small=small)
    sp = np.asarray(grid.spacing, dtype=np.float64)
    vol = np.zeros(grid.shape, dtype=np.uint8, order="F")
    shape = np.asarray(grid.shape, dtype=np.float64)
    # the oropharynx: in-plane near the centre, a little anterior; mid-upper slices
    site = np.array(
        [
            shape[0] / 2 + rng.normal(0.0, 8.0) / sp[0],
            shape[1] / 2 + rng.uniform(-5.0, 25.0) / sp[1],
            shape[2] * rng.uniform(0.45, 0.65),
        ]
    )
    gtvp: _Lesion | None = None
    if rng.random() < P_GTVP:
        room = np.asarray(grid.shape) - 2 * _MARGIN
        ml = _log_uniform(rng, 5.5, 75.0)
        mask = _blob(rng, ml, grid.spacing, GTVP_ML)
        while np.any(np.asarray(mask.shape) > room) and ml > GTVP_ML[0]:
            ml = max(0.7 * ml, GTVP_ML[0])  # never happens with the shipped grids
            mask = _blob(rng, ml, grid.spacing, GTVP_ML)
        size = np.asarray(mask.shape)
        at = np.round(site - size / 2.0).astype(np.int64)
        gtvp = _Lesion(1, np.clip(at, _MARGIN, np.asarray(grid.shape) - _MARGIN - size), mask)
        _paste(vol, gtvp)
        site = gtvp.centroid()

    def node_offset(r: np.random.Generator) -> FloatArray:
        side = 1.0 if r.random() < 0.5 else -1.0
        return np.array(
            [side * r.uniform(20.0, 55.0), r.uniform(-25.0, 20.0), r.uniform(-60.0, 20.0)]
        )

    nodes: list[_Lesion] = []
    touching = 0
    if rng.random() < P_GTVN:
        n_nodes = int(rng.choice(np.arange(1, 7), p=N_NODES_P))
        touch_at = (
            int(rng.integers(1, n_nodes)) if n_nodes >= 2 and rng.random() < P_TOUCHING else -1
        )
        for j in range(n_nodes):
            mask = _blob(rng, _log_uniform(rng, 0.55, 18.0), grid.spacing, GTVN_ML)
            corner: IntArray | None = None
            if j == touch_at and nodes:
                corner = _place_touching(rng, vol, mask, nodes[-1], sp)
                touching += corner is not None
            if corner is None:
                corner = _place_near(rng, vol, mask, site, node_offset, sp)
            if corner is None:
                continue  # no room: fewer nodes
            node = _Lesion(2, corner, mask)
            _paste(vol, node)
            nodes.append(node)
    components = _count_components(vol, nodes)
    hpv = int(rng.random() < P_HPV)
    case = _Case(patient_id, centre.name, grid, gtvp, nodes, touching, components, hpv, 0.0, 0, 0)
    _sample_outcome(rng, case)
    return case, vol


def _count_components(vol: NDArray[np.uint8], nodes: list[_Lesion]) -> int:
    if not nodes:
        return 0
    lo = np.min([n.corner for n in nodes], axis=0) - 1
    hi = np.max([n.corner + np.asarray(n.mask.shape) for n in nodes], axis=0) + 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, np.asarray(vol.shape))
    crop = vol[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))] == 2
    return int(ndimage.label(crop, structure=_CUBE)[1])


def _sample_outcome(rng: np.random.Generator, case: _Case) -> None:
    """RFS in days: exponential event time with a hazard that grows with the tumour
    burden and HPV negativity, administrative censoring between 0.5 and 8 years."""
    burden = (
        case.grid.voxel_mm3
        / 1000.0
        * ((case.gtvp.voxels if case.gtvp else 0) + sum(n.voxels for n in case.nodes))
    )
    lp = 0.9 * (1 - case.hpv) + 0.4 * math.log((burden + 1.0) / 20.0) + float(rng.normal(0.0, 0.6))
    t_event = float(rng.exponential(RFS_EVENT_SCALE_DAYS * math.exp(-lp)))
    t_censor = float(rng.uniform(180.0, 2900.0))
    case.lp = lp
    case.event = int(t_event <= t_censor)
    case.time = max(1, round(min(t_event, t_censor)))


# --- team predictions for one case -------------------------------------------------


def _lengths(team: TeamPreset, spacing: FloatArray) -> tuple[float, float, float]:
    """The team's (shift, morph, edge) in mm on this grid, with the voxel floor."""
    vox = float(min(spacing[0], spacing[1]))
    mm = (team.shift_mm, team.morph_mm, team.edge_mm)
    a, b, c = (max(x, f * vox) for x, f in zip(mm, team.vox_floor, strict=True))
    return a, b, c


def _pad(team: TeamPreset, spacing: FloatArray) -> IntArray:
    _, morph, edge = _lengths(team, spacing)
    return np.asarray(np.ceil((morph + 3.0 * edge) / spacing), dtype=np.int64) + 1


@dataclass
class _LesionDraws:
    """Random draws for one true lesion, shared by every team: each team scales them
    by its own damage, so a worse team makes the better team's mistakes and more."""

    direction: FloatArray  # shift direction (unit vector) times a factor in [0.5, 1]
    bias: float  # in [-1, 1]: erosion (< 0) or dilation (> 0), times the team's morph
    miss: float
    relabel: float
    split_axis: int
    split_q: float
    field: FloatArray  # smooth noise of unit sd over the lesion box padded by ``pad``
    pad: IntArray


class _SharedDraws:
    """The draws of one case's predictions; lazily built, identical whichever teams
    are requested (each lesion and each false-node candidate has its own stream)."""

    def __init__(self, case: _Case, gt_vol: NDArray[np.uint8], *, seed: int, index: int) -> None:
        self.case = case
        self.gt_vol = gt_vol
        self.seed = seed
        self.index = index
        self.spacing = np.asarray(case.grid.spacing, dtype=np.float64)
        rng = _rng(seed, 20, index)
        self.false_u = float(rng.random())
        self.merge_u = rng.random((6, 6))
        self._lesions: dict[int, _LesionDraws] = {}
        self._false: dict[int, _Lesion | None] = {}

    def lesion(self, j: int, les: _Lesion) -> _LesionDraws:
        if j not in self._lesions:
            rng = _rng(self.seed, 21, self.index, j)
            u = rng.standard_normal(3)
            u *= rng.uniform(0.5, 1.0) / max(float(np.linalg.norm(u)), 1e-9)
            bias = float(rng.uniform(-1.0, 1.0))
            miss, relabel = float(rng.random()), float(rng.random())
            axis, q = int(rng.integers(0, 2)), float(rng.uniform(0.5, 0.8))
            pad = np.max([_pad(t, self.spacing) for t in TEAM_PRESETS if not t.exact], axis=0)
            shape = tuple(int(a + 2 * b) for a, b in zip(les.mask.shape, pad, strict=True))
            field = ndimage.gaussian_filter(
                rng.standard_normal(shape),
                sigma=tuple(float(x) for x in np.maximum(_EDGE_SMOOTH_MM / self.spacing, 0.5)),
            )
            field /= max(float(field.std()), 1e-9)
            self._lesions[j] = _LesionDraws(u, bias, miss, relabel, axis, q, field, pad)
        return self._lesions[j]

    def false_node(self, k: int) -> _Lesion | None:
        """Candidate false node k: a small blob placed away from the truth."""
        if k not in self._false:
            rng = _rng(self.seed, 22, self.index, k)
            case, sp = self.case, self.spacing
            site = (
                case.gtvp.centroid() if case.gtvp is not None else np.asarray(case.grid.shape) / 2.0
            )

            def offset(r: np.random.Generator) -> FloatArray:
                return np.array(
                    [r.uniform(-70.0, 70.0), r.uniform(-40.0, 30.0), r.uniform(-80.0, 40.0)]
                )

            mask = _blob(rng, _log_uniform(rng, 0.6, 4.0), case.grid.spacing, GTVN_ML)
            corner = _place_near(rng, self.gt_vol, mask, site, offset, sp, tries=20)
            self._false[k] = None if corner is None else _Lesion(2, corner, mask)
        return self._false[k]


def _perturb(
    les: _Lesion, draws: _LesionDraws, team: TeamPreset, spacing: FloatArray
) -> _Lesion | None:
    """Shift the lesion, then move its boundary: a uniform dilation/erosion plus a
    smooth random displacement, both in mm (thresholding a signed distance)."""
    shift, morph, edge = _lengths(team, spacing)
    delta = np.round(draws.direction * shift / spacing).astype(np.int64)
    pad = _pad(team, spacing)
    mask = np.pad(les.mask, [(int(k), int(k)) for k in pad])
    inside = ndimage.distance_transform_edt(mask, sampling=spacing)
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing)
    half = 0.5 * float(spacing.min())
    sdf = np.where(mask, half - inside, outside - half)  # ~ mm to the surface, < 0 inside
    off = draws.pad - pad
    sdf += (
        edge
        * draws.field[
            tuple(slice(int(o), int(o) + n) for o, n in zip(off, mask.shape, strict=True))
        ]
    )
    return _crop(_Lesion(les.label, les.corner + delta - pad, sdf < draws.bias * morph))


def _split_gtvp(les: _Lesion, draws: _LesionDraws) -> list[_Lesion]:
    """Label the far part (20-50%) of a predicted GTVp along an in-plane axis as GTVn."""
    ax = draws.split_axis
    coords = np.argwhere(les.mask)[:, ax]
    thr = np.quantile(coords, draws.split_q)
    idx = np.arange(les.mask.shape[ax]).reshape([-1 if a == ax else 1 for a in range(3)])
    part = les.mask & (idx > thr)
    out = [
        x
        for x in (
            _crop(_Lesion(1, les.corner, les.mask & ~part)),
            _crop(_Lesion(2, les.corner, part)),
        )
        if x
    ]
    return out


def _bridge(a: _Lesion, b: _Lesion, spacing: FloatArray) -> _Lesion | None:
    """A capsule joining the centroids of two lesions (label 2)."""
    ca, cb = a.centroid(), b.centroid()
    r_mm = 0.5 * min(
        (3.0 * x.voxels * float(np.prod(spacing)) / (4.0 * math.pi)) ** (1.0 / 3.0) for x in (a, b)
    )
    r_mm = max(r_mm, float(spacing.max()))
    pad = np.ceil(r_mm / spacing) + 1
    lo = np.floor(np.minimum(ca, cb) - pad).astype(np.int64)
    hi = np.ceil(np.maximum(ca, cb) + pad).astype(np.int64) + 1
    idx = np.stack(
        np.meshgrid(
            *(np.arange(int(x), int(y)) for x, y in zip(lo, hi, strict=True)), indexing="ij"
        ),
        axis=-1,
    )
    p = (idx - ca) * spacing
    v = (cb - ca) * spacing
    t = np.clip((p @ v) / max(float(v @ v), 1e-9), 0.0, 1.0)
    dist = np.linalg.norm(p - t[..., None] * v, axis=-1)
    return _crop(_Lesion(2, lo, dist <= r_mm))


def _predict_case(shared: _SharedDraws, team: TeamPreset) -> list[_Lesion]:
    """The lesions a non-exact team predicts for one case (label 1 first, then 2)."""
    case, sp = shared.case, shared.spacing
    out: list[_Lesion] = []
    if case.gtvp is not None:
        d = shared.lesion(0, case.gtvp)
        p = None if d.miss < team.p_miss_gtvp else _perturb(case.gtvp, d, team, sp)
        if p is not None:
            out.extend(_split_gtvp(p, d) if d.relabel < team.p_gtvp_as_gtvn else [p])
    nodes: dict[int, _Lesion] = {}
    for j, node in enumerate(case.nodes):
        d = shared.lesion(1 + j, node)
        small = node.voxels * case.grid.voxel_mm3 < 2000.0
        if d.miss < team.p_miss_node * (1.5 if small else 0.7):
            continue
        p = _perturb(node, d, team, sp)
        if p is None:
            continue
        if d.relabel < team.p_node_as_gtvp:
            out.append(_Lesion(1, p.corner, p.mask))
        else:
            nodes[j] = p
    bridges: list[_Lesion] = []
    for i, j in itertools.combinations(sorted(nodes), 2):
        a, b = nodes[i], nodes[j]
        close = float(np.linalg.norm((a.centroid() - b.centroid()) * sp)) < 50.0
        if close and shared.merge_u[i, j] < team.p_merge:
            br = _bridge(a, b, sp)
            if br is not None:
                bridges.append(br)
    from scipy.stats import poisson

    n_false = int(poisson.ppf(shared.false_u, team.spurious_rate))
    if shared.index == 0:
        n_false = max(n_false, 1)  # every imperfect team has at least one false node
    false = [x for x in (shared.false_node(k) for k in range(n_false)) if x is not None]
    out.sort(key=lambda x: x.label)
    return out + list(nodes.values()) + false + bridges


# --- writing -----------------------------------------------------------------------


class _GzipSink(io.RawIOBase):
    """A write-only file object that gzips what nibabel writes, slice by slice, with
    mtime 0 (no copy of the whole volume)."""

    def __init__(self, codec: Codec, level: int) -> None:
        super().__init__()
        if codec == "zlib-ng":
            from zlib_ng import zlib_ng

            self._c: Any = zlib_ng.compressobj(level, zlib_ng.DEFLATED, 31)
        else:
            self._c = zlib.compressobj(level, zlib.DEFLATED, 31)
        self._parts: list[bytes] = []
        self._n = 0

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True  # nibabel's opener wants the attribute; reading is refused below

    def read(self, size: int = -1) -> bytes:
        raise io.UnsupportedOperation("write-only")

    def write(self, b: Any) -> int:
        n = memoryview(b).nbytes
        self._n += n
        out = self._c.compress(b)
        if out:
            self._parts.append(out)
        return n

    def tell(self) -> int:
        return self._n

    def seekable(self) -> bool:
        return False

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 0 and pos == self._n:
            return pos
        raise io.UnsupportedOperation("not seekable")

    def getvalue(self) -> bytes:
        self._parts.append(self._c.flush())
        return b"".join(self._parts)


def _label_image(vol: NDArray[np.uint8], grid: _Grid) -> nib.Nifti1Image:
    img = nib.Nifti1Image(vol, grid.affine)
    hdr = img.header
    hdr.set_data_dtype(np.uint8)
    hdr.set_xyzt_units("mm", "sec")
    img.set_qform(grid.affine, code=1)
    img.set_sform(grid.affine, code=1)
    return img


def nifti_gz_bytes(img: nib.Nifti1Image, *, codec: Codec = "zlib", level: int = 1) -> bytes:
    """``img`` as .nii.gz bytes with gzip mtime 0 (deterministic), streamed."""
    sink = _GzipSink(codec, level)
    img.to_file_map({"image": FileHolder(fileobj=sink)})
    return sink.getvalue()


def _zip_member(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
    info.compress_type = zipfile.ZIP_STORED  # .nii.gz is compressed already
    info.external_attr = 0o644 << 16
    info.create_system = 3
    zf.writestr(info, data)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def _is_synth_output(out_dir: Path, entries: set[str]) -> bool:
    if not entries <= {"ground_truth", "submissions", "manifest.json"}:
        return False
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("generator") == GENERATOR


def _prepare_out_dir(out_dir: Path) -> None:
    """Create ``out_dir``; a complete earlier synth output in it is replaced, any other
    content refused (nothing is deleted that this generator did not write)."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise FileExistsError(f"{out_dir} exists and is not a folder")
        entries = {p.name for p in out_dir.iterdir()}
        if entries and not _is_synth_output(out_dir, entries):
            raise FileExistsError(
                f"{out_dir} is not empty and is not a complete earlier synthetic challenge "
                f"(found: {', '.join(sorted(entries)[:5])}); choose a new or empty folder, "
                "or remove this one"
            )
        for name in sorted(entries):
            p = out_dir / name
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


# --- Task 2 and 3 tables -----------------------------------------------------------


_MAX_REDRAWS = 200


def _c_index(time: FloatArray, event: NDArray[np.int64], risk: FloatArray) -> float:
    """Harrell's C as SPEC section 3 defines it (O(n^2), fine for a cohort)."""
    t_i, t_j = time[:, None], time[None, :]
    e_i, e_j = event[:, None] == 1, event[None, :] == 1
    comparable = e_i & ((t_i < t_j) | ((t_i == t_j) & ~e_j))
    r_i, r_j = risk[:, None], risk[None, :]
    score = np.where(r_i > r_j, 1.0, np.where(r_i == r_j, 0.5, 0.0))
    n = int(comparable.sum())
    return float(score[comparable].sum() / n) if n else float("nan")


def _auc(label: NDArray[np.int64], score: FloatArray) -> float:
    from scipy.stats import rankdata

    pos = label == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _floats(texts: list[str]) -> FloatArray:
    return np.array([float(t) for t in texts], dtype=np.float64)


def _strictly_falling(values: list[float]) -> bool:
    return all(a > b for a, b in itertools.pairwise(values))


def _risk_text(x: float, style: str) -> str:
    if style == "sigmoid":
        return f"{1.0 / (1.0 + math.exp(-x)):.6f}"
    if style == "scaled":
        return f"{50.0 + 10.0 * x:.3f}"
    return f"{x:.4f}"


def _clinical(
    cases: list[_Case], *, seed: int
) -> tuple[
    list[int | None], list[int], list[int | None], dict[str, list[str]], dict[str, list[str]]
]:
    """Ground-truth targets (None = unknown) and every preset's Task 2/3 predictions
    (as text), with perfect > good > mediocre > poor on C-index and AUC."""
    rng = _rng(seed, 30)
    n = len(cases)
    time = np.array([c.time for c in cases], dtype=np.float64)
    event = np.array([c.event for c in cases], dtype=np.int64)
    hpv = np.array([c.hpv for c in cases], dtype=np.int64)
    unknown_rfs = (
        set(rng.choice(n, size=min(2, n // 10), replace=False).tolist()) if n >= 10 else set()
    )
    unknown_hpv = (
        set(rng.choice(n, size=min(3, n // 10), replace=False).tolist()) if n >= 10 else set()
    )
    known_rfs = np.array([i not in unknown_rfs for i in range(n)])
    known_hpv = np.array([i not in unknown_hpv for i in range(n)])
    # every scorable set needs comparable pairs and both classes
    need = min(2, int(known_rfs.sum()) - 1)
    short_first = [i for i in np.argsort(time, kind="stable") if known_rfs[i]]
    while int(event[known_rfs].sum()) < need:
        i = next(i for i in short_first if event[i] == 0)
        event[i] = 1
    n_known = int(known_hpv.sum())
    for cls in (0, 1):
        want = min(2, n_known // 2)
        others = [int(i) for i in rng.permutation(np.flatnonzero(known_hpv & (hpv != cls)))]
        while int(np.sum(hpv[known_hpv] == cls)) < want:
            hpv[others.pop()] = cls
    for case, e, h in zip(cases, event, hpv, strict=True):
        case.event, case.hpv = int(e), int(h)

    ideal_risk = -time + 0.5 * event  # integer days: events outrank ties, order kept
    rank = np.argsort(np.argsort(ideal_risk, kind="stable"), kind="stable")
    z = (rank - (n - 1) / 2.0) / max(n / 3.5, 1.0)
    imperfect = [p for p in TEAM_PRESETS if not p.exact]
    risks = {p.name: [_risk_text(float(x), "raw") for x in ideal_risk] for p in TEAM_PRESETS}
    probs = {p.name: [str(int(y)) for y in hpv] for p in TEAM_PRESETS}

    # One noise vector scaled per team: a pair a team orders wrongly, every worse team
    # orders wrongly too, so the C-index and AUC can only fall from team to team;
    # redraw until they fall strictly (needs a pair that changes between teams).
    def c_of(texts: list[str]) -> float:
        return _c_index(time[known_rfs], event[known_rfs], _floats(texts)[known_rfs])

    def auc_of(texts: list[str]) -> float:
        return _auc(hpv[known_hpv], _floats(texts)[known_hpv])

    for _attempt in range(_MAX_REDRAWS):
        eps = rng.standard_normal(n)
        for p in imperfect:
            risks[p.name] = [_risk_text(float(v), p.risk_style) for v in z + p.risk_noise * eps]
        if _strictly_falling([c_of(risks[p.name]) for p in TEAM_PRESETS]):
            break
    logit = 1.2 * (2 * hpv - 1)
    for _attempt in range(_MAX_REDRAWS):
        eps = rng.standard_normal(n)
        for p in imperfect:
            prob = 1.0 / (1.0 + np.exp(-(logit + p.prob_noise * eps)))
            probs[p.name] = [f"{v:.4f}" for v in prob]
        if _strictly_falling([auc_of(probs[p.name]) for p in TEAM_PRESETS]):
            break
    rfs = [None if i in unknown_rfs else int(time[i]) for i in range(n)]
    hpv_out = [None if i in unknown_hpv else int(hpv[i]) for i in range(n)]
    return rfs, [int(e) for e in event], hpv_out, risks, probs


# --- the generator -----------------------------------------------------------------


def generate_challenge(
    out_dir: Path,
    *,
    seed: int = 0,
    n_cases: int | None = None,
    small: bool = False,
    teams: Sequence[str] = ("perfect", "good", "mediocre", "poor"),
    progress: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Write a synthetic challenge (ground truth, submissions, manifest) to ``out_dir``.

    ``n_cases`` defaults to 12 when ``small`` and 40 otherwise. ``teams`` are names of
    :data:`TEAM_PRESETS`. ``out_dir`` must be new, empty, or an earlier output of this
    function (which is replaced). ``progress(done, total)`` is called after each case.
    """
    out_dir = Path(out_dir)
    n = (12 if small else 40) if n_cases is None else int(n_cases)
    if n < 1:
        raise ValueError(f"n_cases must be >= 1, not {n}")
    unknown = [t for t in teams if t not in _PRESET_BY_NAME]
    if unknown or not teams or len(set(teams)) != len(teams):
        raise ValueError(
            f"teams must be distinct names among {', '.join(_PRESET_BY_NAME)}; got {list(teams)}"
        )
    presets = [_PRESET_BY_NAME[t] for t in teams]
    team_keys = {p.name: i for i, p in enumerate(TEAM_PRESETS)}

    _prepare_out_dir(out_dir)
    gt_dir = out_dir / "ground_truth"
    sub_dir = out_dir / "submissions"
    (gt_dir / "Task 1").mkdir(parents=True)
    (gt_dir / "Task 2").mkdir()
    (gt_dir / "Task 3").mkdir()
    for p in presets:
        (sub_dir / p.name).mkdir(parents=True)

    ids = _patient_ids(_rng(seed, 1), n)
    centres = {c.name: c for c in CENTRES}
    cases: list[_Case] = []
    zips = {
        p.name: zipfile.ZipFile(sub_dir / p.name / "task1.zip", "w", zipfile.ZIP_STORED)
        for p in presets
    }
    try:
        for index, (pid, centre) in enumerate(ids):
            case, vol = _plan_case(pid, centres[centre], seed=seed, index=index, small=small)
            cases.append(case)
            shared = _SharedDraws(case, vol, seed=seed, index=index)
            predictions = {p.name: _predict_case(shared, p) for p in presets if not p.exact}
            del shared
            gt_bytes = nifti_gz_bytes(
                _label_image(vol, case.grid), codec=_GT_CODEC[0], level=_GT_CODEC[1]
            )
            (gt_dir / "Task 1" / pid).mkdir()
            (gt_dir / "Task 1" / pid / f"{pid}.nii.gz").write_bytes(gt_bytes)
            # one volume per case: each team clears what was pasted before it
            pasted = _boxes(vol, [x for x in [case.gtvp, *case.nodes] if x is not None])
            for p in presets:
                if p.exact:
                    data = gt_bytes
                else:
                    for sl in pasted:
                        vol[sl] = 0
                    pasted = [b for b in (_paste(vol, les) for les in predictions[p.name]) if b]
                    data = nifti_gz_bytes(
                        _label_image(vol, case.grid), codec=p.codec, level=p.gzip_level
                    )
                name = f"{p.zip_folder}/{pid}.nii.gz" if p.zip_folder else f"{pid}.nii.gz"
                _zip_member(zips[p.name], name, data)
            del vol
            if progress is not None:
                progress(index + 1, n)
    finally:
        for zf in zips.values():
            zf.close()

    rfs, events, hpv, risks, probs = _clinical(cases, seed=seed)
    _write_csv(
        gt_dir / "Task 2" / TASK2_CSV,
        ("PatientID", "CenterID", "RFS", "Relapse"),
        [
            (c.patient_id, c.centre, "" if t is None else t, e)
            for c, t, e in zip(cases, rfs, events, strict=True)
        ],
    )
    _write_csv(
        gt_dir / "Task 3" / TASK3_CSV,
        ("PatientID", "CenterID", "HPV Status"),
        [(c.patient_id, c.centre, "" if h is None else h) for c, h in zip(cases, hpv, strict=True)],
    )
    for p in presets:
        rows = list(range(n))
        if p.shuffle_rows:
            _rng(seed, 40, team_keys[p.name]).shuffle(rows)
        _write_csv(
            sub_dir / p.name / "task2.csv",
            ("PatientID", "Prediction"),
            [(ids[i][0], risks[p.name][i]) for i in rows],
        )
        _write_csv(
            sub_dir / p.name / "task3.csv",
            ("PatientID", "Prediction"),
            [(ids[i][0], probs[p.name][i]) for i in rows],
        )

    manifest = _manifest(seed=seed, small=small, cases=cases, presets=presets, rfs=rfs, hpv=hpv)
    (out_dir / "manifest.json").write_text(_manifest_text(manifest), encoding="utf-8")
    logger.info("synthetic challenge: %d cases, teams %s, in %s", n, ", ".join(teams), out_dir)
    return SynthSummary(
        out_dir=out_dir,
        ground_truth_dir=gt_dir,
        submissions_dir=sub_dir,
        case_ids=tuple(c.patient_id for c in cases),
        teams=tuple(teams),
    )


def _manifest_text(manifest: dict[str, Any]) -> str:
    """Indented JSON with one line per case (valid JSON, readable, diff-friendly)."""
    head = {k: v for k, v in manifest.items() if k != "cases"}
    text = json.dumps(head, indent=1)[:-2]
    cases = ",\n".join("  " + json.dumps(c) for c in manifest["cases"])
    return f'{text},\n "cases": [\n{cases}\n ]\n}}\n'


def _boxes(vol: NDArray[np.uint8], lesions: list[_Lesion]) -> list[tuple[slice, ...]]:
    out = []
    for les in lesions:
        win = _window(vol.shape, les.corner, les.mask.shape)
        if win is not None:
            out.append(win[0])
    return out


def _manifest(
    *,
    seed: int,
    small: bool,
    cases: list[_Case],
    presets: list[TeamPreset],
    rfs: list[int | None],
    hpv: list[int | None],
) -> dict[str, Any]:
    from evaluator import __version__

    def ml(voxels: int, grid: _Grid) -> float:
        return round(voxels * grid.voxel_mm3 / 1000.0, 4)

    ranked = [p.name for p in TEAM_PRESETS if p in presets]
    centres: dict[str, int] = {}
    for c in cases:
        centres[c.centre] = centres.get(c.centre, 0) + 1
    return {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "evaluator_version": __version__,
        "seed": seed,
        "small": small,
        "n_cases": len(cases),
        "layout": {
            "task1": "ground_truth/Task 1/<PatientID>/<PatientID>.nii.gz",
            "task2": f"ground_truth/Task 2/{TASK2_CSV}",
            "task3": f"ground_truth/Task 3/{TASK3_CSV}",
            "submissions": "submissions/<team>/task1.zip, task2.csv, task3.csv",
        },
        "teams": [p.name for p in presets],
        "expected_order": {
            "note": "best first, on every ranking metric of each task",
            "task1": ranked,
            "task2": ranked,
            "task3": ranked,
        },
        "team_details": {
            p.name: {
                "gzip": f"{p.codec} level {p.gzip_level}"
                if not p.exact
                else "identical to the truth",
                "zip_top_folder": p.zip_folder,
                "rows_shuffled": p.shuffle_rows,
                "risk_scale": p.risk_style,
            }
            for p in presets
        },
        "centres": centres,
        "cases": [
            {
                "patient_id": c.patient_id,
                "center": c.centre,
                "shape": list(c.grid.shape),
                "spacing_mm": [round(s, 7) for s in c.grid.spacing],
                "origin_mm": list(c.grid.origin),
                "voxel_volume_mm3": round(c.grid.voxel_mm3, 6),
                "gtvp_ml": None if c.gtvp is None else ml(c.gtvp.voxels, c.grid),
                "gtvn_ml": [ml(x.voxels, c.grid) for x in c.nodes],
                "gtvn_components": c.gtvn_components,
                "gtvn_touching": c.touching,
                "rfs_days": t,
                "relapse": c.event,
                "hpv": h,
            }
            for c, t, h in zip(cases, rfs, hpv, strict=True)
        ],
    }
