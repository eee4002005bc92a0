"""Every metric registered once, with its task, name and direction.

Ranking reads the direction from here; nothing else hard-codes "higher is better".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Metric:
    name: str
    task: int
    higher_is_better: bool
    ranked: bool  # takes part in the HECKTOR ranking of its task
    kind: Literal["score", "count"] = "score"
    label: str = ""


METRICS: tuple[Metric, ...] = (
    Metric("gtvp_dsc_mean", 1, True, True, label="GTVp DSC (mean)"),
    Metric("gtvn_dsc_agg", 1, True, True, label="GTVn DSC (aggregated)"),
    Metric("gtvn_f1_agg", 1, True, True, label="GTVn F1 (aggregated)"),
    Metric("gtvn_tp", 1, True, False, kind="count", label="GTVn TP"),
    Metric("gtvn_fp", 1, False, False, kind="count", label="GTVn FP"),
    Metric("gtvn_fn", 1, False, False, kind="count", label="GTVn FN"),
    Metric("c_index", 2, True, True, label="C-index"),
    Metric("auc", 3, True, True, label="AUC"),
    Metric("balanced_accuracy", 3, True, False, label="Balanced accuracy"),
    Metric("sensitivity", 3, True, False, label="Sensitivity"),
    Metric("specificity", 3, True, False, label="Specificity"),
    Metric("f1_macro", 3, True, False, label="F1 macro"),
    Metric("f1_weighted", 3, True, False, label="F1 weighted"),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}


def metrics_of(task: int) -> tuple[Metric, ...]:
    return tuple(m for m in METRICS if m.task == task)


def ranked_metrics(task: int) -> tuple[Metric, ...]:
    return tuple(m for m in METRICS if m.task == task and m.ranked)
