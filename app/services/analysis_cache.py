"""The analysis cache: a computed analysis stored under a key that hashes everything it
depends on, and the one call that serves a live board's analysis from it.

A computed analysis is stored in ``analysis_cache`` under :func:`cache_key`: the
leaderboard's (team, submission id, result hash) triples, the ground-truth and protocol
hashes, the number of resamples, the seed, alpha and
:data:`app.services.analysis_payload.ANALYSIS_VERSION`. A lookup recomputes the key
from the current rows, so an entry computed from older results can never be served.
Besides, the transaction that writes or deletes a result deletes the entries of its
phase and task (:func:`app.services.results.invalidate_analysis`), so stale entries do
not pile up.

Work is split so that no database transaction stays open while the bootstrap runs (on
SQLite every transaction holds the write lock): :func:`prepare_analysis` reads,
:meth:`AnalysisJob.compute` is pure, :func:`store_analysis` writes.
:func:`get_analysis_commit` chains them with the commits in between.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import AnalysisCache, Phase, PhaseTask
from app.services.analysis_payload import ALPHA, ANALYSIS_VERSION, AnalysisPayload, compute_payload
from app.services.records import Board
from app.services.results import CaseRecord, load_cases, result_keys
from evaluator.canonical import canonical_sha256
from evaluator.protocol import Protocol

log = logging.getLogger(__name__)

__all__ = [
    "AnalysisJob",
    "cache_key",
    "get_analysis_commit",
    "prepare_analysis",
    "store_analysis",
]


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
    payload: AnalysisPayload | None = None  # the cached one, when hit
    cases: dict[int, list[CaseRecord]] = field(default_factory=dict)
    hit: bool = False

    def compute(self) -> AnalysisPayload:
        """The payload: the cached one, else computed from the records (pure)."""
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


def prepare_analysis(
    session: Session,
    phase: Phase,
    pt: PhaseTask,
    board: Board,
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
        job.payload, job.hit = cast(AnalysisPayload, dict(cached)), True
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


def _cached(job: AnalysisJob) -> AnalysisPayload:
    return cast(AnalysisPayload, job.payload or {})


_KEY_LOCKS: dict[str, threading.Lock] = {}
_KEY_LOCKS_GUARD = threading.Lock()


def _key_lock(key: str) -> threading.Lock:
    """The lock of one cache key in this process (unused locks are dropped past 256)."""
    with _KEY_LOCKS_GUARD:
        if len(_KEY_LOCKS) > 256:
            for k in [k for k, lk in _KEY_LOCKS.items() if not lk.locked()]:
                del _KEY_LOCKS[k]
        return _KEY_LOCKS.setdefault(key, threading.Lock())


def get_analysis_commit(
    session: Session,
    phase: Phase,
    pt: PhaseTask,
    board: Board,
    *,
    n_resamples: int,
    seed: int,
    write_sessions: Callable[[], Session] | None = None,
) -> tuple[AnalysisPayload, bool]:
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
        return _cached(job), True
    with _key_lock(job.key):
        job = prepare_analysis(session, phase, pt, board, n_resamples=n_resamples, seed=seed)
        session.commit()
        if job.hit:
            return _cached(job), True
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
