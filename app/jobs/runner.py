"""The judging job: ``run_job(submission_id, settings_dict)``.

Module-level and picklable, so any dispatcher can run it: a process of the local pool,
a Celery worker, or a plain call in a test. It takes only the submission id (and the
settings to find the database and data dir), loads everything else, and is safe to run
twice, or N times at once on M machines:

- it takes the submission's job lock (:mod:`app.jobs.locks`, PostgreSQL) and then
  claims the row with a conditional update (also bumping ``attempts``): ``queued ->
  running``, or ``running -> running`` when it holds the lock, which proves that the
  job that set ``running`` is gone (a worker killed mid-job, its message re-delivered).
  No lock, or no row changed: someone else has it, and the job returns ``skipped``;
- it scores in a child process with the per-job memory and time limits
  (:mod:`app.jobs.isolation`); going over either fails the submission with a message
  naming the limit, and the calling process goes on serving. The child has no
  database connection and no secrets: it sends its progress and its outcome through
  a pipe, and this process writes them;
- it writes progress, and at the end the result plus the per-case rows, only while
  the row is still ``running`` with its own attempt number, all in one transaction.
  A result that cannot be written (disk or database full, database unreachable) is
  tried again a few times with backoff (:data:`WRITE_TRIES`), then the submission
  fails as a *platform* failure (error kind :data:`PLATFORM`), which counts neither
  against the team's quota nor against its failed-submission allowance. If even that
  cannot be written the row stays ``running`` with no live judge, and the sweeper
  (:mod:`app.jobs.sweeper`) queues it again;
- its temporary files live in ``<data_dir>/tmp/job-<id>-<random>/`` (never ``/tmp``),
  owned by this process (:func:`app.jobs.locks.job_dir`) and removed when it ends.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import multiprocessing
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import (
    FAILED,
    QUEUED,
    RUNNING,
    SCORED,
    VALID,
    Phase,
    PhaseTask,
    Submission,
    utcnow,
)
from app.db.session import (
    get_engine,
    read_only,
    rowcount,
    session_factory,
    session_scope,
)
from app.jobs.isolation import (
    CAN_FORK,
    EXIT_ERROR,
    EXIT_MEMORY,
    ChildOutcome,
    format_duration,
    run_in_child,
    send_to_parent,
    set_memory_limit,
    watch_parent,
)
from app.jobs.locks import job_dir, remove_orphaned_job_dirs, submission_lock
from app.services.results import delete_results, replace_result
from app.settings import Settings
from app.storage import FULL_ERRNOS, SERVER_STORAGE_FULL, absolute, storage_reason

log = logging.getLogger(__name__)

CLAIMED = "claimed"
SKIPPED = "skipped"
SUPERSEDED = "superseded"
UNSTORED = "unstored"  # the outcome could not be written; the row is left to the sweeper

# The error kind of a failure that is the platform's, not the submission's (the result
# could not be stored, the judges kept dying). Submissions failed with it count neither
# in the daily quota nor in the failed-submission allowance (see app.allowances).
PLATFORM = "platform"
# A result write that fails is tried this many times, waiting WRITE_BACKOFF seconds
# before the second try and twice as long before each next one (0.5+1+2+4 = 7.5 s).
WRITE_TRIES = 5
WRITE_BACKOFF = 0.5

# A `running` row is claimed again only when its job is gone; after this many claims
# (the judge died each time, e.g. its machine was lost) the submission is failed.
MAX_ATTEMPTS = 3
# How long a re-delivered job waits for the job lock of a `running` row: PostgreSQL
# frees a dead worker's lock when it sees the connection end, a moment after the
# broker may already have handed the message to another worker.
LOCK_WAIT_SECONDS = 2.0
# Test-only: path of a JSON file {"<submission id>": {"allocate_mb": n, "sleep": s,
# "signal": "SIGSEGV", "dump_env": path, "enospc": true}} whose actions run inside the
# job's limits, before scoring. Refused in production (see refuse_test_hooks).
TEST_HOOKS_ENV = "HECKTOR_TEST_HOOKS"

_GT_CACHE: dict[tuple[str, str, int, str, str], Any] = {}
_GT_CACHE_MAX = 8


class JobTimeout(Exception):
    pass


@contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    """SIGALRM-based limit; only in the main thread of a process (pool workers are)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(_signum: int, _frame: Any) -> None:
        raise JobTimeout(seconds)

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextmanager
def _memory_limit(megabytes: int) -> Iterator[None]:
    """RLIMIT_AS (soft) for the duration of the block; the previous value afterwards."""
    if megabytes <= 0:
        yield
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    set_memory_limit(megabytes)
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def memory_message(megabytes: int) -> str:
    if megabytes <= 0:
        return "judging ran out of memory; check the image sizes and data types of the predictions"
    return (
        f"judging used more than {megabytes} MB of memory (the limit per submission) and was "
        "stopped; check the image sizes and data types of the predictions (3-D integer label "
        "maps on the CT grid)"
    )


def time_message(seconds: float) -> str:
    return (
        f"judging took longer than {format_duration(seconds)} (the time limit per submission) "
        "and was stopped; check that the archive holds only the expected predictions"
    )


def crash_message(outcome: ChildOutcome, megabytes: int) -> str:
    msg = (
        f"the judging process stopped unexpectedly ({outcome.ended}) while scoring this submission"
    )
    if megabytes > 0:
        return (
            f"{msg}; it most likely used more than {megabytes} MB of memory (the limit per "
            "submission): check the image sizes and data types of the predictions"
        )
    return f"{msg}; check the image sizes and data types of the predictions"


def _error(kind: str, message: str, case: str = "") -> dict[str, str]:
    return {"case": case, "kind": kind, "message": message}


def unstored_message(reason: str) -> str:
    return (
        f"the server could not store the result ({reason}); this does not count against "
        "your quota, resubmit later"
    )


def storage_full_message() -> str:
    return (
        f"the server ran out of storage while judging this submission ({SERVER_STORAGE_FULL}); "
        "this does not count against your quota, resubmit later"
    )


def platform_error(message: str) -> dict[str, str]:
    """A failure of the platform (error kind :data:`PLATFORM`): refunded, never counted."""
    return _error(PLATFORM, message)


def lost_judges_message(attempts: int) -> str:
    return (
        f"the judging process stopped unexpectedly {attempts} times while scoring this "
        "submission (a worker crashed or was lost); the organizers have been notified; this "
        "does not count against your quota, resubmit later"
    )


def test_hooks_problem(settings: Settings) -> str | None:
    """Why this process must not start: test hooks set in production mode (else None)."""
    if settings.mode == "production" and os.environ.get(TEST_HOOKS_ENV):
        return (
            f"{TEST_HOOKS_ENV} is set, but test hooks (jobs made to sleep, crash or use "
            "memory on purpose) are refused in production mode (HECKTOR_MODE=production); "
            f"unset {TEST_HOOKS_ENV}"
        )
    return None


def refuse_test_hooks(settings: Settings) -> None:
    """Raise ``RuntimeError`` (start-up of ``serve`` and ``worker``) if test hooks are
    set in production mode."""
    if (why := test_hooks_problem(settings)) is not None:
        raise RuntimeError(why)


def _load_ground_truth(settings: Settings, pt: dict[str, Any]) -> Any:
    """The phase task's ground truth from its copy in the data dir, checked against its hash."""
    from app.storage import prepared_dir
    from evaluator.errors import GroundTruthError
    from evaluator.io.ground_truth import MANIFEST, load_prepared_task1
    from evaluator.protocol import Protocol
    from evaluator.scoring import load_ground_truth

    gt_dir = absolute(settings, pt["gt_dir"])
    # the folder is part of the key: a database recreated with the same ids (or a task
    # imported again) must never be served the ground truth of an older copy
    key = (settings.db_url, str(gt_dir), pt["id"], pt["gt_sha256"], pt["protocol_sha256"])
    gt = _GT_CACHE.get(key)
    if gt is not None:
        return gt
    protocol = Protocol.from_json(pt["protocol_json"])
    prepared = prepared_dir(gt_dir)
    if pt["task"] == 1 and (prepared / MANIFEST).is_file():
        gt = load_prepared_task1(prepared)  # no image decoded; crops hash-checked on use
    else:
        gt = load_ground_truth(pt["task"], gt_dir, protocol=protocol)
    if gt.sha256 != pt["gt_sha256"]:
        raise GroundTruthError(
            [
                f"the stored ground truth of task {pt['task']} hashes to {gt.sha256}, "
                f"but {pt['gt_sha256']} was recorded at import; it was changed on disk"
            ]
        )
    if len(_GT_CACHE) >= _GT_CACHE_MAX:
        _GT_CACHE.pop(next(iter(_GT_CACHE)))
    _GT_CACHE[key] = gt
    return gt


def _status(sf: sessionmaker[Session], submission_id: int) -> str | None:
    with session_scope(sf) as s:
        return s.scalar(select(Submission.status).where(Submission.id == submission_id))


def _claim(
    sf: sessionmaker[Session], submission_id: int, *, reclaim: bool = False
) -> dict[str, Any] | None:
    """Take the row: ``queued -> running``, and with ``reclaim`` (the caller holds the job
    lock, so a ``running`` row's job is gone) also ``running -> running``. Returns what
    the job needs, ``{"gave_up": ...}`` when a reclaimed row ran out of attempts, or None
    when there is nothing to do."""
    with session_scope(sf) as s:
        before = s.execute(
            select(Submission.status, Submission.attempts).where(Submission.id == submission_id)
        ).first()
        if before is None:
            return None
        if reclaim and before.status == RUNNING and before.attempts >= MAX_ATTEMPTS:
            res = s.execute(
                update(Submission)
                .where(Submission.id == submission_id, Submission.status == RUNNING)
                .values(
                    status=FAILED,
                    finished_at=utcnow(),
                    errors=[platform_error(lost_judges_message(before.attempts))],
                )
            )
            if rowcount(res) == 1:
                delete_results(s, submission_id)
                log.error(
                    "submission %d: its judge died %d times; failed", submission_id, before.attempts
                )
                return {"gave_up": True}
            return None
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
            )
        )
        if rowcount(res) != 1:
            return None
        sub = s.get(Submission, submission_id)
        assert sub is not None
        if before.status == RUNNING:
            log.warning(
                "submission %d: its judge (attempt %d) is gone; claimed it again (attempt %d)",
                submission_id,
                before.attempts,
                sub.attempts,
            )
        pt = s.scalars(
            select(PhaseTask).where(PhaseTask.phase_id == sub.phase_id, PhaseTask.task == sub.task)
        ).first()
        return {
            "attempt": sub.attempts,
            "task": sub.task,
            "dry_run": sub.dry_run,
            "archive_path": sub.archive_path,
            "pt": None
            if pt is None
            else {
                "id": pt.id,
                "task": pt.task,
                "gt_dir": pt.gt_dir,
                "gt_sha256": pt.gt_sha256,
                "protocol_json": pt.protocol_json,
                "protocol_sha256": pt.protocol_sha256,
                "n_cases": pt.n_cases,
            },
        }


def running_attempt(submission_id: int, attempt: int) -> ColumnElement[bool]:
    """The row is still running this attempt: a write under this condition never touches
    a row that another attempt owns or that has finished."""
    return (
        (Submission.id == submission_id)
        & (Submission.status == RUNNING)
        & (Submission.attempts == attempt)
    )


class _Progress:
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


def _finish(
    sf: sessionmaker[Session],
    submission_id: int,
    attempt: int,
    *,
    status: str,
    doc: dict[str, Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> bool:
    """Write the outcome in one transaction, only if the job still owns the row."""
    with session_scope(sf) as s:
        values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "errors": errors}
        if doc is not None:
            n = len(doc.get("cases") or [])
            values.update(progress_done=n, progress_total=n)
        res = s.execute(
            update(Submission).where(running_attempt(submission_id, attempt)).values(**values)
        )
        if rowcount(res) != 1:
            s.rollback()
            return False
        if doc is not None:
            replace_result(s, submission_id, doc)
        else:
            delete_results(s, submission_id)
    return True


def _store(
    sf: sessionmaker[Session],
    submission_id: int,
    attempt: int,
    *,
    status: str,
    doc: dict[str, Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> str:
    """:func:`_finish` with bounded retries. Returns ``status``, ``superseded`` (another
    attempt owns the row), ``failed`` (the outcome could not be written, and the
    submission was failed as a platform failure instead) or ``unstored`` (not even that
    could be written: the row stays ``running`` for the sweeper)."""
    error: Exception | None = None
    for i in range(WRITE_TRIES):
        try:
            written = _finish(sf, submission_id, attempt, status=status, doc=doc, errors=errors)
        except MemoryError:
            raise
        except Exception as e:
            error = e
            log.warning(
                "submission %d: could not store its outcome (try %d of %d): %s",
                submission_id,
                i + 1,
                WRITE_TRIES,
                e,
            )
            if i + 1 < WRITE_TRIES:
                time.sleep(WRITE_BACKOFF * 2**i)
            continue
        if not written:
            log.warning(
                "submission %d: attempt %d was superseded; result dropped", submission_id, attempt
            )
            return SUPERSEDED
        return status
    assert error is not None
    reason = storage_reason(error)
    log.error(
        "submission %d: its outcome (%s) could not be stored after %d tries (%s); failing it "
        "as a platform failure",
        submission_id,
        status,
        WRITE_TRIES,
        reason,
        exc_info=error,
    )
    fail = [platform_error(unstored_message(reason))]
    for i in range(WRITE_TRIES):
        try:
            if _finish(sf, submission_id, attempt, status=FAILED, errors=fail):
                return FAILED
            return SUPERSEDED
        except MemoryError:
            raise
        except Exception as e:
            log.warning("submission %d: could not store the failure either: %s", submission_id, e)
            if i + 1 < WRITE_TRIES:
                time.sleep(WRITE_BACKOFF * 2**i)
    log.error(
        "submission %d: nothing could be written; it stays running until the sweeper "
        "queues it again",
        submission_id,
    )
    return UNSTORED


def _fail_unclaimable(sf: sessionmaker[Session], submission_id: int, attempt: int, msg: str) -> str:
    return _store(sf, submission_id, attempt, status=FAILED, errors=[_error("internal", msg)])


def _run_test_hooks(settings: Settings, submission_id: int) -> None:
    """Test-only actions for this submission (see ``TEST_HOOKS_ENV``); a no-op unless set,
    and ignored (with a warning) in production mode."""
    path = os.environ.get(TEST_HOOKS_ENV)
    if not path:
        return
    if settings.mode == "production":
        log.warning("%s is set in production mode; test hooks ignored", TEST_HOOKS_ENV)
        return
    try:
        hooks = json.loads(Path(path).read_text()).get(str(submission_id)) or {}
    except (OSError, ValueError):
        return
    if hooks.get("dump_env"):  # what the judging code can see of the environment
        Path(hooks["dump_env"]).write_text(
            json.dumps(
                {
                    "environ": dict(os.environ),
                    "proc_environ": Path("/proc/self/environ").read_bytes().decode("latin-1")
                    if Path("/proc/self/environ").exists()
                    else "",
                    "tempdir": tempfile.gettempdir(),
                    "pid": os.getpid(),
                }
            )
        )
    if hooks.get("enospc"):  # the server's disk is full while judging
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if hooks.get("allocate_mb"):
        ballast = bytearray(int(hooks["allocate_mb"]) << 20)  # MemoryError over RLIMIT_AS
        del ballast
    if hooks.get("sleep"):
        time.sleep(float(hooks["sleep"]))
    if hooks.get("signal"):  # a crash in native code
        os.kill(os.getpid(), getattr(signal, str(hooks["signal"])))


def _score(
    settings: Settings,
    submission_id: int,
    claim: dict[str, Any],
    gt: Any,
    *,
    limits_here: bool,
    progress: Any,
) -> dict[str, Any]:
    """Validate and score a claimed submission: ``{"status", "doc", "errors"}``, written by
    the caller. With ``limits_here`` the memory limit (and, without a parent to enforce
    it, the time limit) applies to this process around the scorer."""
    from evaluator.errors import ScoringError, SubmissionRejected
    from evaluator.protocol import Limits, Protocol
    from evaluator.scoring import score_submission

    pt = claim["pt"]
    mb = settings.job_memory_mb if limits_here else 0
    status, doc, errors = FAILED, None, None
    try:
        with _memory_limit(mb):
            _run_test_hooks(settings, submission_id)
            archive = absolute(settings, claim["archive_path"])
            doc = score_submission(
                claim["task"],
                gt,
                Path(archive),
                protocol=Protocol.from_json(pt["protocol_json"]),
                limits=Limits(),
                workers=1,
                progress=progress,
                dry_run=claim["dry_run"],
            )
        status = VALID if claim["dry_run"] else SCORED
    except SubmissionRejected as e:
        errors = [p.as_dict() for p in e.problems]
    except JobTimeout:
        errors = [_error("limit", time_message(settings.job_timeout_seconds))]
    except MemoryError:
        log.warning("submission %d: over the memory limit of %d MB", submission_id, mb)
        errors = [_error("limit", memory_message(mb or settings.job_memory_mb))]
    except ScoringError as e:
        errors = [_error("scoring", str(e))]
    except OSError as e:
        if e.errno not in FULL_ERRNOS:
            log.exception("submission %d: internal error while scoring", submission_id)
            errors = [_internal_error(submission_id)]
        else:  # the server's disk, not the submission
            log.error("submission %d: server storage full while judging: %s", submission_id, e)
            errors = [platform_error(storage_full_message())]
    except Exception:
        log.exception("submission %d: internal error while scoring", submission_id)
        errors = [_internal_error(submission_id)]
    if status != FAILED:
        doc = dict(doc or {})
        doc.setdefault("status", status)
    return {"status": status, "doc": doc, "errors": errors}


def _internal_error(submission_id: int) -> dict[str, str]:
    return _error(
        "internal",
        "internal error while scoring; the organizers have been notified "
        f"(reference: submission {submission_id})",
    )


def child_settings(settings: Settings) -> Settings:
    """The settings a judging child gets: no organizer token, no database or broker URL
    (it opens no connection; its parent writes everything)."""
    return settings.model_copy(
        update={"organizer_token": None, "database_url": "sqlite://", "broker_url": ""}
    )


def _score_in_child(
    settings: Settings, submission_id: int, claim: dict[str, Any], gt: Any, tmp: Path
) -> dict[str, Any]:
    """The child's side: temporary files in the job's folder, progress and outcome
    through the pipe (:func:`app.jobs.isolation.send_to_parent`); no database."""
    tempfile.tempdir = str(tmp)
    os.environ["TMPDIR"] = str(tmp)

    def progress(done: int, total: int) -> None:
        send_to_parent({"progress": [int(done), int(total)]})

    return _score(settings, submission_id, claim, gt, limits_here=True, progress=progress)


def _on_child_message(progress: _Progress) -> Any:
    def handle(message: dict[str, Any]) -> None:
        done_total = message.get("progress")
        if isinstance(done_total, list) and len(done_total) == 2:
            progress(int(done_total[0]), int(done_total[1]))

    return handle


def _judge(
    sf: sessionmaker[Session],
    settings: Settings,
    submission_id: int,
    claim: dict[str, Any],
    tmp: Path,
) -> str:
    from evaluator.errors import GroundTruthError

    attempt = claim["attempt"]
    pt = claim["pt"]
    if pt is None:
        return _fail_unclaimable(
            sf, submission_id, attempt, "the phase has no ground truth for this task"
        )
    try:  # trusted input, outside the limits; cached in this process for the next jobs
        gt = _load_ground_truth(settings, pt)
    except Exception as e:
        if isinstance(e, GroundTruthError):
            log.error("submission %d: ground truth unusable: %s", submission_id, e)
        else:
            log.exception("submission %d: could not load the ground truth", submission_id)
        return _fail_unclaimable(
            sf,
            submission_id,
            attempt,
            "the ground truth of this phase could not be loaded; the organizers have been "
            f"notified (reference: submission {submission_id})",
        )
    started = time.monotonic()
    progress = _Progress(sf, submission_id, attempt, settings.progress_interval)
    progress(0, len(gt.case_ids))
    if not CAN_FORK:  # in-process fallback: limits only inside a pool worker process
        in_worker = multiprocessing.parent_process() is not None
        old_tmp = tempfile.tempdir
        tempfile.tempdir = str(tmp)
        try:
            with _time_limit(settings.job_timeout_seconds if in_worker else 0):
                out = _score(
                    settings, submission_id, claim, gt, limits_here=in_worker, progress=progress
                )
        finally:
            tempfile.tempdir = old_tmp
        return _stored(sf, submission_id, attempt, out, started)
    outcome = run_in_child(
        functools.partial(_score_in_child, child_settings(settings), submission_id, claim, gt, tmp),
        timeout=settings.job_timeout_seconds,
        on_message=_on_child_message(progress),
    )
    if outcome.report is not None and isinstance(outcome.report.get("status"), str):
        return _stored(sf, submission_id, attempt, outcome.report, started)
    if outcome.timed_out:
        log.warning(
            "submission %d: over the time limit of %s; judging process killed",
            submission_id,
            format_duration(settings.job_timeout_seconds),
        )
        error = _error("limit", time_message(settings.job_timeout_seconds))
    elif outcome.exit_code == EXIT_MEMORY:
        log.warning("submission %d: over the memory limit (outside the scorer)", submission_id)
        error = _error("limit", memory_message(settings.job_memory_mb))
    elif outcome.exit_code == EXIT_ERROR:  # the traceback went to the log (stderr)
        log.error("submission %d: the judging process failed", submission_id)
        error = _error(
            "internal",
            "internal error while scoring; the organizers have been notified "
            f"(reference: submission {submission_id})",
        )
    else:
        log.error("submission %d: judging process %s", submission_id, outcome.ended)
        error = _error("limit", crash_message(outcome, settings.job_memory_mb))
    return _store(sf, submission_id, attempt, status=FAILED, errors=[error])


def _stored(
    sf: sessionmaker[Session], submission_id: int, attempt: int, out: dict[str, Any], started: float
) -> str:
    """Write a scorer's outcome (``{"status", "doc", "errors"}``); returns what was stored."""
    status = str(out["status"])
    result = _store(
        sf, submission_id, attempt, status=status, doc=out.get("doc"), errors=out.get("errors")
    )
    if result == status:
        log.info(
            "submission %d: %s in %.1f s (attempt %d)",
            submission_id,
            status,
            time.monotonic() - started,
            attempt,
        )
    return result


def run_job(submission_id: int, settings_dict: dict[str, Any]) -> str:
    """Judge one submission. Returns ``scored``, ``valid``, ``failed``, ``skipped`` or
    ``superseded``; every failure is stored on the row, never raised."""
    settings = Settings.from_dict(settings_dict)
    engine = get_engine(settings.db_url)
    sf = session_factory(engine)
    status = _status(sf, submission_id)
    if status not in (QUEUED, RUNNING):
        log.info("submission %d: %s, nothing to do; skipped", submission_id, status or "unknown")
        return SKIPPED
    wait = LOCK_WAIT_SECONDS if status == RUNNING else 0.0
    with submission_lock(engine, submission_id, wait=wait) as lock:
        if not lock.acquired:
            log.info("submission %d: being judged by another worker; skipped", submission_id)
            return SKIPPED
        remove_orphaned_job_dirs(settings.data_dir)  # workers sweep their own data dir
        with contextlib.ExitStack() as stack:
            # owned before the claim, so that a `running` row always has a live owner record
            try:
                tmp: Path | None = stack.enter_context(job_dir(settings.data_dir, submission_id))
            except OSError as e:
                if e.errno not in FULL_ERRNOS:
                    raise
                log.error("submission %d: no room for its job folder: %s", submission_id, e)
                tmp = None
            claim = _claim(sf, submission_id, reclaim=lock.exclusive)
            if claim is None:
                log.info(
                    "submission %d: not queued (already claimed or finished); skipped",
                    submission_id,
                )
                return SKIPPED
            if claim.get("gave_up"):
                return FAILED
            if tmp is None:
                error = platform_error(storage_full_message())
                status = _store(sf, submission_id, claim["attempt"], status=FAILED, errors=[error])
            else:
                status = _judge(sf, settings, submission_id, claim, tmp)
    if status == SCORED:  # after the lock: the bootstrap holds up no other judge
        warm_analysis(engine, submission_id)
    return status


def warm_analysis(engine: Engine, submission_id: int) -> None:
    """Best effort, once a result is stored: compute the ranking analysis of the board
    the result lands on (the phase's default selection) and cache it, so that the
    board's first view does not wait for the bootstrap (about 1 s per task for 20
    teams x 400 cases). A failure is logged; the result is stored already."""
    from app.security import ORGANIZER_PRINCIPAL
    from app.services.board_analysis import board_analysis
    from app.services.leaderboards import leaderboard

    started = time.monotonic()
    # reads go through a read-only session (on SQLite: no write lock while the board is
    # read); only the new cache entry is written, through a session of its own
    reader = session_factory(read_only(engine))
    try:
        with session_scope(reader) as s:
            sub = s.get(Submission, submission_id)
            phase = None if sub is None else s.get(Phase, sub.phase_id)
            if sub is None or phase is None or sub.status != SCORED:
                return
            organizer = ORGANIZER_PRINCIPAL
            board = leaderboard(s, phase.name, sub.task, organizer)
            if board.get("frozen") or not board["rows"]:
                return  # a frozen board serves its snapshot's analysis
            board_analysis(s, board, organizer, write_sessions=session_factory(engine))
    except Exception:
        log.warning("submission %d: analysis not precomputed", submission_id, exc_info=True)
        return
    log.info(
        "submission %d: board analysis ready in %.2f s", submission_id, time.monotonic() - started
    )


def warm_up(log_level: str = "info") -> None:
    """Pool initializer: configure logging and import the scorer ahead of the first job."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=getattr(logging, log_level.upper(), logging.INFO),
            format="%(asctime)s %(levelname)s [judge %(process)d] %(name)s: %(message)s",
        )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    watch_parent()  # a killed server leaves no judge behind
    preload_scorer()


def preload_scorer() -> None:
    """Import everything a job imports, in a judging process (local pool or Celery),
    so that each job's forked child inherits it instead of importing it again
    (lifelines alone takes about 1 s: every Task 2 job paid that)."""
    started = time.monotonic()
    for mod in (
        "evaluator.scoring",
        "evaluator.task1",
        "evaluator.tabular",
        "evaluator.survival",
        "evaluator.classification",
        "lifelines.utils",
        "sklearn.metrics",
        "app.services.board_analysis",
    ):
        try:
            __import__(mod)
        except Exception:  # a missing module surfaces as a job error, with a message
            log.debug("could not pre-import %s", mod, exc_info=True)
    log.info("judging process ready: scorer imported in %.1f s", time.monotonic() - started)
