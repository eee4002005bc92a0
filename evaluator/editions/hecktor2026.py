"""HECKTOR 2026: one container per case writes a two-label segmentation, the T and N
stages and a recurrence-free-survival value; the organisers have published the metrics
(DSC of GTVp and GTVn averaged, balanced accuracy of T and N staging, C-index) but
not every detail, so each open point is a switch here (hashed into every result):

- ``dsc_mode``: ``"per_patient"`` (mean over patients of each patient's DSC, per
  label; a label empty in both truth and prediction is worth ``gtvp_both_empty`` /
  ``gtvn_both_empty``) or ``"aggregated"`` (per label ``2 Σ|A∩B| / Σ(|A|+|B|)`` over
  patients, weighted by ``dsc_agg_weighting``); ``seg_dsc`` is the mean of the two;
- ``rfs_meaning``: ``"risk"`` (higher = earlier recurrence, as in 2025) or ``"time"``
  (a predicted RFS time: higher = later recurrence); the C-index pairs the prediction
  with the observed time in that orientation;
- the clinical table's stage columns, the allowed stages and the aliases folded onto
  them (``N2a`` -> ``N2``, ``T4b`` -> ``T4``; lower case tolerated);
- ``task_weights``: the weights of the per-task ranks in the overall rank (a weighted
  mean of ranks; the combination is not published, equal weights by default).

Staging is scored by the balanced accuracy of T and of N (mean recall over the stages
present in the truth) and ranked by their mean, ``staging_bacc``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from evaluator.editions.base import (
    AlgorithmOutput,
    EdgeCase,
    Metric,
    RankBy,
    TaskSpec,
    check_spec,
    register_edition,
)
from evaluator.editions.hecktor2025 import SEGMENTATION_LABELS, BothEmpty, Protocol

__all__ = ["HECKTOR2026", "N_STAGES", "T_STAGES", "Hecktor2026Protocol", "recall_metric"]

T_STAGES: tuple[str, ...] = ("T1", "T2", "T3", "T4")
N_STAGES: tuple[str, ...] = ("N0", "N1", "N2", "N3")
STAGE_ALIASES: tuple[tuple[str, str], ...] = (
    ("N2A", "N2"),
    ("N2B", "N2"),
    ("N2C", "N2"),
    ("T4A", "T4"),
    ("T4B", "T4"),
)


def recall_metric(axis: Literal["t", "n"], stage: str) -> str:
    """The name of the recall of one stage: ``t_recall_t2``, ``n_recall_n0``."""
    return f"{axis}_recall_{stage.lower()}"


def _recalls(axis: Literal["t", "n"], stages: tuple[str, ...]) -> tuple[Metric, ...]:
    return tuple(
        Metric(
            name=recall_metric(axis, s),
            task=3,
            higher_is_better=True,
            ranked=False,
            label=f"Recall {s}",
        )
        for s in stages
    )


METRICS_2026: tuple[Metric, ...] = (
    Metric(
        name="seg_dsc", task=1, higher_is_better=True, ranked=True, label="DSC (GTVp, GTVn mean)"
    ),
    Metric(name="seg_gtvp_dsc", task=1, higher_is_better=True, ranked=False, label="GTVp DSC"),
    Metric(name="seg_gtvn_dsc", task=1, higher_is_better=True, ranked=False, label="GTVn DSC"),
    Metric(name="rfs_cindex", task=2, higher_is_better=True, ranked=True, label="RFS C-index"),
    Metric(
        name="staging_bacc",
        task=3,
        higher_is_better=True,
        ranked=True,
        label="Staging balanced accuracy (T, N mean)",
    ),
    Metric(name="t_bacc", task=3, higher_is_better=True, ranked=False, label="T balanced accuracy"),
    Metric(name="n_bacc", task=3, higher_is_better=True, ranked=False, label="N balanced accuracy"),
    *_recalls("t", T_STAGES),
    *_recalls("n", N_STAGES),
)

EDGE_CASES_2026: tuple[EdgeCase, ...] = (
    EdgeCase(
        metric="gtvp_dsc",
        when="dsc_mode 'per_patient': the patient's GTVp is empty in truth and prediction",
        value=1.0,
        protocol_field="gtvp_both_empty",
    ),
    EdgeCase(
        metric="gtvn_dsc",
        when="dsc_mode 'per_patient': the patient's GTVn is empty in truth and prediction",
        value=1.0,
        protocol_field="gtvn_both_empty",
    ),
    EdgeCase(
        metric="seg_gtvp_dsc",
        when="dsc_mode 'aggregated': no GTVp voxel in any truth or prediction",
        value=1.0,
    ),
    EdgeCase(
        metric="seg_gtvn_dsc",
        when="dsc_mode 'aggregated': no GTVn voxel in any truth or prediction",
        value=1.0,
    ),
    EdgeCase(
        metric="seg_dsc",
        when="dsc_mode 'per_patient': every patient excluded for one label (both sides "
        "empty, its both-empty switch 'exclude')",
        value=None,
    ),
    EdgeCase(metric="rfs_cindex", when="no comparable pair of patients", value=None),
    EdgeCase(
        metric="stage_recall",
        when="the stage does not occur in the truth (its recall is not reported; the "
        "balanced accuracy averages the stages that occur)",
        value=None,
    ),
)

TASKS_2026: dict[int, TaskSpec] = {
    1: TaskSpec(
        kind="segmentation_two_label",
        ranking=RankBy("seg_dsc"),
        title="GTVp and GTVn segmentation",
        long_title="Segmentation of GTVp and GTVn (DSC per label, averaged)",
        outputs=(
            AlgorithmOutput(
                relative_path="images/head-neck-tumor-segmentation",
                image=True,
                also=("images/tumor-lymph-node-segmentation", "images/gtv-segmentation"),
                labels=SEGMENTATION_LABELS,
            ),
        ),
    ),
    2: TaskSpec(
        kind="survival_rfs",
        ranking=RankBy("rfs_cindex"),
        title="recurrence-free survival",
        long_title="Prognosis of recurrence-free survival",
        outputs=(AlgorithmOutput(relative_path="rfs.json", image=False, value="number"),),
    ),
    3: TaskSpec(
        kind="staging",
        ranking=RankBy("staging_bacc"),
        title="T and N staging",
        long_title="Diagnosis of the T and N stages",
        outputs=(
            AlgorithmOutput(
                relative_path="t-stage.json", image=False, value="string", classes="t_stages"
            ),
            AlgorithmOutput(
                relative_path="n-stage.json", image=False, value="string", classes="n_stages"
            ),
        ),
    ),
}


@register_edition("hecktor2026")
@dataclass(frozen=True)
class Hecktor2026Protocol(Protocol):
    """The HECKTOR 2026 rules; the fields it shares with 2025 keep their meaning
    (geometry, extra cases, id and centre columns, GTVp both-empty value, aggregated
    DSC weighting; ``connectivity`` and the IoU switches count the GTVn lesions of the
    per-case records)."""

    METRICS: ClassVar[tuple[Metric, ...]] = METRICS_2026
    EDGE_CASES: ClassVar[tuple[EdgeCase, ...]] = EDGE_CASES_2026
    TASKS: ClassVar[dict[int, TaskSpec]] = TASKS_2026
    # one container writes the segmentation, rfs.json, t-stage.json and n-stage.json
    ONE_JOB_ALL_TASKS: ClassVar[bool] = True
    UNUSED_FIELDS: ClassVar[frozenset[str]] = frozenset({"hpv_threshold", "hpv_column"})

    name: str = "hecktor2026"
    # Task 1
    dsc_mode: Literal["per_patient", "aggregated"] = "per_patient"
    gtvn_both_empty: BothEmpty = "1.0"
    # Task 2
    rfs_meaning: Literal["risk", "time"] = "risk"
    # Task 3: ground-truth columns, the stages and the aliases folded onto them
    t_stage_column: str = "T-stage"
    n_stage_column: str = "N-stage"
    t_stages: tuple[str, ...] = T_STAGES
    n_stages: tuple[str, ...] = N_STAGES
    stage_aliases: tuple[tuple[str, str], ...] = STAGE_ALIASES
    # overall rank: weighted mean of the Task 1, 2, 3 ranks
    task_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.dsc_mode not in ("per_patient", "aggregated"):
            problems.append(
                f"dsc_mode must be 'per_patient' or 'aggregated', not {self.dsc_mode!r}"
            )
        if self.gtvn_both_empty not in ("1.0", "0.0", "exclude"):
            problems.append(
                f"gtvn_both_empty must be '1.0', '0.0' or 'exclude', not {self.gtvn_both_empty!r}"
            )
        if self.rfs_meaning not in ("risk", "time"):
            problems.append(f"rfs_meaning must be 'risk' or 'time', not {self.rfs_meaning!r}")
        for field, stages in (("t_stages", self.t_stages), ("n_stages", self.n_stages)):
            if not stages or len(set(stages)) != len(stages):
                problems.append(f"{field} must list distinct stages, not {list(stages)!r}")
        allowed = set(self.t_stages) | set(self.n_stages)
        bad = [f"{a} -> {b}" for a, b in self.stage_aliases if b not in allowed]
        if bad:
            problems.append(f"stage_aliases must map onto allowed stages: {', '.join(bad)}")
        weights = self.task_weights
        if len(weights) != 3 or any(not (float(w) >= 0.0) for w in weights) or sum(weights) <= 0:
            problems.append(
                f"task_weights must be three weights >= 0, not all 0, not {list(weights)!r}"
            )
        return problems

    def overall_weights(self) -> dict[int, float]:
        return {task: float(w) for task, w in zip((1, 2, 3), self.task_weights, strict=True)}

    def result_notes(self, task: int) -> dict[str, str]:
        if task == 2:
            return {
                "rfs_meaning": self.rfs_meaning,
                "prediction": "risk: higher = earlier recurrence"
                if self.rfs_meaning == "risk"
                else "predicted RFS time: higher = later recurrence",
            }
        return {}

    def stage_of(self, text: str) -> str | None:
        """A stage as written (any case, surrounding spaces, an alias) as one of the
        allowed stages, or None."""
        key = text.strip().upper()
        aliases = dict(self.stage_aliases)
        key = aliases.get(key, key)
        return key if key in self.t_stages or key in self.n_stages else None

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["t_stages"] = list(self.t_stages)
        d["n_stages"] = list(self.n_stages)
        d["stage_aliases"] = {a: b for a, b in self.stage_aliases}
        d["task_weights"] = [float(w) for w in self.task_weights]
        return d

    @classmethod
    def _convert(cls, kw: dict[str, Any]) -> dict[str, Any]:
        kw = super()._convert(kw)
        for key in ("t_stages", "n_stages"):
            if key in kw:
                kw[key] = tuple(str(s) for s in kw[key])
        if "stage_aliases" in kw:
            raw = kw["stage_aliases"]
            pairs = raw.items() if isinstance(raw, dict) else raw
            kw["stage_aliases"] = tuple(sorted((str(a).upper(), str(b)) for a, b in pairs))
        if "task_weights" in kw:
            kw["task_weights"] = tuple(float(w) for w in kw["task_weights"])
        if "gtvn_both_empty" in kw and not isinstance(kw["gtvn_both_empty"], str):
            kw["gtvn_both_empty"] = f"{float(kw['gtvn_both_empty']):.1f}"
        return kw


check_spec(METRICS_2026, TASKS_2026)

HECKTOR2026 = Hecktor2026Protocol()
