"""HECKTOR 2026 Task 3: T and N staging, scored by balanced accuracy.

For one axis (T or N) with truths ``y`` and predictions ``p`` (stage names), the
recall of a stage ``c`` is ``#(y = c and p = c) / #(y = c)``; it exists only for the
stages that occur in the truth (a stage absent from the truth has no recall: it is not
reported, it is not 0). The balanced accuracy is the mean of the recalls that exist,
which is ``sklearn.metrics.balanced_accuracy_score(y, p)``. ``staging_bacc``, the
ranked value, is the mean of the T and N balanced accuracies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from evaluator.errors import ScoringError

__all__ = ["aggregate_staging", "axis_metrics", "stage_recalls"]

Axis = Literal["t", "n"]


def stage_recalls(
    truth: Sequence[str], predicted: Sequence[str], stages: Sequence[str]
) -> dict[str, float]:
    """The recall of each stage of ``stages`` that occurs in ``truth``."""
    if len(truth) != len(predicted):
        raise ScoringError(
            f"truth and predictions differ in length: {len(truth)} and {len(predicted)}"
        )
    out: dict[str, float] = {}
    for stage in stages:
        n_true = sum(1 for y in truth if y == stage)
        if n_true:
            hits = sum(1 for y, p in zip(truth, predicted, strict=True) if y == stage == p)
            out[stage] = hits / n_true
    return out


def axis_metrics(
    axis: Axis, truth: Sequence[str], predicted: Sequence[str], stages: Sequence[str]
) -> dict[str, float]:
    """``<axis>_bacc`` and ``<axis>_recall_<stage>`` of the stages in the truth."""
    unknown = sorted({y for y in truth if y not in stages})
    if unknown:
        raise ScoringError(f"{axis.upper()} truth holds stage(s) {unknown} outside {list(stages)}")
    recalls = stage_recalls(truth, predicted, stages)
    if not recalls:
        raise ScoringError(f"no case to score: the {axis.upper()} balanced accuracy needs cases")
    out = {f"{axis}_bacc": math.fsum(recalls.values()) / len(recalls)}
    out.update({f"{axis}_recall_{s.lower()}": v for s, v in recalls.items()})
    return out


def aggregate_staging(
    cases: Sequence[Mapping[str, Any]],
    *,
    t_stages: Sequence[str],
    n_stages: Sequence[str],
) -> dict[str, float]:
    """Task 3 (staging) metrics from per-case records with keys ``t_stage``,
    ``n_stage`` (truth) and ``t_prediction``, ``n_prediction``."""
    if not cases:
        raise ScoringError("no case to score: staging needs at least one case")
    try:
        t_true = [str(c["t_stage"]) for c in cases]
        n_true = [str(c["n_stage"]) for c in cases]
        t_pred = [str(c["t_prediction"]) for c in cases]
        n_pred = [str(c["n_prediction"]) for c in cases]
    except KeyError as exc:
        raise ScoringError(
            "staging case records need the keys t_stage, n_stage, t_prediction, "
            f"n_prediction; missing {exc}"
        ) from exc
    t = axis_metrics("t", t_true, t_pred, t_stages)
    n = axis_metrics("n", n_true, n_pred, n_stages)
    staging = (t["t_bacc"] + n["n_bacc"]) / 2.0
    return {"staging_bacc": staging, **t, **n, "n_cases": len(cases)}
