"""Organizer endpoints of frozen leaderboards: freeze and unfreeze a phase, list its
snapshots. Thin routes over :mod:`app.services.freeze` and :mod:`app.services.snapshots`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from app.api.analysis_schemas import FreezeRequest, FreezeResult, SnapshotSummary
from app.api.deps import SessionDep, require_organizer
from app.api.error_handlers import ERRORS
from app.services.freeze import freeze_phase_commit, unfreeze_phase
from app.services.phases import get_phase
from app.services.snapshots import SnapshotView, snapshot_summary, snapshots

router = APIRouter(
    prefix="/api/v1/admin",
    tags=["admin"],
    dependencies=[Depends(require_organizer)],
    responses=ERRORS,
)


@router.post("/phases/{name}/freeze", response_model=FreezeResult)
def phase_freeze(
    name: str, session: SessionDep, body: FreezeRequest | None = None
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


@router.post("/phases/{name}/unfreeze", response_model=FreezeResult)
def phase_unfreeze(name: str, session: SessionDep) -> dict[str, Any]:
    """Serve the live leaderboards again; the snapshots are kept as history."""
    done = unfreeze_phase(session, name)
    session.commit()
    return {"phase": name, "frozen": False, "snapshots": [snapshot_summary(s) for s in done]}


@router.get("/phases/{name}/snapshots", response_model=list[SnapshotSummary])
def phase_snapshots(name: str, session: SessionDep) -> list[SnapshotView]:
    """Every freeze of the phase (active and earlier ones)."""
    return [snapshot_summary(s) for s in snapshots(session, get_phase(session, name))]
