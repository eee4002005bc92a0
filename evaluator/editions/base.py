"""What an edition of the rules declares, and the table of editions by name.

An edition is a protocol class (a frozen dataclass whose fields are the switches of
its rules, hashed into every result) that also declares, as class attributes outside
the hash, what the code of the layers above reads from it:

- ``METRICS``: every metric it reports, once, with its task, name and direction
  (:class:`Metric`); metric names are unique across editions;
- ``EDGE_CASES``: what its metrics are worth on degenerate data (:class:`EdgeCase`);
- ``TASKS``: per task, the scoring component that computes its metrics (``kind``, a
  key of :mod:`evaluator.metrics.aggregate`'s table), its ranking rule
  (:class:`RankBy`, :class:`RankOfSum`) and the per-case outputs an algorithm job
  writes for it on grand-challenge (:class:`AlgorithmOutput`);
- ``ONE_JOB_ALL_TASKS``: whether one algorithm job writes the outputs of every task
  (one container per edition) or each phase scores one task.

:func:`register_edition` records a protocol class under its default ``name``;
``Protocol.from_dict`` reads that name to build the right class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

__all__ = [
    "AlgorithmOutput",
    "EdgeCase",
    "Metric",
    "RankBy",
    "RankOfSum",
    "RankRule",
    "TaskSpec",
    "ValueKind",
    "check_spec",
    "edition_class",
    "edition_names",
    "register_edition",
]


@dataclass(frozen=True, kw_only=True)
class Metric:
    name: str
    task: int
    higher_is_better: bool
    ranked: bool  # takes part in the ranking of its task
    kind: Literal["score", "count"] = "score"
    label: str = ""


@dataclass(frozen=True, kw_only=True)
class EdgeCase:
    metric: str
    when: str  # the degenerate situation
    value: float | None  # None: undefined
    protocol_field: str | None = None  # the protocol switch that sets the value


@dataclass(frozen=True)
class RankBy:
    """Rank by one metric, in its registered direction; reported under its name."""

    metric: str


@dataclass(frozen=True)
class RankOfSum:
    """Rank of the sum of the parts' ranks, the lower sum first; reported under
    ``name`` (the top rule of a task is also reported as ``final``)."""

    name: str
    parts: tuple[RankRule, ...]


RankRule = RankBy | RankOfSum


ValueKind = Literal["number", "boolean", "number_or_boolean", "string", "any"]


@dataclass(frozen=True, kw_only=True)
class AlgorithmOutput:
    """One per-case output of a grand-challenge algorithm job that a task scores, known
    by the socket's ``relative_path`` (where the job wrote it under ``/output``).

    What a valid output holds, as the socket declares it on grand-challenge: an image
    socket's voxel values (``labels``, a segmentation's overlay segments); a value
    socket's JSON kind (``value``: a number, a boolean, a string, anything) and, for a
    string chosen from a set, ``classes``: the name of the protocol field listing the
    allowed strings (``"t_stages"``), so that a protocol variant's set is the one read.
    """

    relative_path: str  # e.g. "images/head-neck-tumor-segmentation" or "rfs.json"
    image: bool  # an image socket (a folder holding one .mha) or a JSON value file
    also: tuple[str, ...] = ()  # other relative paths accepted for the same output
    labels: tuple[int, ...] = ()  # image: the voxel values allowed (empty: any)
    value: ValueKind = "any"  # value: the JSON kind of the file's content
    classes: str = ""  # value "string": the protocol field listing the allowed strings
    example: str = ""  # a valid value as JSON, for messages (default by the kind)

    @property
    def case_file(self) -> str:
        """The file name of a value output in a per-case folder (``rfs.json``)."""
        return self.relative_path.rsplit("/", 1)[-1]


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """One task of an edition: the component that scores it, its ranking rule, and what
    pages call it (``title``, short; ``long_title``, for reports)."""

    kind: str
    ranking: RankRule
    title: str = ""
    long_title: str = ""
    outputs: tuple[AlgorithmOutput, ...] = ()


_T = TypeVar("_T", bound=type[Any])
_EDITIONS: dict[str, type[Any]] = {}


def register_edition(name: str) -> Callable[[_T], _T]:
    """Class decorator: the protocol class of the edition called ``name``."""

    def register(cls: _T) -> _T:
        if name in _EDITIONS and _EDITIONS[name] is not cls:
            raise ValueError(f"edition {name!r} is registered twice")
        _EDITIONS[name] = cls
        return cls

    return register


def edition_class(name: str) -> type[Any] | None:
    """The protocol class registered as ``name``, or None."""
    return _EDITIONS.get(name)


def edition_names() -> tuple[str, ...]:
    return tuple(_EDITIONS)


def check_spec(metrics: tuple[Metric, ...], tasks: Mapping[int, TaskSpec]) -> None:
    """Refuse an edition whose ranking rules name metrics it does not rank."""
    names = {m.name for m in metrics}
    if len(names) != len(metrics):
        raise ValueError("an edition lists a metric twice")
    for task, spec in tasks.items():
        leaves = set(_leaves(spec.ranking))
        ranked = {m.name for m in metrics if m.task == task and m.ranked}
        if leaves != ranked:
            raise ValueError(
                f"Task {task}: the ranking rule uses {sorted(leaves)}, the metrics marked "
                f"ranked are {sorted(ranked)}"
            )


def _leaves(rule: RankRule) -> list[str]:
    if isinstance(rule, RankBy):
        return [rule.metric]
    return [name for part in rule.parts for name in _leaves(part)]
