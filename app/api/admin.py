"""Organizer endpoints: phases, ground truth, teams, re-scoring."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from app.api.deps import get_session, require_organizer
from app.api.schemas import (
    GroundTruthImport,
    PhaseCreate,
    PhaseDetail,
    PhaseUpdate,
    RescoreRequest,
    RescoreResult,
    TeamCreate,
    TeamCreated,
    TeamPublic,
)
from app.api.submissions import ERRORS
from app.services.ground_truth import import_ground_truth
from app.services.phases import (
    PHASE_SETTINGS,
    create_phase,
    get_phase,
    list_phases,
    parse_tasks,
    phase_detail,
    update_phase,
)
from app.services.submissions import rescore
from app.services.teams import create_team, list_teams, rotate_team_token

log = logging.getLogger(__name__)
router = APIRouter(
    prefix="/api/v1/admin",
    tags=["admin"],
    dependencies=[Depends(require_organizer)],
    responses=ERRORS,
)


def _dispatch(request: Request, ids: list[int]) -> None:
    for sid in ids:
        try:
            request.app.state.dispatcher.submit(sid)
        except Exception:
            log.exception("submission %d: could not be dispatched; stays queued", sid)


@router.post("/phases", status_code=201, response_model=PhaseDetail)
def phase_create(
    body: PhaseCreate, request: Request, session: Session = Depends(get_session)
) -> dict[str, Any]:
    """Create a phase and import its ground truth from a folder on the server."""
    phase = create_phase(
        session,
        request.app.state.settings,
        name=body.name,
        ground_truth=Path(body.ground_truth),
        tasks=parse_tasks(body.tasks),
        title=body.title,
        hidden=body.hidden,
        leaderboard_public=body.leaderboard_public,
        daily_limit=body.daily_limit,
        selection=body.selection,
        is_open=body.is_open,
        protocol=body.protocol,
        analysis_resamples=body.analysis_resamples,
        analysis_seed=body.analysis_seed,
        **body.model_dump(include=set(PHASE_SETTINGS)),
    )
    session.commit()
    session.refresh(phase)
    return phase_detail(phase)


@router.get("/phases", response_model=list[PhaseDetail])
def phases_admin_index(session: Session = Depends(get_session)) -> list[dict[str, Any]]:
    return [phase_detail(p) for p in list_phases(session)]


@router.patch("/phases/{name}", response_model=PhaseDetail)
def phase_update(
    name: str, body: PhaseUpdate, session: Session = Depends(get_session)
) -> dict[str, Any]:
    phase = update_phase(session, name, **body.model_dump(exclude_none=True))
    session.commit()
    return phase_detail(phase)


@router.post("/phases/{name}/open", response_model=PhaseDetail)
def phase_open(name: str, session: Session = Depends(get_session)) -> dict[str, Any]:
    phase = update_phase(session, name, is_open=True)
    session.commit()
    return phase_detail(phase)


@router.post("/phases/{name}/close", response_model=PhaseDetail)
def phase_close(name: str, session: Session = Depends(get_session)) -> dict[str, Any]:
    phase = update_phase(session, name, is_open=False)
    session.commit()
    return phase_detail(phase)


@router.post("/phases/{name}/ground-truth", response_model=PhaseDetail)
def phase_import_ground_truth(
    name: str, body: GroundTruthImport, request: Request, session: Session = Depends(get_session)
) -> dict[str, Any]:
    """Replace the ground truth of some tasks (and re-score them unless ``rescore`` is false)."""
    phase = get_phase(session, name)
    tasks = parse_tasks(body.tasks)
    import_ground_truth(
        session, request.app.state.settings, phase, Path(body.ground_truth), tasks, body.protocol
    )
    ids: list[int] = []
    if body.rescore:
        for t in tasks:
            ids += rescore(session, name, t)
    session.commit()
    _dispatch(request, ids)
    session.refresh(phase)
    return phase_detail(phase)


@router.post("/phases/{name}/rescore", response_model=RescoreResult)
def phase_rescore(
    name: str,
    request: Request,
    body: RescoreRequest | None = None,
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Queue every finished submission of the phase (or of one task) again."""
    ids = rescore(session, name, body.task if body else None)
    session.commit()
    _dispatch(request, ids)
    return {"phase": name, "queued": ids}


@router.post("/teams", status_code=201, response_model=TeamCreated)
def team_create(body: TeamCreate, session: Session = Depends(get_session)) -> dict[str, Any]:
    """Create a team; the response holds its token, shown this once."""
    team, token = create_team(session, body.name)
    session.commit()
    return {"id": team.id, "name": team.name, "token": token}


@router.get("/teams", response_model=list[TeamPublic])
def teams_index(session: Session = Depends(get_session)) -> list[dict[str, Any]]:
    return list_teams(session)


@router.post("/teams/{name}/token", response_model=TeamCreated)
def team_rotate_token(name: str, session: Session = Depends(get_session)) -> dict[str, Any]:
    """Revoke the team's tokens and issue a new one."""
    token = rotate_team_token(session, name)
    session.commit()
    from app.services.teams import get_team

    team = get_team(session, name)
    return {"id": team.id, "name": team.name, "token": token}
