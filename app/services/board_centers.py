"""Per-centre results as the caller may see them: of each row of a leaderboard (the
snapshot's while the phase is frozen) and of one submission."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict, cast

from sqlalchemy.orm import Session

from app.access import check_scores_visible, visible_board_centers, withheld_note
from app.db.models import Phase, PhaseTask
from app.security import Principal
from app.services.analysis_payload import CenterCount, CenterDict, center_counts
from app.services.board_analysis import snapshot_analysis
from app.services.leaderboards import leaderboard
from app.services.phases import get_phase, get_phase_task, task_protocol
from app.services.records import Board
from app.services.results import load_cases
from evaluator.centers import per_center

__all__ = ["BoardCenters", "CenterRow", "leaderboard_centers", "submission_centers"]


class CenterRow(TypedDict):
    """A leaderboard row's per-centre results (centre -> result)."""

    rank: float
    team: str
    submission_id: int
    centers: dict[str, CenterDict]


class BoardCenters(TypedDict):
    phase: str
    task: int
    protocol: str  # the name of the protocol of the board
    selection: str
    frozen: bool
    frozen_at: datetime | None
    centers: list[CenterCount]
    withheld_centers: int
    note: str | None
    rows: list[CenterRow]


def _board_centers(
    session: Session, phase: Phase, board: Board
) -> tuple[list[CenterCount], Mapping[str, Mapping[str, CenterDict]]]:
    """A board's centres and team -> centre -> result: stored with the snapshot when
    frozen, else computed from the rows' per-case records."""
    if board.get("frozen"):
        analysis = snapshot_analysis(session, board)
        counts = {c["center"]: c["n_cases"] for c in analysis.get("centers", [])}
        listed: list[CenterCount] = [{"center": c, "n_cases": counts[c]} for c in sorted(counts)]
        return listed, analysis.get("per_center", {})
    pt = get_phase_task(session, phase, board["task"])
    protocol = task_protocol(pt)
    cases = load_cases(session, [int(r["submission_id"]) for r in board["rows"]])
    results = {
        r["team"]: per_center(board["task"], cases[int(r["submission_id"])], protocol=protocol)
        for r in board["rows"]
    }
    centres = {t: {c: v.to_dict() for c, v in res.items()} for t, res in results.items()}
    return center_counts(results), centres


def leaderboard_centers(
    session: Session,
    phase_name: str,
    task: int,
    principal: Principal | None,
    *,
    selection: str | None = None,
    live: bool = False,
) -> BoardCenters:
    """Per-centre results of each leaderboard row (the snapshot's when frozen), as the
    caller may see them (:func:`app.access.visible_board_centers`)."""
    phase = get_phase(session, phase_name)
    check_scores_visible(phase, principal)
    board = leaderboard(session, phase_name, task, principal, selection=selection, live=live)
    counts, per_team = _board_centers(session, phase, board)
    shown, centres, n_withheld = visible_board_centers(phase, principal, counts, per_team)
    return {
        "phase": phase.name,
        "task": task,
        "protocol": board.get("protocol", "hecktor2025"),
        "selection": board["selection"],
        "frozen": bool(board.get("frozen")),
        "frozen_at": board.get("frozen_at"),
        "centers": cast(list[CenterCount], shown),
        "withheld_centers": n_withheld,
        "note": withheld_note(phase, n_withheld),
        "rows": [
            {
                "rank": r["rank"],
                "team": r["team"],
                "submission_id": r["submission_id"],
                "centers": centres.get(r["team"], {}),
            }
            for r in board["rows"]
        ],
    }


def submission_centers(
    task: int, cases: Sequence[Mapping[str, Any]], pt: PhaseTask | None
) -> list[CenterDict]:
    """Per-centre results of one submission's per-case records."""
    protocol = task_protocol(pt) if pt is not None else None
    result = (
        per_center(task, cases, protocol=protocol)
        if protocol is not None
        else per_center(task, cases)
    )
    return [r.to_dict() for r in result.values()]
