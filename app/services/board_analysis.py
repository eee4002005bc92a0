"""Ranking analysis of a phase's leaderboards, from stored per-case rows only.

For one phase and task, the analysis of the leaderboard's submissions is: bootstrap
intervals of every leaderboard metric, the stability of the final HECKTOR rank and
Kendall's tau (:func:`evaluator.bootstrap.bootstrap`), the per-centre breakdown
(:func:`evaluator.centers.per_center`) and, for Task 1, the per-case GTVp DSC values
the plots show. No image is read: everything comes from ``case_results``.

Cache
-----
A computed analysis is stored in ``analysis_cache`` under a key that hashes everything
it depends on (:func:`cache_key`): the leaderboard's (team, submission id, result hash)
triples, the ground-truth and protocol hashes, the number of resamples, the seed, alpha
and :data:`ANALYSIS_VERSION`. A lookup recomputes the key from the current rows, so an
entry computed from older results can never be served. Besides, the transaction that
writes or deletes a result deletes the entries of its phase and task
(:func:`app.services.results.invalidate_analysis`), so stale entries do not pile up.

Work is split so that no database transaction stays open while the bootstrap runs (on
SQLite every transaction holds the write lock): :func:`prepare_analysis` reads,
:meth:`AnalysisJob.compute` is pure, :func:`store_analysis` writes. The route helper
:func:`get_analysis_commit` chains them with the commits in between.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import evaluator
from app.access import (
    check_scores_visible,
    visible_analysis,
    visible_board_centers,
    withheld_note,
)
from app.db.models import (
    AnalysisCache,
    CaseResult,
    LeaderboardSnapshot,
    Phase,
    PhaseTask,
    utcnow,
)
from app.errors import BadRequest, Forbidden, Unauthorized
from app.formatting import as_finite
from app.security import Principal
from app.services.leaderboards import leaderboard
from app.services.phases import MAX_ANALYSIS_RESAMPLES, MAX_ANALYSIS_SEED, get_phase, get_phase_task
from app.services.results import result_keys
from evaluator.bootstrap_result import BootstrapResult, KendallSummary, MetricInterval, RankStability, TeamBootstrap
from evaluator.centers import CenterResult, case_center, per_center
from evaluator.bootstrap import bootstrap
from evaluator.protocol import Protocol
from evaluator.io.hashing import canonical_sha256

log = logging.getLogger(__name__)

ANALYSIS_VERSION = "1"  # bump when the payload or the computation changes
ALPHA = 0.05

__all__ = [
    "ALPHA",
    "ANALYSIS_VERSION",
    "AnalysisJob",
    "analysis_params",
    "bootstrap_from_dict",
    "cache_key",
    "centers_from_dict",
    "get_analysis_commit",
    "leaderboard_centers",
    "prepare_analysis",
    "store_analysis",
    "submission_centers",
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


def cache_key(
    *,
    task: int,
    selection: str,
    members: Sequence[tuple[str, int, str]],
    ground_truth_sha256: str,
    protocol_sha256: str,
    n_resamples: int,
    seed: int,
    alpha: float = ALPHA,
) -> str:
    """SHA-256 over everything an analysis depends on; ``members`` are the board's
    (team, submission id, result key) triples."""
    return canonical_sha256(
        {
                "version": ANALYSIS_VERSION,
                "task": task,
                "selection": selection,
                "members": sorted([list(m) for m in members]),
                "ground_truth_sha256": ground_truth_sha256,
                "protocol_sha256": protocol_sha256,
                "n_resamples": n_resamples,
                "seed": seed,
                "alpha": alpha,
            }
    )


# -- computing --------------------------------------------------------------------------
def _case_dsc(rec: Mapping[str, Any]) -> float | None:
    """The case's GTVp DSC for the plot; None when both sides are empty (not shown)."""
    try:
        den = int(rec["gtvp_pred_voxels"]) + int(rec["gtvp_gt_voxels"])
    except (KeyError, TypeError, ValueError):
        return as_finite(rec.get("gtvp_dsc"))
    if den == 0:
        return None
    stored = as_finite(rec.get("gtvp_dsc"))
    return stored if stored is not None else 2.0 * int(rec.get("gtvp_intersection", 0)) / den


def compute_payload(
    task: int,
    protocol: Protocol,
    members: Sequence[tuple[str, int]],
    cases: Mapping[int, Sequence[Mapping[str, Any]]],
    *,
    n_resamples: int,
    seed: int,
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """The analysis of the board's ``members`` ((team, submission id), in board order)
    from their per-case records. Pure (no database)."""
    teams = {team: list(cases.get(sid, [])) for team, sid in members}
    boot: BootstrapResult | None = None
    boot_error: str | None = None
    if teams and n_resamples > 0:
        try:
            boot = bootstrap(
                task, teams, protocol=protocol, n_resamples=n_resamples, seed=seed, alpha=alpha
            )
        except ValueError as exc:  # e.g. teams scored on different case sets
            boot_error = str(exc)
    centres: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for team, recs in teams.items():
        try:
            result = per_center(task, recs, protocol=protocol)
        except ValueError as exc:
            log.warning("per-centre results of team %r: %s", team, exc)
            result = {}
        centres[team] = {c: r.to_dict() for c, r in result.items()}
        for c, r in result.items():
            counts[c] = max(counts.get(c, 0), r.n_cases)
    per_case: dict[str, list[dict[str, Any]]] = {}
    if task == 1:
        for team, recs in teams.items():
            per_case[team] = [
                {
                    "patient_id": str(r.get("patient_id", "")),
                    "center": case_center(r),
                    "gtvp_dsc": _case_dsc(r),
                }
                for r in sorted(recs, key=lambda r: str(r.get("patient_id", "")))
            ]
    return {
        "version": ANALYSIS_VERSION,
        "task": task,
        "n_resamples": n_resamples,
        "seed": seed,
        "alpha": alpha,
        "protocol": protocol.summary(),
        "evaluator_version": evaluator.__version__,
        "computed_at": utcnow().isoformat().replace("+00:00", "Z"),
        "teams": [{"team": t, "submission_id": sid} for t, sid in members],
        "bootstrap": boot.to_dict() if boot is not None else None,
        "bootstrap_error": boot_error,
        "centers": [{"center": c, "n_cases": counts[c]} for c in sorted(counts)],
        "per_center": centres,
        "per_case": per_case,
    }


@dataclass
class AnalysisJob:
    """What :func:`prepare_analysis` read: the key, and either the cached payload or
    the per-case records to compute it from."""

    phase_id: int
    phase_name: str
    task: int
    selection: str
    key: str
    n_resamples: int
    seed: int
    protocol: Protocol
    members: list[tuple[str, int]]
    result_keys: dict[int, str]
    payload: dict[str, Any] | None = None  # the cached one, when hit
    cases: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    hit: bool = False

    def compute(self) -> dict[str, Any]:
        if self.payload is None:
            self.payload = compute_payload(
                self.task,
                self.protocol,
                self.members,
                self.cases,
                n_resamples=self.n_resamples,
                seed=self.seed,
            )
            self.payload["key"] = self.key
        return self.payload


def load_cases(session: Session, submission_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {sid: [] for sid in submission_ids}
    if not submission_ids:
        return out
    rows = session.execute(
        select(CaseResult.submission_id, CaseResult.record)
        .where(CaseResult.submission_id.in_(list(submission_ids)))
        .order_by(CaseResult.submission_id, CaseResult.idx)
    ).all()
    for sid, record in rows:
        out[sid].append(dict(record))
    return out


def prepare_analysis(
    session: Session,
    phase: Phase,
    pt: PhaseTask,
    board: Mapping[str, Any],
    *,
    n_resamples: int,
    seed: int,
    load: bool = True,
) -> AnalysisJob:
    """Read what the analysis of a live ``board`` needs; never writes."""
    members = [(str(r["team"]), int(r["submission_id"])) for r in board["rows"]]
    keys = result_keys(session, [sid for _, sid in members])
    key = cache_key(
        task=pt.task,
        selection=str(board["selection"]),
        members=[(t, sid, keys.get(sid, "")) for t, sid in members],
        ground_truth_sha256=pt.gt_sha256,
        protocol_sha256=pt.protocol_sha256,
        n_resamples=n_resamples,
        seed=seed,
    )
    job = AnalysisJob(
        phase_id=phase.id,
        phase_name=phase.name,
        task=pt.task,
        selection=str(board["selection"]),
        key=key,
        n_resamples=n_resamples,
        seed=seed,
        protocol=Protocol.from_json(pt.protocol_json),
        members=members,
        result_keys=keys,
    )
    cached = session.scalars(
        select(AnalysisCache.payload).where(
            AnalysisCache.phase_id == phase.id,
            AnalysisCache.task == pt.task,
            AnalysisCache.key_sha256 == key,
        )
    ).first()
    if cached is not None:
        job.payload, job.hit = dict(cached), True
    elif load:
        job.cases = load_cases(session, [sid for _, sid in members])
    return job


def store_analysis(session: Session, job: AnalysisJob) -> bool:
    """Add the computed payload to the cache (no commit). Skipped when the results
    changed since they were read; entries of the same phase, task, selection and
    settings under another key (stale by construction) are dropped."""
    if job.hit or job.payload is None:
        return False
    if result_keys(session, [sid for _, sid in job.members]) != job.result_keys:
        log.info(
            "phase %s task %d: results changed while analysing; not cached",
            job.phase_name,
            job.task,
        )
        return False
    session.execute(
        delete(AnalysisCache).where(
            AnalysisCache.phase_id == job.phase_id,
            AnalysisCache.task == job.task,
            AnalysisCache.selection == job.selection,
            AnalysisCache.n_resamples == job.n_resamples,
            AnalysisCache.seed == job.seed,
            AnalysisCache.key_sha256 != job.key,
        )
    )
    try:
        with session.begin_nested():
            session.add(
                AnalysisCache(
                    phase_id=job.phase_id,
                    task=job.task,
                    key_sha256=job.key,
                    selection=job.selection,
                    n_resamples=job.n_resamples,
                    seed=job.seed,
                    payload=job.payload,
                )
            )
    except IntegrityError:  # computed concurrently by another request: same content
        return False
    return True


_KEY_LOCKS: dict[str, threading.Lock] = {}
_KEY_LOCKS_GUARD = threading.Lock()


def _key_lock(key: str) -> threading.Lock:
    with _KEY_LOCKS_GUARD:
        if len(_KEY_LOCKS) > 256:
            for k in [k for k, lk in _KEY_LOCKS.items() if not lk.locked()]:
                del _KEY_LOCKS[k]
        return _KEY_LOCKS.setdefault(key, threading.Lock())


def get_analysis_commit(
    session: Session,
    phase: Phase,
    pt: PhaseTask,
    board: Mapping[str, Any],
    *,
    n_resamples: int,
    seed: int,
    write_sessions: Callable[[], Session] | None = None,
) -> tuple[dict[str, Any], bool]:
    """The analysis of a live board from the cache, else computed and cached.

    Commits: the read transaction ends before the bootstrap runs (no lock held while
    computing) and the new cache entry is committed. One computation per key at a time
    in this process. Returns ``(payload, cache_hit)``.

    With ``write_sessions``, ``session`` is only read from (it may be a read-only one,
    which on SQLite holds no write lock) and the new entry is stored through a session
    of its own, so the write lock is held only while the entry is written.
    """
    job = prepare_analysis(
        session, phase, pt, board, n_resamples=n_resamples, seed=seed, load=False
    )
    session.commit()
    if job.hit:
        return job.payload or {}, True
    with _key_lock(job.key):
        job = prepare_analysis(session, phase, pt, board, n_resamples=n_resamples, seed=seed)
        session.commit()
        if job.hit:
            return job.payload or {}, True
        payload = job.compute()
        if write_sessions is None:
            store_analysis(session, job)
            session.commit()
        else:
            ws = write_sessions()
            try:
                store_analysis(ws, job)
                ws.commit()
            finally:
                ws.close()
    return payload, False


# -- views ------------------------------------------------------------------------------
def snapshot_analysis(session: Session, board: Mapping[str, Any]) -> dict[str, Any]:
    """The analysis stored with the snapshot a frozen ``board`` was served from."""
    snap = session.get(LeaderboardSnapshot, int(board["snapshot_id"]))
    return dict(snap.analysis or {}) if snap is not None else {}


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
) -> dict[str, Any]:
    """The analysis document of ``GET /leaderboards/{phase}/{task}/analysis``: from the
    snapshot while the phase is frozen, else from the cache or computed (commits)."""
    phase = get_phase(session, phase_name)
    check_scores_visible(phase, principal)
    n, s = analysis_params(phase, principal, n_resamples, seed)
    board = leaderboard(session, phase_name, task, principal, selection=selection, live=live)
    pt = get_phase_task(session, phase, task)
    doc: dict[str, Any] = {
        "phase": phase.name,
        "task": task,
        "selection": board["selection"],
        "frozen": bool(board.get("frozen")),
        "frozen_at": board.get("frozen_at"),
        "protocol_sha256": board["protocol_sha256"],
        "ground_truth_sha256": board["ground_truth_sha256"],
    }
    if board.get("frozen"):
        payload = snapshot_analysis(session, board)
        if (n_resamples is not None and n_resamples != payload.get("n_resamples")) or (
            seed is not None and seed != payload.get("seed")
        ):
            raise BadRequest(
                f"the leaderboard of phase {phase.name!r} is frozen with "
                f"{payload.get('n_resamples')} resamples and seed {payload.get('seed')}; "
                "re-freeze it with other settings, or ask for the live analysis (live=true)"
            )
        doc["cache"] = {"key": payload.get("key"), "hit": True, "source": "snapshot"}
    else:
        payload, hit = get_analysis_commit(session, phase, pt, board, n_resamples=n, seed=s)
        doc["cache"] = {
            "key": payload.get("key"),
            "hit": hit,
            "source": "cache" if hit else "computed",
        }
    doc.update(_public_payload(visible_analysis(payload, phase, principal), board))
    return doc


def _public_payload(payload: Mapping[str, Any], board: Mapping[str, Any]) -> dict[str, Any]:
    ranks = {r["team"]: r["rank"] for r in board["rows"]}
    boot = payload.get("bootstrap")
    return {
        "n_resamples": payload.get("n_resamples", 0),
        "seed": payload.get("seed", 0),
        "alpha": payload.get("alpha", ALPHA),
        "computed_at": payload.get("computed_at"),
        "evaluator_version": payload.get("evaluator_version"),
        "teams": [
            {"team": t["team"], "submission_id": t["submission_id"], "rank": ranks.get(t["team"])}
            for t in payload.get("teams", [])
        ],
        "bootstrap": boot,
        "bootstrap_error": payload.get("bootstrap_error"),
        "kendall_tau": boot.get("kendall_tau") if boot else None,
        "centers": payload.get("centers", []),
        "per_center": payload.get("per_center", {}),
        "per_case": payload.get("per_case", {}),
        "per_case_values": payload.get("per_case_values"),
        "withheld_centers": payload.get("withheld_centers", 0),
        "note": payload.get("note"),
    }


def board_analysis(
    session: Session,
    board: Mapping[str, Any],
    principal: Principal | None,
    *,
    write_sessions: Callable[[], Session] | None = None,
) -> dict[str, Any] | None:
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
        return visible_analysis(stored, phase, principal) if stored else None
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
    return visible_analysis(payload, phase, principal)


# -- per centre ----------------------------------------------------------------------------
def leaderboard_centers(
    session: Session,
    phase_name: str,
    task: int,
    principal: Principal | None,
    *,
    selection: str | None = None,
    live: bool = False,
) -> dict[str, Any]:
    """Per-centre results of each leaderboard row (the snapshot's when frozen), as the
    caller may see them (:func:`app.access.visible_board_centers`)."""
    phase = get_phase(session, phase_name)
    check_scores_visible(phase, principal)
    board = leaderboard(session, phase_name, task, principal, selection=selection, live=live)
    if board.get("frozen"):
        analysis = snapshot_analysis(session, board)
        centres = analysis.get("per_center", {})
        counts = {c["center"]: c["n_cases"] for c in analysis.get("centers", [])}
    else:
        pt = get_phase_task(session, phase, task)
        protocol = Protocol.from_json(pt.protocol_json)
        cases = load_cases(session, [int(r["submission_id"]) for r in board["rows"]])
        centres, counts = {}, {}
        for r in board["rows"]:
            result = per_center(task, cases[int(r["submission_id"])], protocol=protocol)
            centres[r["team"]] = {c: v.to_dict() for c, v in result.items()}
            for c, v in result.items():
                counts[c] = max(counts.get(c, 0), v.n_cases)
    shown, centres, n_withheld = visible_board_centers(
        phase, principal, [{"center": c, "n_cases": counts[c]} for c in sorted(counts)], centres
    )
    return {
        "phase": phase.name,
        "task": task,
        "selection": board["selection"],
        "frozen": bool(board.get("frozen")),
        "frozen_at": board.get("frozen_at"),
        "centers": shown,
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
) -> list[dict[str, Any]]:
    """Per-centre results of one submission's per-case records."""
    protocol = Protocol.from_json(pt.protocol_json) if pt is not None else None
    result = (
        per_center(task, cases, protocol=protocol)
        if protocol is not None
        else per_center(task, cases)
    )
    return [r.to_dict() for r in result.values()]


# -- rebuilding the evaluator's result objects from stored JSON ------------------------------
def bootstrap_from_dict(d: Mapping[str, Any]) -> BootstrapResult:
    """The inverse of :meth:`BootstrapResult.to_dict` (for plots of stored analyses)."""
    teams = tuple(
        TeamBootstrap(
            team=t["team"],
            metrics={k: MetricInterval(**v) for k, v in t["metrics"].items()},
            rank=RankStability(
                full_rank=float(t["rank"]["full_rank"]),
                median=t["rank"]["median"],
                low=t["rank"]["low"],
                high=t["rank"]["high"],
                counts=tuple(int(c) for c in t["rank"]["counts"]),
                first_place_share=t["rank"]["first_place_share"],
            ),
        )
        for t in d["teams"]
    )
    return BootstrapResult(
        task=int(d["task"]),
        n_cases=int(d["n_cases"]),
        n_resamples=int(d["n_resamples"]),
        seed=int(d["seed"]),
        alpha=float(d["alpha"]),
        protocol=dict(d["protocol"]),
        metric_names=tuple(d["metric_names"]),
        teams=teams,
        rank_values=tuple(float(v) for v in d["rank_values"]),
        n_degenerate=int(d["n_degenerate"]),
        kendall_tau=KendallSummary(**d["kendall_tau"]),
        beats=tuple(tuple(row) for row in d["beats"]),
        notes=tuple(d.get("notes", ())),
    )


def centers_from_dict(d: Mapping[str, Mapping[str, Any]]) -> dict[str, CenterResult]:
    return {
        c: CenterResult(
            center=str(v["center"]),
            n_cases=int(v["n_cases"]),
            metrics=dict(v["metrics"]),
            undefined=dict(v.get("undefined") or {}),
        )
        for c, v in d.items()
    }
