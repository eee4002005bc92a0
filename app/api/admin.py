"""Organizer endpoints: phases, ground truth, teams, re-scoring, the phase report."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from app.api.deps import DispatcherDep, SessionDep, SettingsDep, dispatch, require_organizer
from app.api.error_handlers import ERRORS
from app.api.schemas import (
    GroundTruthImport,
    InputsImport,
    PhaseCreate,
    PhaseDetail,
    PhaseUpdate,
    RescoreRequest,
    RescoreResult,
    TeamCreate,
    TeamCreated,
    TeamPublic,
)
from app.errors import Unprocessable
from app.services.algorithm_inputs import check_inputs_cover, import_inputs
from app.services.ground_truth import import_ground_truth
from app.services.phases import (
    ALGORITHM_SETTINGS,
    PHASE_SETTINGS,
    PhaseDetailView,
    create_phase,
    get_phase,
    list_phases,
    parse_tasks,
    phase_detail,
    remove_ground_truth_copies,
    update_phase,
)
from app.services.submissions import rescore
from app.services.teams import TeamSummary, create_team, get_team, list_teams, rotate_team_token

router = APIRouter(
    prefix="/api/v1/admin",
    tags=["admin"],
    dependencies=[Depends(require_organizer)],
    responses=ERRORS,
)


@router.post("/phases", status_code=201, response_model=PhaseDetail)
def phase_create(body: PhaseCreate, session: SessionDep, settings: SettingsDep) -> PhaseDetailView:
    """Create a phase and import its ground truth (and, for a phase judging algorithms,
    its cases' inputs) from folders on the server."""
    phase = create_phase(
        session,
        settings,
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
        kind=body.kind,
        inputs=None if body.inputs is None else Path(body.inputs),
        **body.model_dump(include=set(PHASE_SETTINGS) | set(ALGORITHM_SETTINGS)),
    )
    session.commit()
    session.refresh(phase)
    return phase_detail(phase)


@router.get("/phases", response_model=list[PhaseDetail])
def phases_admin_index(session: SessionDep) -> list[PhaseDetailView]:
    return [phase_detail(p) for p in list_phases(session)]


@router.patch("/phases/{name}", response_model=PhaseDetail)
def phase_update(name: str, body: PhaseUpdate, session: SessionDep) -> PhaseDetailView:
    phase = update_phase(session, name, **body.model_dump(exclude_none=True))
    session.commit()
    return phase_detail(phase)


@router.post("/phases/{name}/open", response_model=PhaseDetail)
def phase_open(name: str, session: SessionDep) -> PhaseDetailView:
    phase = update_phase(session, name, is_open=True)
    session.commit()
    return phase_detail(phase)


@router.post("/phases/{name}/close", response_model=PhaseDetail)
def phase_close(name: str, session: SessionDep) -> PhaseDetailView:
    phase = update_phase(session, name, is_open=False)
    session.commit()
    return phase_detail(phase)


@router.post("/phases/{name}/ground-truth", response_model=PhaseDetail)
def phase_import_ground_truth(
    name: str,
    body: GroundTruthImport,
    session: SessionDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> PhaseDetailView:
    """Replace the ground truth of some tasks (and re-score them unless ``rescore`` is false)."""
    phase = get_phase(session, name)
    tasks = parse_tasks(body.tasks)
    created = import_ground_truth(
        session, settings, phase, Path(body.ground_truth), tasks, body.protocol
    )
    try:
        check_inputs_cover(session, settings, phase)
    except Unprocessable:
        remove_ground_truth_copies(settings, created)
        session.rollback()
        raise
    ids: list[int] = []
    if body.rescore:
        for t in tasks:
            ids += rescore(session, name, t)
    session.commit()
    dispatch(dispatcher, ids)
    session.refresh(phase)
    return phase_detail(phase)


@router.post("/phases/{name}/inputs", response_model=PhaseDetail)
def phase_import_inputs(
    name: str, body: InputsImport, session: SessionDep, settings: SettingsDep
) -> PhaseDetailView:
    """Replace the phase's algorithm inputs: every ground-truth case's CT, PET and
    clinical record from a folder on the server. Nothing is re-judged."""
    phase = get_phase(session, name)
    import_inputs(session, settings, phase, Path(body.inputs))
    session.commit()
    session.refresh(phase)
    return phase_detail(phase)


@router.post("/phases/{name}/rescore", response_model=RescoreResult)
def phase_rescore(
    name: str, session: SessionDep, dispatcher: DispatcherDep, body: RescoreRequest | None = None
) -> RescoreResult:
    """Queue every finished submission of the phase (or of one task) again."""
    ids = rescore(session, name, body.task if body else None)
    session.commit()
    dispatch(dispatcher, ids)
    return RescoreResult(phase=name, queued=ids)


@router.post("/teams", status_code=201, response_model=TeamCreated)
def team_create(body: TeamCreate, session: SessionDep) -> TeamCreated:
    """Create a team; the response holds its token, shown this once."""
    team, token = create_team(session, body.name)
    session.commit()
    return TeamCreated(id=team.id, name=team.name, token=token)


@router.get("/teams", response_model=list[TeamPublic])
def teams_index(session: SessionDep) -> list[TeamSummary]:
    return list_teams(session)


@router.post("/teams/{name}/token", response_model=TeamCreated)
def team_rotate_token(name: str, session: SessionDep) -> TeamCreated:
    """Revoke the team's tokens and issue a new one."""
    token = rotate_team_token(session, name)
    session.commit()
    team = get_team(session, name)
    return TeamCreated(id=team.id, name=team.name, token=token)


@router.get("/phases/{name}/report", response_class=HTMLResponse)
def phase_report(
    name: str,
    session: SessionDep,
    live: bool = False,
    n_resamples: int | None = Query(None, ge=0),
    seed: int | None = Query(None, ge=0),
) -> HTMLResponse:
    """The phase report (as ``hecktor-eval report``): one self-contained HTML file."""
    from app.report.phase_report import build_phase_report  # matplotlib: loaded on first use

    html = build_phase_report(session, name, live=live, n_resamples=n_resamples, seed=seed)
    return HTMLResponse(
        html,
        headers={
            "Content-Disposition": f'attachment; filename="report-{name}.html"',
            # the report is a file to keep, with its inline CSS: no page policy applies
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "img-src data:; frame-ancestors 'none'",
        },
    )
