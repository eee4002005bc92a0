"""The ground truth of one synthetic case: a GTVp, nodes around it, and the outcome."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from evaluator.synth.cohort import (
    GTVN_ML,
    GTVP_ML,
    N_NODES_P,
    P_GTVN,
    P_GTVP,
    P_HPV,
    P_TOUCHING,
    RFS_EVENT_SCALE_DAYS,
    Centre,
    Grid,
    random_stream,
    sample_grid,
)
from evaluator.synth.geometry import (
    CUBE,
    BoolArray,
    FloatArray,
    IntArray,
    Lesion,
    blob,
    inside,
    is_free,
    log_uniform,
    paste,
    window,
)


@dataclass
class Case:
    """One synthetic patient: grid, lesions and the Task 2/3 targets."""

    patient_id: str
    centre: str
    grid: Grid
    gtvp: Lesion | None
    nodes: list[Lesion]
    touching: int  # nodes placed touching an earlier node
    gtvn_components: int
    hpv: int
    lp: float  # linear predictor of the hazard
    time: int  # RFS, days
    event: int


_MARGIN = 3  # voxels kept free at the volume's border
_GAP = 2  # voxels kept free between separate lesions


def place_near(
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
        if inside(vol.shape, corner, mask.shape, _MARGIN) and is_free(vol, corner, mask, _GAP):
            return corner
    return None


def _place_touching(
    rng: np.random.Generator,
    vol: NDArray[np.uint8],
    mask: BoolArray,
    other: Lesion,
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
    ring = ndimage.binary_dilation(ring, structure=CUBE) & ~ring
    far_gap = ndimage.maximum_filter(np.pad(mask, _GAP), size=2 * _GAP + 1)
    for _ in range(12):
        u = rng.standard_normal(3)
        u /= np.linalg.norm(u)
        d = far
        while d > 0:
            c = start + u * d / spacing
            corner = np.round(c - size / 2.0).astype(np.int64)
            d -= step
            if not inside(vol.shape, corner, mask.shape, _MARGIN):
                continue
            win = window(vol.shape, corner - 1, ring.shape)
            assert win is not None
            vsl, msl = win
            region = vol[vsl]
            if np.any(region[np.pad(mask, 1)[msl]]):
                break  # overlaps: this direction went too far in
            if not np.any(region[ring[msl]] == 2):
                continue
            gwin = window(vol.shape, corner - _GAP, far_gap.shape)
            assert gwin is not None
            if np.any(vol[gwin[0]][far_gap[gwin[1]]] == 1):
                break
            return corner
    return None


def plan_case(
    patient_id: str, centre: Centre, *, seed: int, index: int, small: bool
) -> tuple[Case, NDArray[np.uint8]]:
    """The truth of one case; returns it and its label volume (Fortran order)."""
    rng = random_stream(seed, 10, index)
    grid = sample_grid(rng, centre, small=small)
    vol = np.zeros(grid.shape, dtype=np.uint8, order="F")
    site = _primary_site(rng, grid)
    gtvp: Lesion | None = None
    if rng.random() < P_GTVP:
        gtvp = _place_gtvp(rng, vol, grid, site)
        site = gtvp.centroid()
    nodes: list[Lesion] = []
    touching = 0
    if rng.random() < P_GTVN:
        nodes, touching = _place_nodes(rng, vol, grid, site)
    components = _count_components(vol, nodes)
    hpv = int(rng.random() < P_HPV)
    case = Case(patient_id, centre.name, grid, gtvp, nodes, touching, components, hpv, 0.0, 0, 0)
    _sample_outcome(rng, case)
    return case, vol


def _primary_site(rng: np.random.Generator, grid: Grid) -> FloatArray:
    """The oropharynx, in voxels: in-plane near the centre, a little anterior;
    mid-upper slices."""
    sp = np.asarray(grid.spacing, dtype=np.float64)
    shape = np.asarray(grid.shape, dtype=np.float64)
    return np.array(
        [
            shape[0] / 2 + rng.normal(0.0, 8.0) / sp[0],
            shape[1] / 2 + rng.uniform(-5.0, 25.0) / sp[1],
            shape[2] * rng.uniform(0.45, 0.65),
        ]
    )


def _place_gtvp(
    rng: np.random.Generator, vol: NDArray[np.uint8], grid: Grid, site: FloatArray
) -> Lesion:
    """A GTVp of 5.5-75 ml centred on ``site`` (moved inside the margin), pasted."""
    room = np.asarray(grid.shape) - 2 * _MARGIN
    ml = log_uniform(rng, 5.5, 75.0)
    mask = blob(rng, ml, grid.spacing, GTVP_ML)
    while np.any(np.asarray(mask.shape) > room) and ml > GTVP_ML[0]:
        ml = max(0.7 * ml, GTVP_ML[0])  # never happens with the shipped grids
        mask = blob(rng, ml, grid.spacing, GTVP_ML)
    size = np.asarray(mask.shape)
    at = np.round(site - size / 2.0).astype(np.int64)
    gtvp = Lesion(1, np.clip(at, _MARGIN, np.asarray(grid.shape) - _MARGIN - size), mask)
    paste(vol, gtvp)
    return gtvp


def _node_offset(r: np.random.Generator) -> FloatArray:
    """Where a node lies from the primary, in mm: to either side, mostly below."""
    side = 1.0 if r.random() < 0.5 else -1.0
    return np.array([side * r.uniform(20.0, 55.0), r.uniform(-25.0, 20.0), r.uniform(-60.0, 20.0)])


def _place_nodes(
    rng: np.random.Generator, vol: NDArray[np.uint8], grid: Grid, site: FloatArray
) -> tuple[list[Lesion], int]:
    """1-6 nodes around ``site``, one of them possibly touching the one before it;
    pasted. Returns the nodes and how many were placed touching."""
    sp = np.asarray(grid.spacing, dtype=np.float64)
    nodes: list[Lesion] = []
    touching = 0
    n_nodes = int(rng.choice(np.arange(1, 7), p=N_NODES_P))
    touch_at = int(rng.integers(1, n_nodes)) if n_nodes >= 2 and rng.random() < P_TOUCHING else -1
    for j in range(n_nodes):
        mask = blob(rng, log_uniform(rng, 0.55, 18.0), grid.spacing, GTVN_ML)
        corner: IntArray | None = None
        if j == touch_at and nodes:
            corner = _place_touching(rng, vol, mask, nodes[-1], sp)
            touching += corner is not None
        if corner is None:
            corner = place_near(rng, vol, mask, site, _node_offset, sp)
        if corner is None:
            continue  # no room: fewer nodes
        node = Lesion(2, corner, mask)
        paste(vol, node)
        nodes.append(node)
    return nodes, touching


def _count_components(vol: NDArray[np.uint8], nodes: list[Lesion]) -> int:
    """The number of 26-connected GTVn lesions (touching nodes count as one)."""
    if not nodes:
        return 0
    lo = np.min([n.corner for n in nodes], axis=0) - 1
    hi = np.max([n.corner + np.asarray(n.mask.shape) for n in nodes], axis=0) + 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, np.asarray(vol.shape))
    box = vol[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))] == 2
    return int(ndimage.label(box, structure=CUBE)[1])


def _sample_outcome(rng: np.random.Generator, case: Case) -> None:
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
