"""Freezing and unfreezing a phase's leaderboards (the write side of snapshots).

An organizer freezes a phase: for each of its tasks, the live leaderboard and its
analysis are stored in a :class:`~app.db.models.LeaderboardSnapshot`, each row with the
submission's hash, the ground-truth and protocol hashes its result was computed with,
the evaluator version and the result's own hash. While a snapshot is active,
:func:`app.services.leaderboards.leaderboard` serves it exactly as stored, whatever is re-scored
afterwards; ``live=true`` (organizers) shows the current board beside it. Unfreezing
and re-freezing are explicit organizer actions; earlier snapshots are kept (inactive)
as the history.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import evaluator
from app.db.models import (
    PENDING_STATES,
    LeaderboardSnapshot,
    Phase,
    Result,
    Submission,
    utcnow,
)
from app.errors import Conflict
from app.security import ORGANIZER_PRINCIPAL
from app.services.analysis_cache import get_analysis_commit
from app.services.analysis_payload import AnalysisPayload
from app.services.board_analysis import analysis_params
from app.services.leaderboards import leaderboard
from app.services.phases import get_phase
from app.services.records import Board, BoardRow
from app.services.results import result_keys
from app.services.snapshots import snapshots
from evaluator.canonical import canonical_sha256

log = logging.getLogger(__name__)


ATTEMPTS = 3


__all__ = ["freeze_phase_commit", "unfreeze_phase"]


def _provenance(session: Session, rows: list[BoardRow]) -> list[BoardRow]:
    """Each row with the hashes and version its result was computed with."""
    ids = [int(r["submission_id"]) for r in rows]
    found = {
        sub.id: (sub, res)
        for sub, res in session.execute(
            select(Submission, Result)
            .join(Result, Result.submission_id == Submission.id)
            .where(Submission.id.in_(ids))
        ).all()
    }
    out: list[BoardRow] = []
    for r in rows:
        sub, res = found[int(r["submission_id"])]
        proto = (res.document or {}).get("protocol") or {}
        out.append(
            {
                **r,
                "submission_sha256": (res.document or {}).get("submission_sha256") or sub.sha256,
                "ground_truth_sha256": res.ground_truth_sha256,
                "protocol_sha256": res.protocol_sha256,
                "protocol": {"name": proto.get("name"), "version": proto.get("version")},
                "evaluator_version": res.evaluator_version,
                "result_sha256": res.sha256,
            }
        )
    return out


def _live_state(session: Session, phase: Phase) -> dict[int, tuple[Any, ...]]:
    """What a freeze depends on, per task: the live rows and their result keys."""
    state: dict[int, tuple[Any, ...]] = {}
    for pt in phase.tasks:
        board = leaderboard(session, phase.name, pt.task, ORGANIZER_PRINCIPAL, live=True)
        ids = [int(r["submission_id"]) for r in board["rows"]]
        keys = result_keys(session, ids)
        state[pt.task] = (
            json.dumps(board, sort_keys=True, default=str),
            tuple(sorted(keys.items())),
        )
    return state


def _check_freezable(session: Session, phase: Phase, *, refreeze: bool, force: bool) -> None:
    """409 when the phase is frozen already (unless ``refreeze``) or while submissions
    of the phase are queued or running (unless ``force``)."""
    active = snapshots(session, phase, active_only=True)
    if active and not refreeze:
        when = min(s.frozen_at for s in active).isoformat(timespec="seconds")
        raise Conflict(
            f"phase {phase.name!r} is frozen since {when}; unfreeze it first, or re-freeze "
            "explicitly (refreeze)"
        )
    if force:
        return
    pending = session.scalar(
        select(func.count(Submission.id)).where(
            Submission.phase_id == phase.id,
            Submission.dry_run.is_(False),
            Submission.status.in_(PENDING_STATES),
        )
    )
    if pending:
        raise Conflict(
            f"{pending} submission(s) of phase {phase.name!r} are still being judged; "
            "freeze when they are done (or force it)"
        )


def _live_boards(
    session: Session, phase: Phase, *, n_resamples: int, seed: int
) -> dict[int, tuple[Board, AnalysisPayload]]:
    """Each task's live board and its analysis (from the cache, else computed; commits)."""
    out: dict[int, tuple[Board, AnalysisPayload]] = {}
    for pt in phase.tasks:
        board = leaderboard(session, phase.name, pt.task, ORGANIZER_PRINCIPAL, live=True)
        payload, _ = get_analysis_commit(
            session, phase, pt, board, n_resamples=n_resamples, seed=seed
        )
        out[pt.task] = (board, payload)
    return out


def _swap_snapshots(
    session: Session, phase: Phase, boards: dict[int, tuple[Board, AnalysisPayload]], note: str
) -> list[LeaderboardSnapshot]:
    """Deactivate the phase's active snapshots and add one per task (no commit)."""
    now = utcnow()
    for old in snapshots(session, phase, active_only=True):
        old.active = False
        old.unfrozen_at = now
    session.flush()
    created = []
    for task, (board, payload) in boards.items():
        stored = {k: v for k, v in board.items() if k != "frozen"}
        stored["rows"] = _provenance(session, list(board["rows"]))
        analysis = payload or None
        snap = LeaderboardSnapshot(
            phase_id=phase.id,
            task=task,
            selection=str(board["selection"]),
            active=True,
            frozen_at=now,
            note=note,
            board=stored,
            analysis=analysis,
            content_sha256=canonical_sha256({"board": stored, "analysis": analysis}),
            evaluator_version=evaluator.__version__,
        )
        session.add(snap)
        created.append(snap)
    return created


def freeze_phase_commit(
    session: Session,
    phase_name: str,
    *,
    refreeze: bool = False,
    force: bool = False,
    note: str = "",
    n_resamples: int | None = None,
    seed: int | None = None,
) -> list[LeaderboardSnapshot]:
    """Freeze every task's leaderboard of a phase, with its analysis. Commits.

    Refused (409) when the phase is frozen already (unless ``refreeze``) or while
    submissions of the phase are queued or running (unless ``force``): a board being
    re-scored is half old, half new. The analyses are computed (or taken from the cache)
    outside any write transaction; the snapshots are then written in one transaction,
    after checking that no result changed meanwhile (else the whole freeze is retried).
    """
    for _attempt in range(ATTEMPTS):
        phase = get_phase(session, phase_name)
        _check_freezable(session, phase, refreeze=refreeze, force=force)
        n, s = analysis_params(phase, ORGANIZER_PRINCIPAL, n_resamples, seed)
        before = _live_state(session, phase)
        boards = _live_boards(session, phase, n_resamples=n, seed=s)

        # one write transaction: check that no result changed, then swap the snapshots
        phase = get_phase(session, phase_name)
        if _live_state(session, phase) != before:
            session.rollback()
            log.info("phase %s: results changed while freezing; retrying", phase_name)
            continue
        created = _swap_snapshots(session, phase, boards, note)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            raise Conflict(
                f"phase {phase_name!r} was frozen by someone else at the same time"
            ) from None
        log.info("phase %s: leaderboards frozen (%d task(s))", phase_name, len(created))
        return created
    raise Conflict(
        f"the results of phase {phase_name!r} kept changing while freezing; try again later"
    )


def unfreeze_phase(session: Session, phase_name: str) -> list[LeaderboardSnapshot]:
    """Serve the live leaderboards again (the snapshots are kept, inactive). No commit."""
    phase = get_phase(session, phase_name)
    active = snapshots(session, phase, active_only=True)
    if not active:
        raise Conflict(f"phase {phase.name!r} is not frozen")
    now = utcnow()
    for snap in active:
        snap.active = False
        snap.unfrozen_at = now
    session.flush()
    return active
