"""What each metric is worth on degenerate data, as one table.

A cell's ``value`` is the metric's value in that situation; ``None`` means the metric
is undefined there: :func:`evaluator.metrics.aggregate.aggregate` raises
:class:`evaluator.errors.ScoringError` (zero scored cases is an error, not a score) and
:func:`evaluator.metrics.weighted.weighted_metrics` gives NaN. A cell with a
``protocol_field`` takes its value from that switch of the protocol instead
(``"exclude"``: the case is left out of the mean).
"""

from __future__ import annotations

from dataclasses import dataclass

from evaluator.protocol import HECKTOR2025, Protocol

__all__ = ["EDGE_CASES", "EdgeCase", "edge_value"]


@dataclass(frozen=True, kw_only=True)
class EdgeCase:
    metric: str
    when: str  # the degenerate situation
    value: float | None  # None: undefined
    protocol_field: str | None = None  # the protocol switch that sets the value


EDGE_CASES: tuple[EdgeCase, ...] = (
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
    EdgeCase(
        metric="gtvn_dsc_agg",
        when="no GTVn voxel in any truth or prediction",
        value=1.0,
    ),
    EdgeCase(
        metric="gtvn_f1_agg",
        when="no GTVn lesion in any truth or prediction (TP + FP + FN = 0)",
        value=1.0,
    ),
    EdgeCase(metric="c_index", when="no comparable pair of patients", value=None),
    EdgeCase(metric="auc", when="the cases hold one HPV class only", value=None),
)

_BY_METRIC: dict[str, EdgeCase] = {c.metric: c for c in EDGE_CASES}


def edge_value(metric: str, protocol: Protocol = HECKTOR2025) -> float | None:
    """The value of ``metric`` in its degenerate situation under ``protocol``."""
    case = _BY_METRIC[metric]
    if case.protocol_field is None:
        return case.value
    raw = str(getattr(protocol, case.protocol_field))
    return None if raw == "exclude" else float(raw)
