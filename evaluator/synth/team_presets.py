"""The synthetic teams: how much each one damages the truth, and how it writes its files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
# damage and is checked by tests/evaluator/test_synth.py over several seeds.
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
PRESET_BY_NAME = {p.name: p for p in TEAM_PRESETS}
GT_CODEC: tuple[Codec, int] = ("zlib", 1)  # what nibabel writes by default
