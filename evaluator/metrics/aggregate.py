"""Task metrics from per-case records, for any task: what a result document holds,
recomputed from its ``cases`` without reading any image again (bootstrap, per-centre
tables, re-ranking)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evaluator.metrics.classification import aggregate_task3
from evaluator.metrics.segmentation import aggregate_task1
from evaluator.metrics.survival import aggregate_task2
from evaluator.protocol import HECKTOR2025, Protocol

__all__ = ["aggregate"]


def aggregate(
    task: int, cases: Sequence[Mapping[str, Any]], protocol: Protocol = HECKTOR2025
) -> dict[str, float]:
    """The metrics of ``task`` (and ``n_cases``) from its per-case records."""
    if task == 1:
        return aggregate_task1(cases, protocol=protocol)
    if task == 2:
        return aggregate_task2(cases, protocol=protocol)
    if task == 3:
        return aggregate_task3(cases, protocol=protocol)
    raise ValueError(f"task must be 1, 2 or 3, not {task!r}")
