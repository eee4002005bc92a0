"""The leaderboard as a typed record: a :class:`Board` and its rows (:class:`BoardRow`),
as :func:`app.services.leaderboards.leaderboard` derives it and
:func:`app.services.snapshots.frozen_board` serves it from a snapshot."""

from __future__ import annotations

from datetime import datetime
from typing import NotRequired, TypedDict

__all__ = ["Board", "BoardRow", "MetricValue", "ProtocolRef"]

#: a metric as stored: a real number, a count, or None when undefined
MetricValue = float | int | None


class ProtocolRef(TypedDict):
    """Name and version of the protocol a frozen row's result was computed with."""

    name: str | None
    version: str | None


class BoardRow(TypedDict):
    """One team's submission on a board; ``rank`` is the final HECKTOR rank (1 = best),
    ``ranks`` each ranked metric's rank and ``final``. Rows of a frozen board also say
    what their result was computed from."""

    rank: float
    team: str
    submission_id: int
    metrics: dict[str, MetricValue]
    ranks: dict[str, float]
    submitted_at: str | None
    scored_at: str | None
    submission_sha256: NotRequired[str | None]
    ground_truth_sha256: NotRequired[str]
    protocol_sha256: NotRequired[str]
    protocol: NotRequired[ProtocolRef]
    evaluator_version: NotRequired[str]
    result_sha256: NotRequired[str | None]


class Board(TypedDict):
    """A phase task's leaderboard. A frozen one (``frozen`` true) is a stored snapshot:
    it says when it was frozen and which snapshot it is."""

    phase: str
    task: int
    selection: str
    protocol_sha256: str
    ground_truth_sha256: str
    rows: list[BoardRow]
    frozen: bool
    # the name of the protocol the board is ranked by (absent in boards frozen before
    # there were editions: those are hecktor2025)
    protocol: NotRequired[str]
    frozen_at: NotRequired[datetime]
    snapshot_id: NotRequired[int]
    snapshot_sha256: NotRequired[str]
