"""Metrics per centre: every metric of a task on each centre's subset of the stored
per-case records (pure: no image is read)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluator.errors import ScoringError
from evaluator.metrics.aggregate import aggregate
from evaluator.metrics.weighted import finite_or_none, weighted_metrics
from evaluator.patients import case_center
from evaluator.protocol import HECKTOR2025, Protocol
from evaluator.registry import leaderboard_metrics

__all__ = ["CenterResult", "per_center"]


@dataclass(frozen=True, kw_only=True)
class CenterResult:
    """The metrics of one centre's cases; ``None`` where undefined, with the reason."""

    center: str
    n_cases: int
    metrics: dict[str, float | int | None]
    undefined: dict[str, str]  # metric -> why it is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "center": self.center,
            "n_cases": self.n_cases,
            "metrics": {
                k: (finite_or_none(v) if isinstance(v, float) else v)
                for k, v in self.metrics.items()
            },
            "undefined": dict(self.undefined),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CenterResult:
        """The inverse of :meth:`to_dict`."""
        return cls(
            center=str(d["center"]),
            n_cases=int(d["n_cases"]),
            metrics=dict(d["metrics"]),
            undefined=dict(d.get("undefined") or {}),
        )


def _center_result(
    task: int, center: str, subset: Sequence[Mapping[str, Any]], protocol: Protocol
) -> CenterResult:
    try:
        agg = aggregate(task, subset, protocol)
    except ScoringError as exc:
        ones = weighted_metrics(task, subset, np.ones(len(subset)), protocol=protocol)
        metrics: dict[str, float | int | None] = {}
        undefined: dict[str, str] = {}
        for k in leaderboard_metrics(task, protocol):
            v = finite_or_none(ones[k])
            metrics[k] = v
            if v is None:
                undefined[k] = str(exc)
        return CenterResult(
            center=center, n_cases=len(subset), metrics=metrics, undefined=undefined
        )
    return CenterResult(
        center=center,
        n_cases=len(subset),
        metrics={k: v for k, v in agg.items() if k != "n_cases"},
        undefined={},
    )


def per_center(
    task: int, cases: Sequence[Mapping[str, Any]], *, protocol: Protocol = HECKTOR2025
) -> dict[str, CenterResult]:
    """Every metric of ``task`` on each centre's subset of ``cases`` (sorted by centre).

    Values come from :func:`evaluator.metrics.aggregate.aggregate`. When it refuses a
    centre (e.g. one HPV class only, or no comparable pair), each metric that is still
    defined on that subset is reported and every other one is ``None`` with the reason.
    """
    leaderboard_metrics(task, protocol)  # a ValueError for an unknown task, even without cases
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for rec in cases:
        groups.setdefault(case_center(rec), []).append(rec)
    return {c: _center_result(task, c, groups[c], protocol) for c in sorted(groups)}
