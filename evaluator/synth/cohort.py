"""The synthetic cohort: centres in the data paper's proportions, patient ids, CT grids."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evaluator.synth.geometry import FloatArray


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


def random_stream(seed: int, *key: int) -> np.random.Generator:
    """An independent stream per (purpose, case, team, ...) key."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


@dataclass
class Grid:
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


def _allocate(n: int) -> list[tuple[Centre, int]]:
    """Split n cases over the centres by largest remainder (exact paper counts at 1,123)."""
    total = sum(c.patients for c in CENTRES)
    quotas = [n * c.patients / total for c in CENTRES]
    counts = [math.floor(q) for q in quotas]
    order = sorted(range(len(CENTRES)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return [(c, k) for c, k in zip(CENTRES, counts, strict=True) if k]


def patient_ids(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """(PatientID, centre) pairs, sorted; numbers are sparse like in the real release."""
    out: list[tuple[str, str]] = []
    for centre, k in _allocate(n):
        top = min(max(999, k), 2 * k + 10) if k <= 999 else k
        numbers = np.sort(rng.choice(np.arange(1, top + 1), size=k, replace=False))
        width = max(3, len(str(top)))
        out.extend((f"{centre.name}-{int(x):0{width}d}", centre.name) for x in numbers)
    return sorted(out)


def sample_grid(rng: np.random.Generator, centre: Centre, *, small: bool) -> Grid:
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
    return Grid((n_xy, n_xy, nz), (dxy, dxy, dz), (ox, oy, oz))
