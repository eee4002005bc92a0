"""What the first page view would otherwise pay, paid while the server runs: matplotlib
(imported and one figure drawn, its fonts loaded), the page templates compiled, and the
analysis of every board (bootstrap, rank stability, per-centre tables) computed and
cached at start-up and as soon as new results are stored, before anybody opens the
board.

:class:`PageWarmer` is a daemon thread started by the application's lifespan; it looks
for new results when :meth:`PageWarmer.poke` is called (the local dispatcher calls it
after each judged job; with other dispatchers a board's analysis is computed at its
first view after new results).
"""

from __future__ import annotations

import io
import logging
import threading
import time
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.access import can_see_leaderboard
from app.db.models import SCORED, Submission
from app.security import ORGANIZER_PRINCIPAL, Principal
from app.services.board_analysis import board_analysis
from app.services.leaderboards import leaderboard
from app.services.phases import list_phases

log = logging.getLogger(__name__)


def warm_rendering() -> None:
    """Import the report's plotting (matplotlib), draw one small figure to SVG and
    compile the page templates."""
    from matplotlib.figure import Figure

    import app.report.phase_report  # noqa: F401 - the import is the point
    from app.web.pages import templates

    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1], [0, 1])
    fig.savefig(io.BytesIO(), format="svg")
    for name in templates.env.list_templates():
        if name.endswith(".html"):
            templates.env.get_template(name)


def warm_analyses(sessions: sessionmaker[Session]) -> int:
    """Compute and cache the analysis of every board with rows, as anonymous visitors
    (when the board is public) and organizers see it (a frozen board's is its
    snapshot's, already stored); returns how many boards were visited."""
    n = 0
    with sessions() as session:
        targets = [(p.name, t.task) for p in list_phases(session) for t in p.tasks]
    for phase_name, task in targets:
        viewers: list[Principal | None] = [ORGANIZER_PRINCIPAL]
        with sessions() as session:
            phase = next(p for p in list_phases(session) if p.name == phase_name)
            if can_see_leaderboard(phase, None):
                viewers.insert(0, None)
            for viewer in viewers:
                board = leaderboard(session, phase_name, task, viewer)
                if board["rows"]:
                    board_analysis(session, board, viewer, write_sessions=sessions)
                    n += 1
    return n


def _results_state(sessions: sessionmaker[Session]) -> tuple[int, datetime | None]:
    with sessions() as session:
        row = session.execute(
            select(func.count(Submission.id), func.max(Submission.finished_at)).where(
                Submission.status == SCORED
            )
        ).one()
    return int(row[0]), row[1]


class PageWarmer(threading.Thread):
    def __init__(self, sessions: sessionmaker[Session], *, interval: float | None = None) -> None:
        super().__init__(name="page-warmer", daemon=True)
        self.sessions = sessions
        self.interval = interval
        self._wake = threading.Event()
        # not ``_stop``: a Thread's own method of that name runs in a forked child
        self._halt = threading.Event()
        self.rendering_ready = threading.Event()
        self.analyses_warmed = 0
        self._passes = 0
        self._pass_done = threading.Condition()

    def poke(self, *_: object) -> None:
        self._wake.set()

    def settled(self, timeout: float) -> bool:
        """Look for new results now and wait until that look (and the analyses it
        computes) is done; whether it was within ``timeout`` seconds."""
        with self._pass_done:
            target = self._passes + 2  # a pass that started after this call
        self.poke()
        deadline = time.monotonic() + timeout
        with self._pass_done:
            while self._passes < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self.is_alive():
                    return False
                self._pass_done.wait(min(left, 0.5))
                self.poke()
        return True

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()

    def run(self) -> None:
        try:
            warm_rendering()
        except Exception:  # a page then pays it itself
            log.warning("could not prepare page rendering", exc_info=True)
        self.rendering_ready.set()
        seen: tuple[int, datetime | None] | None = None
        while not self._halt.is_set():
            try:
                state = _results_state(self.sessions)
                if state != seen:
                    started = time.monotonic()
                    n = warm_analyses(self.sessions)
                    self.analyses_warmed += n
                    seen = state
                    if n:
                        log.info(
                            "analyses of %d board(s) ready in %.1f s", n, time.monotonic() - started
                        )
            except Exception:  # the board computes it on its first view instead
                log.warning("could not compute board analyses ahead", exc_info=True)
            with self._pass_done:
                self._passes += 1
                self._pass_done.notify_all()
            self._wake.wait(self.interval)
            self._wake.clear()
