"""Ranking analysis and per-centre results of leaderboards and submissions: thin routes
over :mod:`app.services.board_analysis`."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse

from app.access import (
    center_metric_names,
    check_submission_scores_visible,
    visible_centers,
    withheld_note,
)
from app.api.analysis_schemas import LeaderboardAnalysis, LeaderboardCenters, SubmissionCenters
from app.api.deps import OptionalPrincipalDep, PrincipalDep, SessionDep
from app.api.error_handlers import ERRORS
from app.db.models import SCORED
from app.errors import Conflict
from app.services.board_analysis import AnalysisView, analysis_view
from app.services.board_centers import leaderboard_centers, submission_centers
from app.services.exports import per_center_csv
from app.services.phases import get_phase_task, task_protocol
from app.services.submissions import get_submission, submission_cases

router = APIRouter(prefix="/api/v1", responses=ERRORS)

SELECTION = Query(None, description="default: the phase's setting (best per team)")
LIVE = Query(False, description="organizers: the live leaderboard even while the phase is frozen")


@router.get(
    "/leaderboards/{phase}/{task}/analysis",
    response_model=LeaderboardAnalysis,
    tags=["leaderboards"],
)
def leaderboard_analysis(
    principal: OptionalPrincipalDep,
    session: SessionDep,
    phase: str,
    task: int = Path(ge=1, le=3),
    selection: Literal["best", "latest"] | None = SELECTION,
    live: bool = LIVE,
    n_resamples: int | None = Query(
        None, ge=0, description="organizers only; default: the phase's setting (1000)"
    ),
    seed: int | None = Query(
        None, ge=0, description="organizers only; default: the phase's setting"
    ),
) -> AnalysisView:
    """Bootstrap intervals of every leaderboard metric, rank stability, Kendall's tau and
    per-centre results, from the stored per-case rows (cached per phase and task; the
    snapshot's while the phase is frozen). Hidden phases: organizers only."""
    return analysis_view(
        session,
        phase,
        task,
        principal,
        selection=selection,
        live=live,
        n_resamples=n_resamples,
        seed=seed,
    )


@router.get(
    "/leaderboards/{phase}/{task}/centers",
    response_model=LeaderboardCenters,
    responses={200: {"content": {"text/csv": {}}}},
    tags=["leaderboards"],
)
def leaderboard_centers_route(
    principal: OptionalPrincipalDep,
    session: SessionDep,
    phase: str,
    task: int = Path(ge=1, le=3),
    selection: Literal["best", "latest"] | None = SELECTION,
    live: bool = LIVE,
    format: Literal["json", "csv"] = "json",
) -> Any:
    """Every metric per centre (CenterID, else the PatientID prefix) for each row of the
    leaderboard; ``format=csv``: one line per team and centre."""
    doc = leaderboard_centers(session, phase, task, principal, selection=selection, live=live)
    if format == "csv":
        return PlainTextResponse(
            per_center_csv(
                task, doc["rows"], center_metric_names(task, principal, doc["protocol"])
            ),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="centers-{phase}-task{task}.csv"',
                **withheld_headers(int(doc.get("withheld_centers") or 0), doc.get("note")),
            },
        )
    return doc


@router.get(
    "/submissions/{submission_id}/centers",
    response_model=SubmissionCenters,
    responses={200: {"content": {"text/csv": {}}}},
    tags=["submissions"],
)
def submission_centers_route(
    submission_id: int,
    principal: PrincipalDep,
    session: SessionDep,
    format: Literal["json", "csv"] = "json",
) -> Any:
    """Per-centre results of one scored submission (its team or an organizer). For its
    team, centres with fewer than the phase's ``min_center_cases`` cases are withheld
    (``withheld_centers``; the CSV's ``X-Withheld-Centers`` header) and undefined
    metrics carry a generic reason."""
    sub = get_submission(session, submission_id, principal)
    check_submission_scores_visible(sub, principal)
    if sub.status != SCORED:
        raise Conflict(f"submission {sub.id} is {sub.status}; there are no scores")
    pt = get_phase_task(session, sub.phase, sub.task)
    centers, n_withheld = visible_centers(
        sub.phase, principal, submission_centers(sub.task, submission_cases(session, sub.id), pt)
    )
    note = withheld_note(sub.phase, n_withheld)
    if format == "csv":
        rows = [
            {
                "team": sub.team.name,
                "submission_id": sub.id,
                "centers": {c["center"]: c for c in centers},
            }
        ]
        return PlainTextResponse(
            per_center_csv(
                sub.task, rows, center_metric_names(sub.task, principal, task_protocol(pt))
            ),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="submission-{sub.id}-centers.csv"',
                **withheld_headers(n_withheld, note),
            },
        )
    return {
        "submission_id": sub.id,
        "task": sub.task,
        "centers": centers,
        "withheld_centers": n_withheld,
        "note": note,
    }


def withheld_headers(n_withheld: int, note: str | None) -> dict[str, str]:
    """What a CSV answer says about the centres it leaves out."""
    if not n_withheld:
        return {}
    return {"X-Withheld-Centers": str(n_withheld), "X-Note": note or ""}
