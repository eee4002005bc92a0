"""Every metric registered once, with its task, name and direction.

Each edition of the rules declares its metrics (``Protocol.METRICS``, see
:mod:`evaluator.editions`); names are unique across editions, so :data:`BY_NAME`
finds any of them. Ranking reads the direction from here; nothing else hard-codes
"higher is better". The functions take the protocol, or an edition's name; by
default the HECKTOR 2025 one.
"""

from __future__ import annotations

from evaluator.editions.base import Metric, edition_class
from evaluator.protocol import BUILTIN_NAMES, HECKTOR2025, Protocol, builtin_protocol

__all__ = [
    "BY_NAME",
    "METRICS",
    "Metric",
    "ProtocolRef",
    "leaderboard_metrics",
    "metrics_of",
    "protocol_of",
    "ranked_metrics",
]

ProtocolRef = Protocol | str

#: the HECKTOR 2025 metrics, in registry order
METRICS: tuple[Metric, ...] = HECKTOR2025.METRICS

BY_NAME: dict[str, Metric] = {
    m.name: m for name in BUILTIN_NAMES for m in builtin_protocol(name).METRICS
}


def protocol_of(protocol: ProtocolRef | None) -> Protocol:
    """The protocol itself, or the default protocol of the edition named. A name that
    is no edition is a variant of the 2025 rules (as ``Protocol.from_dict`` reads it),
    and None is the 2025 protocol (boards stored before editions carry no name)."""
    if isinstance(protocol, Protocol):
        return protocol
    if protocol is not None and edition_class(protocol) is not None:
        return builtin_protocol(protocol)
    return HECKTOR2025


def _check_task(task: int) -> None:
    if task not in (1, 2, 3):
        raise ValueError(f"task must be 1, 2 or 3, not {task!r}")


def metrics_of(task: int, protocol: ProtocolRef | None = HECKTOR2025) -> tuple[Metric, ...]:
    """Every metric of ``task`` under ``protocol``'s edition, in registry order."""
    return tuple(m for m in protocol_of(protocol).METRICS if m.task == task)


def ranked_metrics(task: int, protocol: ProtocolRef | None = HECKTOR2025) -> tuple[Metric, ...]:
    return tuple(m for m in metrics_of(task, protocol) if m.ranked)


def leaderboard_metrics(task: int, protocol: ProtocolRef | None = HECKTOR2025) -> tuple[str, ...]:
    """The metrics a leaderboard shows for ``task`` (registry order): the scores, not
    the counts."""
    _check_task(task)
    return tuple(m.name for m in metrics_of(task, protocol) if m.kind == "score")
