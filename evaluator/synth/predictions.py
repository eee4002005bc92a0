"""A synthetic team's prediction of one case: the truth shifted, grown or shrunk, with
rough edges, missed and false nodes, merged nodes and swapped labels, as its preset says.

The teams share their random draws, each scaled by the team's damage, so a worse team
makes the better team's mistakes and more.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from evaluator.synth.cohort import GTVN_ML, random_stream
from evaluator.synth.geometry import FloatArray, IntArray, Lesion, blob, crop_lesion, log_uniform
from evaluator.synth.team_presets import TEAM_PRESETS, TeamPreset
from evaluator.synth.truth import Case, place_near

_EDGE_SMOOTH_MM = 4.0  # correlation length of the boundary noise of predictions


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


class SharedDraws:
    """The draws of one case's predictions; lazily built, identical whichever teams
    are requested (each lesion and each false-node candidate has its own stream)."""

    def __init__(self, case: Case, gt_vol: NDArray[np.uint8], *, seed: int, index: int) -> None:
        self.case = case
        self.gt_vol = gt_vol
        self.seed = seed
        self.index = index
        self.spacing = np.asarray(case.grid.spacing, dtype=np.float64)
        rng = random_stream(seed, 20, index)
        self.false_u = float(rng.random())
        self.merge_u = rng.random((6, 6))
        self._lesions: dict[int, _LesionDraws] = {}
        self._false: dict[int, Lesion | None] = {}

    def lesion(self, j: int, les: Lesion) -> _LesionDraws:
        if j not in self._lesions:
            rng = random_stream(self.seed, 21, self.index, j)
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

    def false_node(self, k: int) -> Lesion | None:
        """Candidate false node k: a small blob placed away from the truth."""
        if k not in self._false:
            rng = random_stream(self.seed, 22, self.index, k)
            case, sp = self.case, self.spacing
            site = (
                case.gtvp.centroid() if case.gtvp is not None else np.asarray(case.grid.shape) / 2.0
            )

            def offset(r: np.random.Generator) -> FloatArray:
                return np.array(
                    [r.uniform(-70.0, 70.0), r.uniform(-40.0, 30.0), r.uniform(-80.0, 40.0)]
                )

            mask = blob(rng, log_uniform(rng, 0.6, 4.0), case.grid.spacing, GTVN_ML)
            corner = place_near(rng, self.gt_vol, mask, site, offset, sp, tries=20)
            self._false[k] = None if corner is None else Lesion(2, corner, mask)
        return self._false[k]


def _perturb(
    les: Lesion, draws: _LesionDraws, team: TeamPreset, spacing: FloatArray
) -> Lesion | None:
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
    return crop_lesion(Lesion(les.label, les.corner + delta - pad, sdf < draws.bias * morph))


def _split_gtvp(les: Lesion, draws: _LesionDraws) -> list[Lesion]:
    """Label the far part (20-50%) of a predicted GTVp along an in-plane axis as GTVn."""
    ax = draws.split_axis
    coords = np.argwhere(les.mask)[:, ax]
    thr = np.quantile(coords, draws.split_q)
    idx = np.arange(les.mask.shape[ax]).reshape([-1 if a == ax else 1 for a in range(3)])
    part = les.mask & (idx > thr)
    out = [
        x
        for x in (
            crop_lesion(Lesion(1, les.corner, les.mask & ~part)),
            crop_lesion(Lesion(2, les.corner, part)),
        )
        if x
    ]
    return out


def _bridge(a: Lesion, b: Lesion, spacing: FloatArray) -> Lesion | None:
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
    return crop_lesion(Lesion(2, lo, dist <= r_mm))


def predict_case(shared: SharedDraws, team: TeamPreset) -> list[Lesion]:
    """The lesions a non-exact team predicts for one case (label 1 first, then 2)."""
    case, sp = shared.case, shared.spacing
    out: list[Lesion] = []
    if case.gtvp is not None:
        d = shared.lesion(0, case.gtvp)
        p = None if d.miss < team.p_miss_gtvp else _perturb(case.gtvp, d, team, sp)
        if p is not None:
            out.extend(_split_gtvp(p, d) if d.relabel < team.p_gtvp_as_gtvn else [p])
    nodes: dict[int, Lesion] = {}
    for j, node in enumerate(case.nodes):
        d = shared.lesion(1 + j, node)
        small = node.voxels * case.grid.voxel_mm3 < 2000.0
        if d.miss < team.p_miss_node * (1.5 if small else 0.7):
            continue
        p = _perturb(node, d, team, sp)
        if p is None:
            continue
        if d.relabel < team.p_node_as_gtvp:
            out.append(Lesion(1, p.corner, p.mask))
        else:
            nodes[j] = p
    bridges: list[Lesion] = []
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
