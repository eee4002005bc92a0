"""A leaderboard's ranking analysis as the caller may see it: from the snapshot while
the phase is frozen, else from the analysis cache or computed
(:func:`app.services.analysis_cache.get_analysis_commit`), then filtered by
:func:`app.access.visible_analysis`. The payload itself is
:class:`app.services.analysis_payload.AnalysisPayload`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypedDict, cast

from sqlalchemy.orm import Session

from app.access import check_scores_visible, visible_analysis
from app.db.models import LeaderboardSnapshot, Phase
from app.errors import BadRequest, Forbidden, Unauthorized
from app.security import Principal
from app.services.analysis_cache import get_analysis_commit
from app.services.analysis_payload import ALPHA, AnalysisPayload, CaseDsc, CenterCount, CenterDict
from app.services.leaderboards import leaderboard
from app.services.phases import MAX_ANALYSIS_RESAMPLES, MAX_ANALYSIS_SEED, get_phase, get_phase_task
from app.services.records import Board

log = logging.getLogger(__name__)

__all__ = [
    "AnalysisView",
    "analysis_params",
    "analysis_view",
    "board_analysis",
    "snapshot_analysis",
]


def analysis_params(
    phase: Phase, principal: Principal | None, n_resamples: int | None, seed: int | None
) -> tuple[int, int]:
    """The phase's bootstrap settings, or the ones asked for (organizers only)."""
    if (n_resamples is not None or seed is not None) and not (
        principal is not None and principal.is_organizer
    ):
        raise Forbidden("only organizers can choose the number of resamples or the seed")
    n = phase.analysis_resamples if n_resamples is None else n_resamples
    s = phase.analysis_seed if seed is None else seed
    if not 0 <= n <= MAX_ANALYSIS_RESAMPLES:
        raise BadRequest(f"n_resamples must be between 0 and {MAX_ANALYSIS_RESAMPLES}, not {n}")
    if not 0 <= s <= MAX_ANALYSIS_SEED:
        raise BadRequest(f"seed must be between 0 and 2**63 - 1, not {s}")
    return int(n), int(s)


class CacheInfo(TypedDict):
    """Where a served analysis came from: ``snapshot``, ``cache`` or ``computed``."""

    key: str | None
    hit: bool
    source: str


class RankedTeam(TypedDict):
    team: str
    submission_id: int
    rank: float | None


class AnalysisView(TypedDict):
    """The document of ``GET /leaderboards/{phase}/{task}/analysis``: the board it
    analyses, where the analysis came from, and the analysis as the caller may see it."""

    phase: str
    task: int
    selection: str
    frozen: bool
    frozen_at: datetime | None
    protocol_sha256: str
    ground_truth_sha256: str
    cache: CacheInfo
    n_resamples: int
    seed: int
    alpha: float
    computed_at: str | None
    evaluator_version: str | None
    teams: list[RankedTeam]
    bootstrap: dict[str, Any] | None
    bootstrap_error: str | None
    kendall_tau: dict[str, Any] | None
    centers: list[CenterCount]
    per_center: dict[str, dict[str, CenterDict]]
    per_case: dict[str, list[CaseDsc]]
    per_case_values: dict[str, list[float | None]] | None
    withheld_centers: int
    note: str | None


def snapshot_analysis(session: Session, board: Board) -> AnalysisPayload:
    """The analysis stored with the snapshot a frozen ``board`` was served from (empty
    when the snapshot holds none)."""
    snap = session.get(LeaderboardSnapshot, int(board["snapshot_id"]))
    return cast(AnalysisPayload, dict(snap.analysis or {}) if snap is not None else {})


def _visible(
    payload: AnalysisPayload, phase: Phase, principal: Principal | None
) -> AnalysisPayload:
    return cast(AnalysisPayload, visible_analysis(payload, phase, principal))


def _frozen_payload(
    session: Session, phase: Phase, board: Board, n_resamples: int | None, seed: int | None
) -> tuple[AnalysisPayload, CacheInfo]:
    """The snapshot's analysis; 400 when other bootstrap settings were asked for."""
    payload = snapshot_analysis(session, board)
    if (n_resamples is not None and n_resamples != payload.get("n_resamples")) or (
        seed is not None and seed != payload.get("seed")
    ):
        raise BadRequest(
            f"the leaderboard of phase {phase.name!r} is frozen with "
            f"{payload.get('n_resamples')} resamples and seed {payload.get('seed')}; "
            "re-freeze it with other settings, or ask for the live analysis (live=true)"
        )
    return payload, {"key": payload.get("key"), "hit": True, "source": "snapshot"}


def analysis_view(
    session: Session,
    phase_name: str,
    task: int,
    principal: Principal | None,
    *,
    selection: str | None = None,
    live: bool = False,
    n_resamples: int | None = None,
    seed: int | None = None,
) -> AnalysisView:
    """The analysis document of ``GET /leaderboards/{phase}/{task}/analysis``: from the
    snapshot while the phase is frozen, else from the cache or computed (commits)."""
    phase = get_phase(session, phase_name)
    check_scores_visible(phase, principal)
    n, s = analysis_params(phase, principal, n_resamples, seed)
    board = leaderboard(session, phase_name, task, principal, selection=selection, live=live)
    pt = get_phase_task(session, phase, task)
    if board.get("frozen"):
        payload, cache = _frozen_payload(session, phase, board, n_resamples, seed)
    else:
        payload, hit = get_analysis_commit(session, phase, pt, board, n_resamples=n, seed=s)
        cache = {"key": payload.get("key"), "hit": hit, "source": "cache" if hit else "computed"}
    shown = _visible(payload, phase, principal)
    ranks = {r["team"]: r["rank"] for r in board["rows"]}
    boot = shown.get("bootstrap")
    return {
        "phase": phase.name,
        "task": task,
        "selection": board["selection"],
        "frozen": bool(board.get("frozen")),
        "frozen_at": board.get("frozen_at"),
        "protocol_sha256": board["protocol_sha256"],
        "ground_truth_sha256": board["ground_truth_sha256"],
        "cache": cache,
        "n_resamples": shown.get("n_resamples", 0),
        "seed": shown.get("seed", 0),
        "alpha": shown.get("alpha", ALPHA),
        "computed_at": shown.get("computed_at"),
        "evaluator_version": shown.get("evaluator_version"),
        "teams": [
            {"team": t["team"], "submission_id": t["submission_id"], "rank": ranks.get(t["team"])}
            for t in shown.get("teams", [])
        ],
        "bootstrap": boot,
        "bootstrap_error": shown.get("bootstrap_error"),
        "kendall_tau": boot.get("kendall_tau") if boot else None,
        "centers": shown.get("centers", []),
        "per_center": shown.get("per_center", {}),
        "per_case": shown.get("per_case", {}),
        "per_case_values": shown.get("per_case_values"),
        "withheld_centers": shown.get("withheld_centers", 0),
        "note": shown.get("note"),
    }


def board_analysis(
    session: Session,
    board: Board,
    principal: Principal | None,
    *,
    write_sessions: Callable[[], Session] | None = None,
) -> AnalysisPayload | None:
    """The analysis payload of a board returned by :func:`app.services.leaderboards.leaderboard`
    (the snapshot's when frozen) as the caller may see it
    (:func:`app.access.visible_analysis`), or None when the caller may not see scores.

    With ``write_sessions``, ``session`` is only read from (it may be a read-only one):
    a cache miss computes and stores the analysis through a session of its own."""
    phase = get_phase(session, str(board["phase"]))
    try:
        check_scores_visible(phase, principal)
    except (Forbidden, Unauthorized):
        return None
    if board.get("frozen"):
        stored = snapshot_analysis(session, board)
        return _visible(stored, phase, principal) if stored else None
    pt = get_phase_task(session, phase, int(board["task"]))
    payload, _ = get_analysis_commit(
        session,
        phase,
        pt,
        board,
        n_resamples=phase.analysis_resamples,
        seed=phase.analysis_seed,
        write_sessions=write_sessions,
    )
    return _visible(payload, phase, principal)
