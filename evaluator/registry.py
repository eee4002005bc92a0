"""Every metric registered once, with its task, name and direction.

Ranking reads the direction from here; nothing else hard-codes "higher is better".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, kw_only=True)
class Metric:
    name: str
    task: int
    higher_is_better: bool
    ranked: bool  # takes part in the HECKTOR ranking of its task
    kind: Literal["score", "count"] = "score"
    label: str = ""


METRICS: tuple[Metric, ...] = (
    Metric(
        name="gtvp_dsc_mean",
        task=1,
        higher_is_better=True,
        ranked=True,
        label="GTVp DSC (mean)",
    ),
    Metric(
        name="gtvn_dsc_agg",
        task=1,
        higher_is_better=True,
        ranked=True,
        label="GTVn DSC (aggregated)",
    ),
    Metric(
        name="gtvn_f1_agg",
        task=1,
        higher_is_better=True,
        ranked=True,
        label="GTVn F1 (aggregated)",
    ),
    Metric(
        name="gtvn_tp",
        task=1,
        higher_is_better=True,
        ranked=False,
        kind="count",
        label="GTVn TP",
    ),
    Metric(
        name="gtvn_fp",
        task=1,
        higher_is_better=False,
        ranked=False,
        kind="count",
        label="GTVn FP",
    ),
    Metric(
        name="gtvn_fn",
        task=1,
        higher_is_better=False,
        ranked=False,
        kind="count",
        label="GTVn FN",
    ),
    Metric(
        name="c_index",
        task=2,
        higher_is_better=True,
        ranked=True,
        label="C-index",
    ),
    Metric(
        name="auc",
        task=3,
        higher_is_better=True,
        ranked=True,
        label="AUC",
    ),
    Metric(
        name="balanced_accuracy",
        task=3,
        higher_is_better=True,
        ranked=False,
        label="Balanced accuracy",
    ),
    Metric(
        name="sensitivity",
        task=3,
        higher_is_better=True,
        ranked=False,
        label="Sensitivity",
    ),
    Metric(
        name="specificity",
        task=3,
        higher_is_better=True,
        ranked=False,
        label="Specificity",
    ),
    Metric(
        name="f1_macro",
        task=3,
        higher_is_better=True,
        ranked=False,
        label="F1 macro",
    ),
    Metric(
        name="f1_weighted",
        task=3,
        higher_is_better=True,
        ranked=False,
        label="F1 weighted",
    ),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}


def metrics_of(task: int) -> tuple[Metric, ...]:
    return tuple(m for m in METRICS if m.task == task)


def ranked_metrics(task: int) -> tuple[Metric, ...]:
    return tuple(m for m in METRICS if m.task == task and m.ranked)


def leaderboard_metrics(task: int) -> tuple[str, ...]:
    """The metrics a leaderboard shows for ``task`` (registry order): the scores, not
    the counts."""
    if task not in (1, 2, 3):
        raise ValueError(f"task must be 1, 2 or 3, not {task!r}")
    return tuple(m.name for m in metrics_of(task) if m.kind == "score")
