"""Task metrics from per-case records, for any task: what a result document holds,
recomputed from its ``cases`` without reading any image again (bootstrap, per-centre
tables, re-ranking).

Each edition names, per task, the scoring component that computes its metrics
(``Protocol.TASKS[task].kind``); :data:`AGGREGATORS` maps each component to the
function that reads its switches from the protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from evaluator.edge_cases import edge_value
from evaluator.metrics.classification import aggregate_task3
from evaluator.metrics.segmentation import aggregate_task1, two_label_dsc
from evaluator.metrics.staging import aggregate_staging
from evaluator.metrics.survival import aggregate_rfs, aggregate_task2
from evaluator.protocol import HECKTOR2025, Hecktor2026Protocol, Protocol

__all__ = ["AGGREGATORS", "aggregate", "kind_of"]

Records = Sequence[Mapping[str, Any]]


def _needs_2026(protocol: Protocol, kind: str) -> Hecktor2026Protocol:
    """``protocol`` as one that has the switches of the 2026 components."""
    if not isinstance(protocol, Hecktor2026Protocol):
        raise TypeError(
            f"the scoring component {kind!r} reads switches of hecktor2026; "
            f"{protocol.name!r} is a {type(protocol).__name__}"
        )
    return protocol


def _two_label(cases: Records, protocol: Protocol) -> dict[str, float]:
    p = _needs_2026(protocol, "segmentation_two_label")
    no_voxel = {}
    for label in ("gtvp", "gtvn"):
        value = edge_value(f"seg_{label}_dsc", p)
        assert value is not None
        no_voxel[label] = value
    return two_label_dsc(
        cases,
        mode=p.dsc_mode,
        gtvp_both_empty=edge_value("gtvp_dsc", p),
        gtvn_both_empty=edge_value("gtvn_dsc", p),
        physical=p.dsc_agg_weighting == "physical",
        if_no_voxel=no_voxel,
    )


def _rfs(cases: Records, protocol: Protocol) -> dict[str, float]:
    return aggregate_rfs(cases, meaning=_needs_2026(protocol, "survival_rfs").rfs_meaning)


def _staging(cases: Records, protocol: Protocol) -> dict[str, float]:
    p = _needs_2026(protocol, "staging")
    return aggregate_staging(cases, t_stages=p.t_stages, n_stages=p.n_stages)


AGGREGATORS: dict[str, Callable[[Records, Protocol], dict[str, float]]] = {
    "segmentation_hecktor2025": lambda cases, p: aggregate_task1(cases, protocol=p),
    "survival_risk": lambda cases, p: aggregate_task2(cases, protocol=p),
    "hpv_status": lambda cases, p: aggregate_task3(cases, protocol=p),
    "segmentation_two_label": _two_label,
    "survival_rfs": _rfs,
    "staging": _staging,
}


def kind_of(task: int, protocol: Protocol) -> str:
    """The scoring component of ``task`` under ``protocol``."""
    if task not in (1, 2, 3):
        raise ValueError(f"task must be 1, 2 or 3, not {task!r}")
    return protocol.TASKS[task].kind


def aggregate(task: int, cases: Records, protocol: Protocol = HECKTOR2025) -> dict[str, float]:
    """The metrics of ``task`` (and ``n_cases``) from its per-case records."""
    return AGGREGATORS[kind_of(task, protocol)](cases, protocol)
