"""Warnings for predictions that look inverted (a C-index or an AUC far below 0.5) or
made for the other table task.

A C-index (or AUC) of 0.5 is what random predictions score; far below it, the
predictions order the cases the wrong way round more often than not, which is what
predicted RFS times submitted as risks (or probabilities of the wrong class) give.
"Far below" means that the upper bound of a percentile bootstrap interval over cases
(:data:`RESAMPLES` resamples with the fixed seed :data:`SEED`, the upper
:data:`UPPER_PERCENTILE` percentile) is under 0.5, so that a small test set with a
C-index of 0.45 by chance is not told it is inverted. The score itself is never
changed: the warning says what the number means and how to fix the predictions.

A Task 2 submission whose predictions all lie in [0, 1] with a C-index whose interval
holds 0.5 (no better than chance), on at least :data:`MIN_CASES_OTHER_TASK` cases, is flagged as possibly a Task 3 table of HPV
probabilities (``kind: "other_task"``); informative risks in [0, 1] are not.

Resampling uses the weighted metrics of :mod:`evaluator.metrics.weighted` (one matrix
product per resample batch, no case list built).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import numpy as np

from evaluator.metrics.aggregate import kind_of
from evaluator.metrics.weighted import weighted_metrics
from evaluator.protocol import Hecktor2026Protocol, Protocol

__all__ = ["RESAMPLES", "SEED", "UPPER_PERCENTILE", "ResultWarning", "orientation_warnings"]

RESAMPLES = 500
SEED = 20250
UPPER_PERCENTILE = 97.5
MIN_CASES_OTHER_TASK = 20
_LABELS = {"c_index": "C-index", "rfs_cindex": "RFS C-index", "auc": "AUC"}


class ResultWarning(TypedDict):
    """A warning about a scored (or validated) submission: ``kind`` names the check,
    ``metric`` the metric it is about, ``message`` is written for the participant."""

    kind: str
    metric: str
    message: str


def _interval(
    task: int, records: Sequence[Mapping[str, Any]], metric: str, protocol: Protocol
) -> tuple[float, float, float]:
    """The metric on the full data and the bounds of its 95% bootstrap interval (NaN
    when the metric is undefined on the full data or on every resample)."""
    n = len(records)
    full = float(weighted_metrics(task, records, np.ones(n), protocol=protocol)[metric])
    if not math.isfinite(full) or n < 2:
        return full, math.nan, math.nan
    rng = np.random.default_rng(SEED)
    idx = rng.integers(0, n, size=(RESAMPLES, n), dtype=np.int64)
    idx += (np.arange(RESAMPLES, dtype=np.int64) * n)[:, None]
    w = np.bincount(idx.ravel(), minlength=RESAMPLES * n).reshape(RESAMPLES, n)
    values = weighted_metrics(task, records, w, protocol=protocol)[metric]
    values = values[np.isfinite(values)]
    if values.size == 0:
        return full, math.nan, math.nan
    low, high = np.percentile(values, [100.0 - UPPER_PERCENTILE, UPPER_PERCENTILE])
    return full, float(low), float(high)


def _survival_message(metric: str, value: float, upper: float, meaning: str) -> str:
    head = (
        f"the {_LABELS[metric]} is {value:.3f} (upper bound of its 95% bootstrap interval "
        f"{upper:.3f}, below 0.5): the "
        "predictions order the patients mostly opposite to their observed recurrence, "
        "worse than random predictions (0.5)"
    )
    if meaning == "time":
        return (
            f"{head}. Under these rules a prediction is a predicted RFS time (higher = later "
            "recurrence); the predictions look like risks, not RFS times: negate them (or "
            "submit the predicted times) and submit again. The score stands as computed."
        )
    return (
        f"{head}. A prediction is a risk score (higher = earlier recurrence); the "
        "predictions look like RFS times, not risks: negate them (Prediction = -time) and "
        "submit again. The score stands as computed."
    )


def _auc_message(value: float, upper: float) -> str:
    return (
        f"the AUC is {value:.3f} (upper bound of its 95% bootstrap interval {upper:.3f}, "
        "below 0.5): the "
        "predictions rank HPV-negative cases above HPV-positive ones, worse than random "
        "predictions (0.5). A prediction is the probability of HPV positive; the "
        "probabilities look inverted: use 1 - p and submit again. The score stands as "
        "computed."
    )


def _probability_warning(
    records: Sequence[Mapping[str, Any]], metric: str, value: float, lower: float, upper: float
) -> list[ResultWarning]:
    """A Task 2 submission that may be a Task 3 table: every prediction a probability
    (in [0, 1], not all equal) and a C-index no better than chance."""
    if len(records) < MIN_CASES_OTHER_TASK:
        return []  # the interval of a handful of cases holds 0.5 whatever they predict
    preds = np.asarray([float(r["prediction"]) for r in records])
    if not (preds.min() >= 0.0 and preds.max() <= 1.0 and preds.min() < preds.max()):
        return []
    return [
        {
            "kind": "other_task",
            "metric": metric,
            "message": f"every prediction lies between 0 and 1, as Task 3's HPV "
            f"probabilities do, and the {_LABELS[metric]} ({value:.3f}, 95% bootstrap "
            f"interval {lower:.3f} to {upper:.3f}) is no better than chance: if this is your "
            "Task 3 (HPV status) table, upload it to Task 3. Task 2 takes risk scores "
            "(risks between 0 and 1 are fine if that is what they are).",
        }
    ]


def orientation_warnings(
    task: int, records: Sequence[Mapping[str, Any]], protocol: Protocol
) -> list[ResultWarning]:
    """The orientation warning of a Task 2 or Task 3 (HPV status) submission, when its
    C-index or AUC is far below 0.5 (see the module docstring); empty otherwise and for
    the other scoring components."""
    if task not in (1, 2, 3) or not records:
        return []
    kind = kind_of(task, protocol)
    if kind == "survival_risk":
        metric, meaning = "c_index", "risk"
    elif kind == "survival_rfs" and isinstance(protocol, Hecktor2026Protocol):
        metric, meaning = "rfs_cindex", protocol.rfs_meaning
    elif kind == "hpv_status":
        metric, meaning = "auc", ""
    else:
        return []
    value, lower, upper = _interval(task, records, metric, protocol)
    if math.isfinite(upper) and lower <= 0.5 <= upper and metric != "auc":
        return _probability_warning(records, metric, value, lower, upper)
    if not (math.isfinite(upper) and upper < 0.5):
        return []
    message = (
        _auc_message(value, upper)
        if metric == "auc"
        else _survival_message(metric, value, upper, meaning)
    )
    return [{"kind": "inverted_predictions", "metric": metric, "message": message}]
