"""A phase task's leaderboard: its frozen snapshot while the phase is frozen, else
derived from the stored results; and a phase's overall ranking across its tasks."""

from __future__ import annotations

import logging
import math
from typing import TypedDict, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.access import check_leaderboard_visible
from app.db.models import (
    FAILED,
    Phase,
    Result,
    Submission,
    Team,
)
from app.errors import BadRequest, Forbidden
from app.security import Principal
from app.services.board_rows import Entry, Selection, build_leaderboard
from app.services.phases import get_phase, get_phase_task, task_protocol
from app.services.records import Board
from evaluator.ranking import combined_task_ranks, overall_ranks

log = logging.getLogger(__name__)


def leaderboard_entries(session: Session, phase: Phase, task: int) -> list[Entry]:
    rows = session.execute(
        select(Submission, Team.name, Result.metrics)
        .join(Team, Team.id == Submission.team_id)
        .join(Result, Result.submission_id == Submission.id)
        .where(
            Submission.phase_id == phase.id,
            Submission.task == task,
            Submission.dry_run.is_(False),
            Submission.status != FAILED,
        )
        .order_by(Submission.id)
    ).all()
    return [
        Entry(
            team=team,
            submission_id=sub.id,
            metrics=metrics,
            submitted_at=sub.submitted_at,
            scored_at=sub.finished_at,
        )
        for sub, team, metrics in rows
    ]


def leaderboard(
    session: Session,
    phase_name: str,
    task: int,
    principal: Principal | None,
    *,
    selection: str | None = None,
    live: bool = False,
) -> Board:
    """The leaderboard of a phase and task. While the phase is frozen, its snapshot is
    served as stored (``frozen`` true); ``live`` (organizers only) derives the current
    board from the stored rows instead."""
    phase = get_phase(session, phase_name)
    check_leaderboard_visible(phase, principal)
    if live and (principal is None or not principal.is_organizer):
        raise Forbidden("only organizers can see the live leaderboard (live=true)")
    pt = get_phase_task(session, phase, task)
    if not live:
        from app.services.snapshots import active_snapshot, frozen_board

        snap = active_snapshot(session, phase.id, task)
        if snap is not None:
            return frozen_board(snap, selection=selection)
    sel = selection or phase.selection
    if sel not in ("best", "latest"):
        raise BadRequest(f"selection must be 'best' or 'latest', not {sel!r}")
    protocol = task_protocol(pt)
    rows = build_leaderboard(
        task,
        leaderboard_entries(session, phase, task),
        selection=cast(Selection, sel),
        protocol=protocol,
    )
    return {
        "phase": phase.name,
        "task": task,
        "selection": sel,
        "protocol": protocol.name,
        "protocol_sha256": pt.protocol_sha256,
        "ground_truth_sha256": pt.gt_sha256,
        "rows": rows,
        "frozen": False,
    }


class OverallRow(TypedDict):
    """One team's overall rank: the rank of its weighted mean task rank (``combined``;
    None when the team is missing from a weighted task, ranked last)."""

    rank: float
    team: str
    combined: float | None
    task_ranks: dict[str, float]


class OverallBoard(TypedDict):
    phase: str
    protocols: list[str]
    weights: dict[str, float]
    rows: list[OverallRow]


def overall_leaderboard(
    session: Session,
    phase_name: str,
    principal: Principal | None,
    *,
    selection: str | None = None,
    live: bool = False,
) -> OverallBoard:
    """The overall ranking of a phase's teams across its tasks: each task's board (the
    snapshot while frozen), combined by :func:`evaluator.ranking.overall_ranks` with the
    weights each task's protocol declares for it (``task_weights`` of hecktor2026;
    1 each under hecktor2025)."""
    phase = get_phase(session, phase_name)
    check_leaderboard_visible(phase, principal)
    task_ranks: dict[int, dict[str, float]] = {}
    weights: dict[int, float] = {}
    protocols: set[str] = set()
    for pt in sorted(phase.tasks, key=lambda t: t.task):
        board = leaderboard(session, phase_name, pt.task, principal, selection=selection, live=live)
        protocol = task_protocol(pt)
        protocols.add(protocol.name)
        weights[pt.task] = protocol.overall_weights()[pt.task]
        task_ranks[pt.task] = {r["team"]: float(r["rank"]) for r in board["rows"]}
    if not any(w > 0 for w in weights.values()):
        raise BadRequest(f"phase {phase.name!r}: every task's weight is 0; nothing to combine")
    combined = combined_task_ranks(task_ranks, weights=weights)
    ranks = overall_ranks(task_ranks, weights=weights)
    rows: list[OverallRow] = [
        {
            "rank": ranks[team],
            "team": team,
            "combined": value if math.isfinite(value) else None,
            "task_ranks": {str(t): r[team] for t, r in task_ranks.items() if team in r},
        }
        for team, value in combined.items()
    ]
    rows.sort(key=lambda row: (row["rank"], row["team"]))
    return {
        "phase": phase.name,
        "protocols": sorted(protocols),
        "weights": {str(t): w for t, w in weights.items()},
        "rows": rows,
    }
