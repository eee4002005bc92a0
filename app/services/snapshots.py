"""Frozen leaderboards, read side: the active snapshot of a phase task, the history,
and a snapshot served as a board."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TypedDict, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import (
    LeaderboardSnapshot,
    Phase,
)
from app.errors import Conflict
from app.services.records import Board

log = logging.getLogger(__name__)


def active_snapshot(session: Session, phase_id: int, task: int) -> LeaderboardSnapshot | None:
    return session.scalars(
        select(LeaderboardSnapshot).where(
            LeaderboardSnapshot.phase_id == phase_id,
            LeaderboardSnapshot.task == task,
            LeaderboardSnapshot.active.is_(True),
        )
    ).first()


def snapshots(
    session: Session, phase: Phase, *, active_only: bool = False
) -> list[LeaderboardSnapshot]:
    q = select(LeaderboardSnapshot).where(LeaderboardSnapshot.phase_id == phase.id)
    if active_only:
        q = q.where(LeaderboardSnapshot.active.is_(True))
    return list(session.scalars(q.order_by(LeaderboardSnapshot.id)))


def frozen_board(snap: LeaderboardSnapshot, *, selection: str | None = None) -> Board:
    """The stored board, served as it is (plus where it comes from)."""
    if selection is not None and selection != snap.selection:
        raise Conflict(
            f"the leaderboard is frozen with selection {snap.selection!r}; "
            f"{selection!r} exists only on the live leaderboard (organizers: live=true)"
        )
    return cast(
        Board,
        {
            **snap.board,
            "frozen": True,
            "frozen_at": snap.frozen_at,
            "snapshot_id": snap.id,
            "snapshot_sha256": snap.content_sha256,
        },
    )


class SnapshotView(TypedDict):
    """What a snapshot is, without its board: the freeze's settings and hashes."""

    id: int
    task: int
    selection: str
    active: bool
    frozen_at: datetime
    unfrozen_at: datetime | None
    note: str
    n_rows: int
    n_resamples: int | None
    seed: int | None
    content_sha256: str
    evaluator_version: str


def snapshot_summary(snap: LeaderboardSnapshot) -> SnapshotView:
    analysis = snap.analysis or {}
    return {
        "id": snap.id,
        "task": snap.task,
        "selection": snap.selection,
        "active": snap.active,
        "frozen_at": snap.frozen_at,
        "unfrozen_at": snap.unfrozen_at,
        "note": snap.note,
        "n_rows": len(snap.board.get("rows", [])),
        "n_resamples": analysis.get("n_resamples"),
        "seed": analysis.get("seed"),
        "content_sha256": snap.content_sha256,
        "evaluator_version": snap.evaluator_version,
    }
