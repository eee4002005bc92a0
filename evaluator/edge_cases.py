"""What each metric is worth on degenerate data, as one table per edition of the rules
(``Protocol.EDGE_CASES``, declared in :mod:`evaluator.editions`).

A cell's ``value`` is the metric's value in that situation; ``None`` means the metric
is undefined there: :func:`evaluator.metrics.aggregate.aggregate` raises
:class:`evaluator.errors.ScoringError` (zero scored cases is an error, not a score) and
:func:`evaluator.metrics.weighted.weighted_metrics` gives NaN. A cell with a
``protocol_field`` takes its value from that switch of the protocol instead
(``"exclude"``: the case is left out of the mean).
"""

from __future__ import annotations

from evaluator.editions.base import EdgeCase
from evaluator.protocol import HECKTOR2025, Protocol

__all__ = ["EDGE_CASES", "EdgeCase", "edge_cases_of", "edge_value"]

#: the HECKTOR 2025 table
EDGE_CASES: tuple[EdgeCase, ...] = HECKTOR2025.EDGE_CASES


def edge_cases_of(protocol: Protocol) -> tuple[EdgeCase, ...]:
    """The table of ``protocol``'s edition."""
    return protocol.EDGE_CASES


def edge_value(metric: str, protocol: Protocol = HECKTOR2025) -> float | None:
    """The value of ``metric`` in its degenerate situation under ``protocol``."""
    case = next((c for c in protocol.EDGE_CASES if c.metric == metric), None)
    if case is None:
        raise KeyError(f"{metric!r} has no degenerate-case row under {protocol.name}")
    if case.protocol_field is None:
        return case.value
    raw = str(getattr(protocol, case.protocol_field))
    return None if raw == "exclude" else float(raw)
