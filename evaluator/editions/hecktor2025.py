"""HECKTOR 2025: the rules of docs/scoring.md sections 1-4, the protocol every other edition
extends.

:class:`Protocol` holds every switch as a versioned, hashable object: it is stored
with the ground truth of a phase and recorded (name, version, SHA-256 of its canonical
JSON) in every result, so a score can always be traced to the exact rules that
produced it. ``Protocol.from_dict`` builds the class of the edition its ``name``
names (see :mod:`evaluator.editions.base`); any other name is a variant of these
rules.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, Literal, TypedDict

from evaluator.canonical import canonical_json, canonical_sha256
from evaluator.editions.base import (
    AlgorithmOutput,
    EdgeCase,
    Metric,
    RankBy,
    RankOfSum,
    TaskSpec,
    check_spec,
    edition_class,
    edition_names,
    register_edition,
)

__all__ = [
    "HECKTOR2025",
    "PROTOCOL_VERSION",
    "SEGMENTATION_LABELS",
    "BothEmpty",
    "Connectivity",
    "Protocol",
    "ProtocolSummary",
]

Connectivity = Literal[6, 18, 26]
BothEmpty = Literal["1.0", "0.0", "exclude"]

PROTOCOL_VERSION = "1.0.0"


class ProtocolSummary(TypedDict):
    """What a result document records of the protocol."""

    name: str
    version: str
    sha256: str


METRICS_2025: tuple[Metric, ...] = (
    Metric(
        name="gtvp_dsc_mean", task=1, higher_is_better=True, ranked=True, label="GTVp DSC (mean)"
    ),
    Metric(
        name="gtvn_dsc_agg",
        task=1,
        higher_is_better=True,
        ranked=True,
        label="GTVn DSC (aggregated)",
    ),
    Metric(
        name="gtvn_f1_agg", task=1, higher_is_better=True, ranked=True, label="GTVn F1 (aggregated)"
    ),
    Metric(
        name="gtvn_tp", task=1, higher_is_better=True, ranked=False, kind="count", label="GTVn TP"
    ),
    Metric(
        name="gtvn_fp", task=1, higher_is_better=False, ranked=False, kind="count", label="GTVn FP"
    ),
    Metric(
        name="gtvn_fn", task=1, higher_is_better=False, ranked=False, kind="count", label="GTVn FN"
    ),
    Metric(name="c_index", task=2, higher_is_better=True, ranked=True, label="C-index"),
    Metric(name="auc", task=3, higher_is_better=True, ranked=True, label="AUC"),
    Metric(
        name="balanced_accuracy",
        task=3,
        higher_is_better=True,
        ranked=False,
        label="Balanced accuracy",
    ),
    Metric(name="sensitivity", task=3, higher_is_better=True, ranked=False, label="Sensitivity"),
    Metric(name="specificity", task=3, higher_is_better=True, ranked=False, label="Specificity"),
    Metric(name="f1_macro", task=3, higher_is_better=True, ranked=False, label="F1 macro"),
    Metric(name="f1_weighted", task=3, higher_is_better=True, ranked=False, label="F1 weighted"),
)

EDGE_CASES_2025: tuple[EdgeCase, ...] = (
    EdgeCase(
        metric="gtvp_dsc",
        when="the case's GTVp is empty in both the truth and the prediction",
        value=1.0,
        protocol_field="gtvp_both_empty",
    ),
    EdgeCase(
        metric="gtvp_dsc_mean",
        when="every case is excluded (both sides empty, gtvp_both_empty = 'exclude')",
        value=None,
    ),
    EdgeCase(metric="gtvn_dsc_agg", when="no GTVn voxel in any truth or prediction", value=1.0),
    EdgeCase(
        metric="gtvn_f1_agg",
        when="no GTVn lesion in any truth or prediction (TP + FP + FN = 0)",
        value=1.0,
    ),
    EdgeCase(metric="c_index", when="no comparable pair of patients", value=None),
    EdgeCase(metric="auc", when="the cases hold one HPV class only", value=None),
)

# the label map's values: 0 background, 1 GTVp, 2 GTVn
SEGMENTATION_LABELS: tuple[int, ...] = (0, 1, 2)

TASKS_2025: dict[int, TaskSpec] = {
    # r_p + r_n, where r_n is the rank of the GTVn DSC rank + the GTVn F1 rank
    1: TaskSpec(
        kind="segmentation_hecktor2025",
        ranking=RankOfSum(
            "final",
            (
                RankBy("gtvp_dsc_mean"),
                RankOfSum("gtvn", (RankBy("gtvn_dsc_agg"), RankBy("gtvn_f1_agg"))),
            ),
        ),
        title="GTVp/GTVn segmentation",
        long_title="Detection and segmentation of GTVp and GTVn",
        # the 2025 Task 1 template's output, and the names other templates use
        outputs=(
            AlgorithmOutput(
                relative_path="images/tumor-lymph-node-segmentation",
                image=True,
                also=("images/gtv-segmentation", "images/head-neck-tumor-segmentation"),
                labels=SEGMENTATION_LABELS,
            ),
        ),
    ),
    2: TaskSpec(
        kind="survival_risk",
        ranking=RankBy("c_index"),
        title="recurrence-free survival",
        long_title="Prediction of recurrence-free survival",
        outputs=(AlgorithmOutput(relative_path="rfs.json", image=False, value="number"),),
    ),
    3: TaskSpec(
        kind="hpv_status",
        ranking=RankBy("auc"),
        title="HPV status",
        long_title="Diagnosis of HPV status",
        # a probability, or the 0/1 class the 2025 template writes (a Float socket)
        outputs=(
            # a probability of HPV positive, or the status itself (as the tables take it)
            AlgorithmOutput(
                relative_path="hpv-status.json",
                image=False,
                value="number_or_boolean",
                example="0.83",
            ),
        ),
    ),
}


@register_edition("hecktor2025")
@dataclass(frozen=True)
class Protocol:
    """Defaults are the HECKTOR 2025 rules (docs/scoring.md sections 1-4)."""

    METRICS: ClassVar[tuple[Metric, ...]] = METRICS_2025
    EDGE_CASES: ClassVar[tuple[EdgeCase, ...]] = EDGE_CASES_2025
    TASKS: ClassVar[dict[int, TaskSpec]] = TASKS_2025
    # each 2025 task had its own algorithm phase: one job writes one task's outputs
    ONE_JOB_ALL_TASKS: ClassVar[bool] = False
    # fields of the parent edition this one does not use: neither serialised nor read
    UNUSED_FIELDS: ClassVar[frozenset[str]] = frozenset()

    name: str = "hecktor2025"
    version: str = PROTOCOL_VERSION
    # Task 1
    gtvp_both_empty: BothEmpty = "1.0"
    dsc_agg_weighting: Literal["physical", "voxels"] = "physical"
    connectivity: Connectivity = 26
    iou_threshold: float = 0.3
    iou_strict: bool = False
    geometry_mismatch: Literal["reject", "resample_nearest"] = "reject"
    affine_atol: float = 1e-3
    ignore_extra_cases: bool = False
    # Task 3
    hpv_threshold: float = 0.5
    # Ground-truth table columns (Task 2/3)
    id_column: str = "PatientID"
    rfs_time_column: str = "RFS"
    rfs_event_column: str = "Relapse"
    hpv_column: str = "HPV Status"
    center_columns: tuple[str, ...] = ("CenterID", "Center")

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("invalid protocol: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """What is wrong with the switches (empty when the protocol is valid)."""
        problems = []
        if self.gtvp_both_empty not in ("1.0", "0.0", "exclude"):
            problems.append(
                f"gtvp_both_empty must be '1.0', '0.0' or 'exclude', not {self.gtvp_both_empty!r}"
            )
        if self.dsc_agg_weighting not in ("physical", "voxels"):
            problems.append(
                f"dsc_agg_weighting must be 'physical' or 'voxels', not {self.dsc_agg_weighting!r}"
            )
        if self.connectivity not in (6, 18, 26):
            problems.append(f"connectivity must be 6, 18 or 26, not {self.connectivity!r}")
        if not (0.0 < float(self.iou_threshold) <= 1.0):
            problems.append(f"iou_threshold must be in (0, 1], not {self.iou_threshold!r}")
        if self.geometry_mismatch not in ("reject", "resample_nearest"):
            problems.append(
                "geometry_mismatch must be 'reject' or 'resample_nearest', "
                f"not {self.geometry_mismatch!r}"
            )
        if not (float(self.affine_atol) >= 0.0):
            problems.append(f"affine_atol must be >= 0, not {self.affine_atol!r}")
        if not (0.0 <= float(self.hpv_threshold) <= 1.0):
            problems.append(f"hpv_threshold must be in [0, 1], not {self.hpv_threshold!r}")
        return problems

    # -- derived values -------------------------------------------------------------
    @property
    def iou_fraction(self) -> Fraction:
        """The IoU threshold as an exact fraction, so the test is done in integers.

        0.3 becomes 3/10 (from its decimal text, not its binary float value).
        """
        return Fraction(str(self.iou_threshold)).limit_denominator(10**6)

    def overall_weights(self) -> dict[int, float]:
        """The weight of each task's rank in the overall rank (a weighted mean of the
        task ranks, :func:`evaluator.ranking.overall_ranks`): 1 each; the 2025 rules
        rank each task on its own."""
        return {1: 1.0, 2: 1.0, 3: 1.0}

    def result_notes(self, task: int) -> dict[str, str]:
        """How to read the predictions of ``task`` under these rules, recorded in the
        result document when not empty (the 2025 rules have one reading only)."""
        del task
        return {}

    # -- serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["center_columns"] = list(self.center_columns)
        for name in self.UNUSED_FIELDS:
            del d[name]
        return d

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace. Its SHA-256 identifies the rules."""
        return canonical_json(self.to_dict()).decode("utf-8")

    @property
    def sha256(self) -> str:
        return canonical_sha256(self.to_dict())

    def summary(self) -> ProtocolSummary:
        """What a result document records of the protocol."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    @classmethod
    def _convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        """JSON values turned into the fields' types (tuples, the both-empty text)."""
        if "center_columns" in kw:
            kw["center_columns"] = tuple(kw["center_columns"])
        if "gtvp_both_empty" in kw and not isinstance(kw["gtvp_both_empty"], str):
            kw["gtvp_both_empty"] = f"{float(kw['gtvp_both_empty']):.1f}"
        if "connectivity" in kw:
            kw["connectivity"] = int(kw["connectivity"])
        return kw

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protocol:
        """The protocol ``data`` describes: of the edition its ``name`` names when that
        is a registered edition, else of ``cls`` (a variant of its rules)."""
        edition = edition_class(str(data.get("name", "")))
        target: type[Protocol] = cls
        if edition is not None and issubclass(edition, Protocol):
            target = edition
        known = {f.name for f in fields(target)} - target.UNUSED_FIELDS
        unknown = sorted(set(data) - known)
        if unknown:
            hint = ""
            if edition is None and "name" in data:
                hint = (
                    f"; {data['name']!r} is not an edition ({', '.join(edition_names())}), "
                    f"so the file is read as a variant of {cls.name}: give the edition's "
                    "name to use its fields"
                )
            raise ValueError(
                f"unknown protocol field(s) for {data.get('name', target.name)!r}: "
                f"{', '.join(unknown)}; known: {', '.join(sorted(known))}{hint}"
            )
        return target(**target._convert(dict(data)))

    @classmethod
    def from_json(cls, text: str) -> Protocol:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a protocol file holds one JSON object")
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> Protocol:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def with_changes(self, **changes: Any) -> Protocol:
        return replace(self, **changes)


check_spec(METRICS_2025, TASKS_2025)

HECKTOR2025 = Protocol()
