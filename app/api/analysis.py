"""Ranking analysis, per-centre results, frozen leaderboards and the phase report
of the service. Thin routes over :mod:`app.services.board_analysis`, :mod:`app.services.freeze` and
:mod:`app.report.phase_report`."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import HTMLResponse, PlainTextResponse
from sqlalchemy.orm import Session

from app.access import center_metric_names, scores_hidden, visible_centers, withheld_note
from app.api.deps import get_session, optional_principal, require_organizer, require_principal
from app.api.schemas import (
    FreezeRequest,
    FreezeResult,
    LeaderboardAnalysis,
    LeaderboardCenters,
    SnapshotSummary,
    SubmissionCenters,
)
from app.api.submissions import ERRORS
from app.db.models import SCORED
from app.errors import Conflict, Forbidden
from app.security import Principal
from app.services.board_analysis import (
    analysis_view,
    leaderboard_centers,
    per_center_csv,
    submission_centers,
)
from app.services.freeze import freeze_phase_commit, unfreeze_phase
from app.services.phases import get_phase, get_phase_task
from app.services.snapshots import snapshot_summary, snapshots
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
    principal: Principal | None = Depends(optional_principal),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
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
    phase: str,
    task: int = Path(ge=1, le=3),
    selection: Literal["best", "latest"] | None = SELECTION,
    live: bool = LIVE,
    format: Literal["json", "csv"] = "json",
    principal: Principal | None = Depends(optional_principal),
    session: Session = Depends(get_session),
) -> Any:
    """Every metric per centre (CenterID, else the PatientID prefix) for each row of the
    leaderboard; ``format=csv``: one line per team and centre."""
    doc = leaderboard_centers(session, phase, task, principal, selection=selection, live=live)
    if format == "csv":
        return PlainTextResponse(
            per_center_csv(task, doc["rows"], center_metric_names(task, principal)),
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
    format: Literal["json", "csv"] = "json",
    principal: Principal = Depends(require_principal),
    session: Session = Depends(get_session),
) -> Any:
    """Per-centre results of one scored submission (its team or an organizer). For its
    team, centres with fewer than the phase's ``min_center_cases`` cases are withheld
    (``withheld_centers``; the CSV's ``X-Withheld-Centers`` header) and undefined
    metrics carry a generic reason."""
    sub = get_submission(session, submission_id, principal)
    if scores_hidden(sub, principal):
        raise Forbidden(f"scores of phase {sub.phase.name!r} are hidden from teams")
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
            per_center_csv(sub.task, rows, center_metric_names(sub.task, principal)),
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


admin = APIRouter(
    prefix="/api/v1/admin",
    tags=["admin"],
    dependencies=[Depends(require_organizer)],
    responses=ERRORS,
)


@admin.post("/phases/{name}/freeze", response_model=FreezeResult)
def phase_freeze(
    name: str, body: FreezeRequest | None = None, session: Session = Depends(get_session)
) -> dict[str, Any]:
    """Freeze every task's leaderboard of the phase with its analysis. 409 when frozen
    already (unless ``refreeze``) or while submissions are being judged (unless
    ``force``)."""
    body = body or FreezeRequest()
    created = freeze_phase_commit(
        session,
        name,
        refreeze=body.refreeze,
        force=body.force,
        note=body.note,
        n_resamples=body.n_resamples,
        seed=body.seed,
    )
    return {"phase": name, "frozen": True, "snapshots": [snapshot_summary(s) for s in created]}


@admin.post("/phases/{name}/unfreeze", response_model=FreezeResult)
def phase_unfreeze(name: str, session: Session = Depends(get_session)) -> dict[str, Any]:
    """Serve the live leaderboards again; the snapshots are kept as history."""
    done = unfreeze_phase(session, name)
    session.commit()
    return {"phase": name, "frozen": False, "snapshots": [snapshot_summary(s) for s in done]}


@admin.get("/phases/{name}/snapshots", response_model=list[SnapshotSummary])
def phase_snapshots(name: str, session: Session = Depends(get_session)) -> list[dict[str, Any]]:
    """Every freeze of the phase (active and earlier ones)."""
    return [snapshot_summary(s) for s in snapshots(session, get_phase(session, name))]


@admin.get("/phases/{name}/report", response_class=HTMLResponse)
def phase_report(
    name: str,
    live: bool = False,
    n_resamples: int | None = Query(None, ge=0),
    seed: int | None = Query(None, ge=0),
    session: Session = Depends(get_session),
) -> HTMLResponse:
    """The phase report (as ``hecktor-eval report``): one self-contained HTML file."""
    from app.report.phase_report import build_phase_report

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
