"""The dispatcher interface: how the service hands a queued submission to judges."""

from __future__ import annotations

import abc
import logging

from sqlalchemy.orm import Session

from app.jobs.claims import recover_pending

log = logging.getLogger(__name__)


class Dispatcher(abc.ABC):
    """Runs judging jobs somewhere. ``submit`` must not block on the job."""

    name = "abstract"

    def start(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources (pools, connections). Called once at service start-up."""

    @abc.abstractmethod
    def submit(self, submission_id: int) -> None:
        """Queue the job of a submission whose row is committed with status ``queued``."""

    def shutdown(self, *, wait: bool = True) -> None:  # noqa: B027 - optional hook
        """Release resources. Jobs not finished stay ``queued``/``running`` in the DB and
        are re-queued at the next start-up."""

    def in_flight(self) -> set[int] | None:
        """Ids this dispatcher holds (queued or running), or None when it cannot tell.

        The service's sweeper re-submits ``queued`` rows that no dispatcher holds (e.g.
        queued by ``admin phase rescore`` from another process); None turns it off.
        """
        return None

    def recover_pending(self, session: Session) -> list[int]:
        """Start-up: the ids to submit again. By default rows left ``running`` (by this
        service's own judges, which died with it) go back to ``queued``, and every
        ``queued`` row is returned."""
        return recover_pending(session)
