"""A per-process cache of derived leaderboards, checked against the stored rows.

A leaderboard is a pure function of stored rows (:func:`app.services.leaderboards.leaderboard`), and
reading it is the hottest path of the service (everyone refreshes the board; a
ranking reads every scored submission of the phase). The cache keeps the board of
``(phase, task, selection, live, caller's role)`` together with a *fingerprint* of
everything the board is derived from, read in one cheap query per request:

- the phase row and its task row (every column: settings, ground-truth and protocol
  hashes, import time);
- the submissions of the phase and task that have a result (only those can be on a
  board): how many, the largest id, the latest submission, finish and result times, how
  many are dry runs and how many are in each state (scoring, re-scoring, failing and
  re-queuing each move one; an upload or a job starting does not);
- the rows of ``leaderboard_snapshots`` of the phase and task (frozen boards), every
  column but the stored board itself.

A board is served from the cache only when the fingerprint is unchanged, so a change
committed by any process (a judge, the admin CLI, another server) is seen at once. The
caller's role is part of the key, so access rules (which depend on the phase row and
the role only) are the same as for the request that filled the entry; errors are never
cached. Bounded: at most ``max_entries`` boards (least recently used dropped).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, case, func, select
from sqlalchemy.orm import Session

from app.db.models import STATES, Base, Phase, PhaseTask, Result, Submission
from app.security import Principal
from app.services.records import Board

Builder = Callable[[], Board]


def _queries() -> tuple[Any, Any]:
    """Two statements: the phase and task rows (with the snapshots' aggregates), and the
    aggregates of the scored submissions (one pass over the phase's submissions)."""
    sub = Submission.__table__
    res = Result.__table__
    phase, pt = Phase.__table__, PhaseTask.__table__
    extra: list[Any] = []
    snaps = Base.metadata.tables.get("leaderboard_snapshots")
    if snaps is not None:
        # snapshots are written once; unfreezing clears ``active`` and sets ``unfrozen_at``
        where = (snaps.c.phase_id == phase.c.id) & (snaps.c.task == pt.c.task)
        extra = [
            select(func.count()).select_from(snaps).where(where),
            select(func.max(snaps.c.id)).where(where),
            select(func.sum(case((snaps.c.active, 1), else_=0))).where(where),
            select(func.max(snaps.c.unfrozen_at)).where(where),
        ]
    rows = (
        select(
            *phase.c,
            *pt.c,
            *(
                q.correlate(phase, pt).scalar_subquery().label(f"snap_{i}")
                for i, q in enumerate(extra)
            ),
        )
        .select_from(phase.join(pt, pt.c.phase_id == phase.c.id))
        .where(phase.c.name == bindparam("name"), pt.c.task == bindparam("task"))
    )
    # only submissions with a result can be on a board: a new upload or a job being
    # claimed changes nothing here, so it does not invalidate the cached board
    scored = (
        select(
            func.count(res.c.submission_id),
            func.max(sub.c.id),
            func.max(sub.c.submitted_at),
            func.max(sub.c.finished_at),
            func.max(res.c.created_at),
            func.sum(case((sub.c.dry_run, 1), else_=0)),
            *(func.sum(case((sub.c.status == state, 1), else_=0)) for state in STATES),
        )
        .select_from(sub.join(res, res.c.submission_id == sub.c.id))
        .where(sub.c.phase_id == bindparam("phase_id"), sub.c.task == bindparam("task"))
    )
    return rows, scored


_QUERIES: tuple[Any, Any] | None = None


def fingerprint(session: Session, phase_name: str, task: int) -> tuple[Any, ...] | None:
    """What the leaderboard of ``phase_name``/``task`` is derived from (two small
    queries), or None when the phase or task does not exist (nothing is cached then)."""
    global _QUERIES
    if _QUERIES is None:
        _QUERIES = _queries()
    rows, scored = _QUERIES
    conn = session.connection()
    row = conn.execute(rows, {"name": phase_name, "task": task}).first()
    if row is None:
        return None
    agg = conn.execute(scored, {"phase_id": row.id, "task": task}).one()
    return (*row, *agg)


class BoardCache:
    """Boards by (phase, task, selection, live, caller's role), each served while the
    fingerprint it was built with still holds; at most ``max_entries`` (least recently
    used dropped)."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[Any, ...], tuple[tuple[Any, ...], Board]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def leaderboard(
        self,
        session: Session,
        principal: Principal | None,
        *,
        phase: str,
        task: int,
        selection: str | None,
        live: bool,
    ) -> Board:
        """:func:`app.services.leaderboards.leaderboard` through the cache (API and pages alike)."""
        from app.services.leaderboards import leaderboard

        return self.get(
            session,
            principal,
            phase=phase,
            task=task,
            selection=selection,
            live=live,
            build=lambda: leaderboard(
                session, phase, task, principal, selection=selection, live=live
            ),
        )

    def get(
        self,
        session: Session,
        principal: Principal | None,
        *,
        phase: str,
        task: int,
        selection: str | None,
        live: bool,
        build: Builder,
    ) -> Board:
        """The board from the cache if its rows are unchanged, else ``build()`` (which
        checks access and raises as the service does) and remember it."""
        role = None if principal is None else principal.role
        key = (phase, task, selection, live, role)
        fp = fingerprint(session, phase, task)
        if fp is not None:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry[0] == fp:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return entry[1]
        board = build()
        self.misses += 1
        if fp is not None:
            with self._lock:
                self._entries[key] = (fp, board)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        return board
