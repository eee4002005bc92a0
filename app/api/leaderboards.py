"""Leaderboards and phases (public information, per the phase's visibility)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse

from app.api.deps import (
    BoardCacheDep,
    OptionalPrincipalDep,
    PrincipalDep,
    ReadSessionDep,
    SessionDep,
)
from app.api.error_handlers import ERRORS
from app.api.schemas import Leaderboard, Me, OverallLeaderboard, PhaseDetail, PhasePublic
from app.services.exports import leaderboard_csv
from app.services.leaderboards import OverallBoard, overall_leaderboard
from app.services.phases import (
    PhaseDetailView,
    PhaseView,
    get_phase,
    list_phases,
    phase_detail,
    phase_public,
)

router = APIRouter(prefix="/api/v1", tags=["leaderboards"])


# before /leaderboards/{phase}/{task}, which would take "overall" for a task number
@router.get("/leaderboards/{phase}/overall", response_model=OverallLeaderboard, responses=ERRORS)
def overall_json(
    principal: OptionalPrincipalDep,
    session: ReadSessionDep,
    phase: str,
    selection: Literal["best", "latest"] | None = Query(
        None, description="default: the phase's setting (best per team)"
    ),
    live: bool = Query(False, description="organizers: the live leaderboards"),
) -> OverallBoard:
    """The teams ranked across the phase's tasks: the rank of the weighted mean of each
    team's task ranks, with the weights of each task's protocol (hecktor2026:
    ``task_weights``, equal by default; hecktor2025: 1 each)."""
    return overall_leaderboard(session, phase, principal, selection=selection, live=live)


@router.get(
    "/leaderboards/{phase}/{task}",
    response_model=Leaderboard,
    response_model_exclude_unset=True,
    responses={**ERRORS, 200: {"content": {"text/csv": {}}}},
)
def leaderboard_json(
    principal: OptionalPrincipalDep,
    session: ReadSessionDep,
    board_cache: BoardCacheDep,
    phase: str,
    task: int = Path(ge=1, le=3),
    selection: Literal["best", "latest"] | None = Query(
        None, description="default: the phase's setting (best per team)"
    ),
    format: Literal["json", "csv"] = "json",
    live: bool = Query(
        False, description="organizers: the live leaderboard even while the phase is frozen"
    ),
) -> Any:
    """Ranked rows (HECKTOR ranks, average on ties). Public, or organizer-only per phase.
    While the phase is frozen, the stored snapshot (``frozen`` true, each row with its
    submission, ground-truth and protocol hashes and evaluator version)."""
    board = board_cache.leaderboard(
        session, principal, phase=phase, task=task, selection=selection, live=live
    )
    if format == "csv":
        return PlainTextResponse(
            leaderboard_csv(task, board["rows"], board.get("protocol")),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="leaderboard-{phase}-task{task}.csv"'
            },
        )
    return board


@router.get("/phases", response_model=list[PhasePublic], tags=["phases"])
def phases_index(session: SessionDep) -> list[PhaseView]:
    return [phase_public(p) for p in list_phases(session)]


@router.get(
    "/phases/{name}", response_model=PhaseDetail | PhasePublic, responses=ERRORS, tags=["phases"]
)
def phase_show(
    name: str, principal: OptionalPrincipalDep, session: SessionDep
) -> PhaseDetailView | PhaseView:
    phase = get_phase(session, name)
    if principal is not None and principal.is_organizer:
        return phase_detail(phase)
    return phase_public(phase)


@router.get("/me", response_model=Me, responses=ERRORS, tags=["auth"])
def me(principal: PrincipalDep) -> dict[str, Any]:
    return {"role": principal.role, "team": principal.team_name}
