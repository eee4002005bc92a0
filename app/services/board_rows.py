"""A leaderboard's ranked rows, derived from scored entries by a pure function (never
edited in place).

``build_leaderboard`` takes every scored, non-dry-run submission of one phase and task
and returns the ranked rows: per team its best submission (best final HECKTOR rank
among all scored submissions of the phase and task, earliest first on a tie) or its
latest one, then ranked among themselves with :func:`evaluator.ranking.rank_rows`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from app.services.records import BoardRow
from evaluator.protocol import HECKTOR2025, Protocol
from evaluator.ranking import rank_rows
from evaluator.registry import metrics_of

Selection = Literal["best", "latest"]


@dataclass(frozen=True)
class Entry:
    team: str
    submission_id: int
    metrics: Mapping[str, Any]
    submitted_at: datetime
    scored_at: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t is not None else None


def select_entries(
    task: int,
    entries: Sequence[Entry],
    *,
    selection: Selection,
    protocol: Protocol = HECKTOR2025,
) -> list[Entry]:
    """One entry per team: its best (by final rank among all entries, under the ranking
    rule of ``protocol``'s edition) or its latest."""
    if selection not in ("best", "latest"):
        raise ValueError(f"selection must be 'best' or 'latest', not {selection!r}")
    chosen: dict[str, tuple[tuple[Any, ...], Entry]] = {}
    key: tuple[Any, ...]
    if selection == "latest":
        for e in entries:
            key = (-e.submitted_at.timestamp(), -e.submission_id)
            if e.team not in chosen or key < chosen[e.team][0]:
                chosen[e.team] = (key, e)
    else:
        ranks = rank_rows(task, [e.metrics for e in entries], protocol)
        for e, r in zip(entries, ranks, strict=True):
            key = (r["final"], e.submitted_at.timestamp(), e.submission_id)
            if e.team not in chosen or key < chosen[e.team][0]:
                chosen[e.team] = (key, e)
    return [e for _, e in chosen.values()]


def build_leaderboard(
    task: int,
    entries: Sequence[Entry],
    *,
    selection: Selection = "best",
    protocol: Protocol = HECKTOR2025,
) -> list[BoardRow]:
    """Ranked leaderboard rows (``rank`` is the final rank of ``protocol``'s ranking
    rule for the task, 1 = best; its metrics are those of ``protocol``'s edition)."""
    chosen = select_entries(task, entries, selection=selection, protocol=protocol)
    ranks = rank_rows(task, [e.metrics for e in chosen], protocol)
    names = [m.name for m in metrics_of(task, protocol)]
    rows: list[BoardRow] = [
        {
            "rank": r["final"],
            "team": e.team,
            "submission_id": e.submission_id,
            "metrics": {k: e.metrics[k] for k in names if k in e.metrics},
            "ranks": r,
            "submitted_at": _iso(e.submitted_at),
            "scored_at": _iso(e.scored_at),
        }
        for e, r in zip(chosen, ranks, strict=True)
    ]
    rows.sort(key=lambda row: (row["rank"], row["team"], row["submission_id"]))
    return rows
