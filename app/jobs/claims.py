"""The submission row as a job: every state transition that judges, dispatchers and
the sweeper make, each one a conditional update, so that a stale actor never
overwrites a newer one.

- claim: ``queued -> running`` (``attempts`` + 1); with the job lock held, a
  ``running`` row whose judge is gone is claimed again (``running -> running``), or
  given up once it has used :data:`MAX_LOST_JUDGES` attempts;
- progress and finish (``scored``, ``valid``, ``failed``), only while the row is
  ``running`` with the job's own attempt (:func:`running_attempt`); a finish that cannot
  be written is tried again (:data:`WRITE_TRIES`), then stored as a platform failure;
- requeue and give up: the sweeper's decisions on an orphaned ``running`` row, and the
  local dispatcher's after its pool broke (:data:`MAX_POOL_CRASHES`);
- recover: at start-up, ``running`` rows of this service's own judges go back to
  ``queued``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import (
    FAILED,
    KIND_ALGORITHM,
    QUEUED,
    RUNNING,
    Phase,
    PhaseTask,
    Submission,
    utcnow,
)
from app.db.session import rowcount, session_scope
from app.jobs.limits import POOL_CRASH_MESSAGE
from app.jobs.locks import held_submission_ids
from app.jobs.outcomes import Verdict, error, lost_judges_message, platform_error, unstored_message
from app.services.results import delete_results, replace_result
from app.storage import storage_reason

log = logging.getLogger(__name__)

SKIPPED = "skipped"
SUPERSEDED = "superseded"
UNSTORED = "unstored"  # the outcome could not be written; the row is left to the sweeper

# A result write that fails is tried this many times, waiting WRITE_BACKOFF seconds
# before the second try and twice as long before each next one (0.5+1+2+4 = 7.5 s).
WRITE_TRIES = 5
WRITE_BACKOFF = 0.5

# A `running` row whose judge is gone (its worker or machine lost) is claimed again until
# it has been claimed this many times; then it is failed as a platform failure.
MAX_LOST_JUDGES = 3
# A local pool process that dies breaks the pool; the submission it was judging is
# queued again until it has been claimed this many times, then failed as its own fault
# (it most likely made its judge run out of memory or crash).
MAX_POOL_CRASHES = 2


# -- what a claim returns -----------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class GroundTruthRef:
    """Where a phase task's ground truth is stored, and the hashes it must have."""

    id: int
    task: int
    gt_dir: str
    gt_sha256: str
    protocol_json: str
    protocol_sha256: str
    n_cases: int


@dataclass(frozen=True, kw_only=True)
class AlgorithmRef:
    """What running an algorithm submission needs of its phase: the hidden inputs and
    the limits of each case."""

    inputs_dir: str  # relative to the data dir
    case_seconds: int
    case_memory_mb: int
    case_cpus: float
    case_pids: int
    case_gpu: bool
    case_tmp_mb: int
    case_output_mb: int
    image_max_bytes: int
    parallel_cases: int
    fail_fast: bool
    hidden: bool  # a test phase: participants are told only which limit or rule failed


@dataclass(frozen=True, kw_only=True)
class Claim:
    """A row this job now owns (``running`` with ``attempt``), and what judging it needs."""

    submission_id: int
    attempt: int
    task: int
    dry_run: bool
    archive_path: str
    ground_truth: GroundTruthRef | None  # None: the phase has no ground truth for the task
    filename: str = ""  # the uploaded file's own name, which messages use
    kind: str = "predictions"  # Submission.kind
    algorithm: AlgorithmRef | None = None  # an algorithm submission in a phase with inputs


@dataclass(frozen=True)
class GaveUp:
    """A reclaimed row had used its attempts: it was failed as a platform failure."""

    attempts: int


# -- reading ------------------------------------------------------------------------------
def status_of(session: Session, submission_id: int) -> str | None:
    return session.scalar(select(Submission.status).where(Submission.id == submission_id))


def queued_ids(session: Session) -> list[int]:
    return list(
        session.scalars(
            select(Submission.id).where(Submission.status == QUEUED).order_by(Submission.id)
        )
    )


def running_attempts(session: Session) -> dict[int, int]:
    """``running`` rows: id -> attempts."""
    return {
        sid: attempts
        for sid, attempts in session.execute(
            select(Submission.id, Submission.attempts).where(Submission.status == RUNNING)
        )
    }


def running_attempt(submission_id: int, attempt: int) -> ColumnElement[bool]:
    """The row is still running this attempt: a write under this condition never touches
    a row that another attempt owns or that has finished."""
    return (
        (Submission.id == submission_id)
        & (Submission.status == RUNNING)
        & (Submission.attempts == attempt)
    )


def orphaned_running_ids(session: Session) -> list[int]:
    """``running`` rows whose job lock is not held by anyone (their judge is gone)."""
    held = held_submission_ids(session)
    if held is None:
        return []
    running = session.scalars(
        select(Submission.id).where(Submission.status == RUNNING).order_by(Submission.id)
    )
    return [sid for sid in running if sid not in held]


def recover_pending(session: Session) -> list[int]:
    """Start-up: submissions left ``running`` go back to ``queued``; all queued are returned."""
    n = rowcount(
        session.execute(
            update(Submission).where(Submission.status == RUNNING).values(status=QUEUED)
        )
    )
    if n:
        log.warning("re-queued %d submission(s) left running by a previous process", n)
    return queued_ids(session)


# -- claim ------------------------------------------------------------------------------
def claim(
    sf: sessionmaker[Session], submission_id: int, *, reclaim: bool = False
) -> Claim | GaveUp | None:
    """Take the row: ``queued -> running``, and with ``reclaim`` (the caller holds the job
    lock, so a ``running`` row's job is gone) also ``running -> running``. Returns the
    :class:`Claim`, :class:`GaveUp` when a reclaimed row ran out of attempts, or None
    when there is nothing to do."""
    with session_scope(sf) as s:
        before = s.execute(
            select(Submission.status, Submission.attempts).where(Submission.id == submission_id)
        ).first()
        if before is None:
            return None
        if reclaim and before.status == RUNNING and before.attempts >= MAX_LOST_JUDGES:
            if not give_up(s, submission_id, before.attempts):
                return None
            log.error(
                "submission %d: its judge died %d times; failed", submission_id, before.attempts
            )
            return GaveUp(before.attempts)
        states = (QUEUED, RUNNING) if reclaim else (QUEUED,)
        res = s.execute(
            update(Submission)
            .where(Submission.id == submission_id, Submission.status.in_(states))
            .values(
                status=RUNNING,
                started_at=utcnow(),
                finished_at=None,
                attempts=Submission.attempts + 1,
                progress_done=0,
                progress_total=0,
                progress_note="",
            )
        )
        if rowcount(res) != 1:
            return None
        taken = _claimed(s, submission_id)
        if before.status == RUNNING:
            log.warning(
                "submission %d: its judge (attempt %d) is gone; claimed it again (attempt %d)",
                submission_id,
                before.attempts,
                taken.attempt,
            )
        return taken


def _claimed(s: Session, submission_id: int) -> Claim:
    sub = s.get(Submission, submission_id)
    assert sub is not None
    pt = s.scalars(
        select(PhaseTask).where(PhaseTask.phase_id == sub.phase_id, PhaseTask.task == sub.task)
    ).first()
    return Claim(
        submission_id=submission_id,
        attempt=sub.attempts,
        task=sub.task,
        dry_run=sub.dry_run,
        archive_path=sub.archive_path,
        ground_truth=None
        if pt is None
        else GroundTruthRef(
            id=pt.id,
            task=pt.task,
            gt_dir=pt.gt_dir,
            gt_sha256=pt.gt_sha256,
            protocol_json=pt.protocol_json,
            protocol_sha256=pt.protocol_sha256,
            n_cases=pt.n_cases,
        ),
        filename=sub.filename,
        kind=sub.kind,
        algorithm=_algorithm_ref(sub.phase) if sub.kind == KIND_ALGORITHM else None,
    )


def _algorithm_ref(phase: Phase) -> AlgorithmRef | None:
    if phase.inputs_dir is None:
        return None
    return AlgorithmRef(
        inputs_dir=phase.inputs_dir,
        case_seconds=phase.case_seconds,
        case_memory_mb=phase.case_memory_mb,
        case_cpus=phase.case_cpus,
        case_pids=phase.case_pids,
        case_gpu=phase.case_gpu,
        case_tmp_mb=phase.case_tmp_mb,
        case_output_mb=phase.case_output_mb,
        image_max_bytes=phase.image_max_bytes,
        parallel_cases=phase.parallel_cases,
        fail_fast=phase.fail_fast,
        hidden=phase.hidden,
    )


# -- progress and finish --------------------------------------------------------------------
class Progress:
    """Throttled progress writes: at most one per ``interval`` seconds, plus the last one."""

    def __init__(
        self, sf: sessionmaker[Session], submission_id: int, attempt: int, interval: float
    ) -> None:
        self.sf, self.sid, self.attempt, self.interval = sf, submission_id, attempt, interval
        self.last = float("-inf")

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < self.interval:
            return
        self.last = now
        try:
            with session_scope(self.sf) as s:
                s.execute(
                    update(Submission)
                    .where(running_attempt(self.sid, self.attempt))
                    .values(progress_done=int(done), progress_total=int(total))
                )
        except MemoryError:
            raise
        except Exception:  # progress is best effort; never fail a job on it
            log.warning("submission %d: could not store progress", self.sid, exc_info=True)

    def note(self, text: str) -> None:
        """What the judge is doing now (``progress_note``), best effort."""
        try:
            with session_scope(self.sf) as s:
                s.execute(
                    update(Submission)
                    .where(running_attempt(self.sid, self.attempt))
                    .values(progress_note=text[:200])
                )
        except MemoryError:
            raise
        except Exception:
            log.warning("submission %d: could not store progress", self.sid, exc_info=True)


def finish(sf: sessionmaker[Session], submission_id: int, attempt: int, verdict: Verdict) -> bool:
    """Write the outcome in one transaction, only if the job still owns the row."""
    with session_scope(sf) as s:
        values: dict[str, Any] = {
            "status": verdict.status,
            "finished_at": utcnow(),
            "errors": verdict.errors,
            "progress_note": "",
        }
        if verdict.doc is not None:
            n = len(verdict.doc.get("cases") or [])
            values.update(progress_done=n, progress_total=n)
        res = s.execute(
            update(Submission).where(running_attempt(submission_id, attempt)).values(**values)
        )
        if rowcount(res) != 1:
            s.rollback()
            return False
        if verdict.doc is not None:
            replace_result(s, submission_id, verdict.doc)
        else:
            delete_results(s, submission_id)
    return True


def _with_retries(write: Callable[[], bool], on_error: Callable[[int, Exception], None]) -> bool:
    """``write()`` up to :data:`WRITE_TRIES` times with backoff while it raises; its
    answer, or raises the last error."""
    for i in range(WRITE_TRIES):
        try:
            return write()
        except MemoryError:
            raise
        except Exception as e:
            on_error(i, e)
            if i + 1 == WRITE_TRIES:
                raise
            time.sleep(WRITE_BACKOFF * 2**i)
    raise AssertionError("unreachable")


def store(sf: sessionmaker[Session], submission_id: int, attempt: int, verdict: Verdict) -> str:
    """:func:`finish` with bounded retries. Returns the verdict's status, ``superseded``
    (another attempt owns the row), ``failed`` (the outcome could not be written, and the
    submission was failed as a platform failure instead) or ``unstored`` (not even that
    could be written: the row stays ``running`` for the sweeper)."""

    def outcome_error(i: int, e: Exception) -> None:
        log.warning(
            "submission %d: could not store its outcome (try %d of %d): %s",
            submission_id,
            i + 1,
            WRITE_TRIES,
            e,
        )

    try:
        written = _with_retries(lambda: finish(sf, submission_id, attempt, verdict), outcome_error)
    except Exception as e:
        return _store_platform_failure(sf, submission_id, attempt, verdict.status, e)
    if not written:
        log.warning(
            "submission %d: attempt %d was superseded; result dropped", submission_id, attempt
        )
        return SUPERSEDED
    return verdict.status


def _store_platform_failure(
    sf: sessionmaker[Session], submission_id: int, attempt: int, status: str, cause: Exception
) -> str:
    reason = storage_reason(cause)
    log.error(
        "submission %d: its outcome (%s) could not be stored after %d tries (%s); failing it "
        "as a platform failure",
        submission_id,
        status,
        WRITE_TRIES,
        reason,
        exc_info=cause,
    )
    failure = Verdict(status=FAILED, errors=[platform_error(unstored_message(reason))])

    def failure_error(_i: int, e: Exception) -> None:
        log.warning("submission %d: could not store the failure either: %s", submission_id, e)

    try:
        written = _with_retries(lambda: finish(sf, submission_id, attempt, failure), failure_error)
    except Exception:
        log.error(
            "submission %d: nothing could be written; it stays running until the sweeper "
            "queues it again",
            submission_id,
        )
        return UNSTORED
    return FAILED if written else SUPERSEDED


# -- requeue and give up ----------------------------------------------------------------------
def requeue(sf: sessionmaker[Session], submission_id: int, attempts: int) -> bool:
    """An orphaned ``running`` row (still at ``attempts``) goes back to ``queued``."""
    with session_scope(sf) as s:
        res = s.execute(
            update(Submission)
            .where(running_attempt(submission_id, attempts))
            .values(status=QUEUED, progress_done=0, progress_total=0)
        )
        return rowcount(res) == 1


def give_up(s: Session, submission_id: int, attempts: int) -> bool:
    """Fail a ``running`` row (still at ``attempts``) whose judges kept dying, as a
    platform failure; in the caller's transaction."""
    res = s.execute(
        update(Submission)
        .where(running_attempt(submission_id, attempts))
        .values(
            status=FAILED,
            finished_at=utcnow(),
            errors=[platform_error(lost_judges_message(attempts))],
        )
    )
    if rowcount(res) != 1:
        return False
    delete_results(s, submission_id)
    return True


def after_pool_crash(sf: sessionmaker[Session], submission_id: int) -> bool:
    """The local pool process judging the row died: a ``running`` row goes back to
    ``queued``, or is failed once it has used :data:`MAX_POOL_CRASHES` attempts. True
    when the row is ``queued`` (to be submitted again)."""
    with session_scope(sf) as s:
        sub = s.get(Submission, submission_id)
        if sub is None:
            return False
        if sub.status == RUNNING and sub.attempts >= MAX_POOL_CRASHES:
            sub.status = FAILED
            sub.finished_at = utcnow()
            sub.errors = [error("limit", POOL_CRASH_MESSAGE)]
            log.error(
                "submission %d: judging process died %d times; failed", submission_id, sub.attempts
            )
            return False
        if sub.status == RUNNING:
            sub.status = QUEUED
        return sub.status == QUEUED


def fail_unfinished(sf: sessionmaker[Session], submission_id: int, message: str) -> None:
    """A ``queued`` or ``running`` row is failed with an internal error."""
    with session_scope(sf) as s:
        s.execute(
            update(Submission)
            .where(Submission.id == submission_id, Submission.status.in_((QUEUED, RUNNING)))
            .values(status=FAILED, finished_at=utcnow(), errors=[error("internal", message)])
        )
