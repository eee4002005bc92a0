"""The judging job: ``run_job(submission_id, settings_dict)``.

Module-level and picklable, so any dispatcher can run it: a process of the local pool,
a Celery worker, or a plain call in a test. It takes only the submission id (and the
settings to find the database and data dir), loads everything else, and is safe to run
twice, or N times at once on M machines:

- it takes the submission's job lock (:mod:`app.jobs.locks`, PostgreSQL) and then
  claims the row with a conditional update, bumping ``attempts``
  (:func:`app.jobs.claims.claim`): ``queued -> running``, or ``running -> running``
  when it holds the lock, which proves that the job that set ``running`` is gone (a
  worker killed mid-job, its message re-delivered). No lock, or no row changed:
  someone else has it, and the job returns ``skipped``;
- it scores in a child process with the per-job memory and time limits
  (:mod:`app.jobs.isolation`, :mod:`app.jobs.limits`); going over either fails the
  submission with a message naming the limit, and the calling process goes on
  serving. The child has no database connection and no secrets: it sends its
  progress and its outcome through a pipe, and this process writes them;
- it writes progress, and at the end the result plus the per-case rows, only while
  the row is still ``running`` with its own attempt number, all in one transaction.
  A result that cannot be written (disk or database full, database unreachable) is
  tried again a few times with backoff (:data:`app.jobs.claims.WRITE_TRIES`), then
  the submission fails as a *platform* failure (error kind
  :data:`app.jobs.outcomes.PLATFORM`), which counts neither against the team's quota
  nor against its failed-submission allowance. If even that cannot be written the
  row stays ``running`` with no live judge, and the sweeper (:mod:`app.jobs.sweeper`)
  queues it again;
- its temporary files live in ``<data_dir>/tmp/job-<id>-<random>/`` (never ``/tmp``),
  owned by this process (:func:`app.jobs.locks.job_dir`) and removed when it ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import multiprocessing
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import (
    FAILED,
    KIND_ALGORITHM,
    QUEUED,
    RUNNING,
    SCORED,
    VALID,
    Phase,
    Submission,
)
from app.db.session import (
    get_engine,
    read_only,
    session_factory,
    session_scope,
)
from app.jobs import claims
from app.jobs.claims import SKIPPED, Claim, GaveUp, Progress
from app.jobs.isolation import (
    CAN_FORK,
    EXIT_ERROR,
    EXIT_MEMORY,
    ChildOutcome,
    run_in_child,
    send_to_parent,
)
from app.jobs.judge_cache import ground_truth
from app.jobs.limits import (
    JobTimeout,
    crash_message,
    format_duration,
    memory_limit,
    memory_message,
    time_limit,
    time_message,
)
from app.jobs.locks import job_dir, remove_orphaned_job_dirs, submission_lock
from app.jobs.outcomes import (
    Verdict,
    error,
    internal_error,
    platform_error,
    storage_full_message,
)
from app.settings import Settings
from app.storage import FULL_ERRNOS, absolute, rel

if TYPE_CHECKING:
    from evaluator.errors import SubmissionError

log = logging.getLogger(__name__)

# How long a re-delivered job waits for the job lock of a `running` row: PostgreSQL
# frees a dead worker's lock when it sees the connection end, a moment after the
# broker may already have handed the message to another worker.
LOCK_WAIT_SECONDS = 2.0


def score_claim(
    settings: Settings, claim: Claim, gt: Any, *, progress: Callable[[int, int], None]
) -> Mapping[str, Any]:
    """Validate and score the claimed submission's archive: the untrusted work, run
    under the job's limits. Returns the result document; raises what the scorer raises."""
    from evaluator.protocol import Limits, Protocol
    from evaluator.scoring import score_submission

    assert claim.ground_truth is not None
    return score_submission(
        claim.task,
        gt,
        Path(absolute(settings, claim.archive_path)),
        protocol=Protocol.from_json(claim.ground_truth.protocol_json),
        limits=Limits(),
        workers=1,
        progress=progress,
        dry_run=claim.dry_run,
    )


def uploaded_names(problems: Sequence[SubmissionError], claim: Claim) -> list[dict[str, str]]:
    """The problems as stored: the upload's stored name (``predictions.csv``,
    ``submission.zip``: :data:`app.storage.STORED_NAMES`) replaced by the name the
    participant uploaded, wherever the scorer named the file it was given; a message
    that begins with its ``case`` ("x.csv: wrong columns ...") without that prefix, so
    that pages and the client, which show ``case: message``, name the file once."""
    stored = Path(claim.archive_path).name
    uploaded = claim.filename.strip() or stored
    pattern = re.compile(rf"(?<![\w.-]){re.escape(stored)}(?![\w.-])")
    out = []
    for p in problems:
        item = p.as_dict()
        if uploaded != stored:
            item["case"] = uploaded if item["case"] == stored else item["case"]
            item["message"] = pattern.sub(lambda _: uploaded, item["message"])
        prefix = f"{item['case']}: "
        if item["case"] and item["message"].startswith(prefix):
            item["message"] = item["message"][len(prefix) :]
        out.append(item)
    return out


def _score(
    settings: Settings,
    claim: Claim,
    gt: Any,
    *,
    limits_here: bool,
    progress: Callable[[int, int], None],
) -> Verdict:
    """Judge a claimed submission; the caller writes the verdict. With ``limits_here`` the
    memory limit (and, without a parent to enforce it, the time limit) applies to this
    process around the scorer."""
    from evaluator.errors import ScoringError, SubmissionRejected

    sid = claim.submission_id
    mb = settings.job_memory_mb if limits_here else 0
    try:
        with memory_limit(mb):
            doc = score_claim(settings, claim, gt, progress=progress)
    except SubmissionRejected as e:
        return Verdict(status=FAILED, errors=uploaded_names(e.problems, claim))
    except JobTimeout:
        return Verdict(
            status=FAILED, errors=[error("limit", time_message(settings.job_timeout_seconds))]
        )
    except MemoryError:
        log.warning("submission %d: over the memory limit of %d MB", sid, mb)
        return Verdict(
            status=FAILED, errors=[error("limit", memory_message(mb or settings.job_memory_mb))]
        )
    except ScoringError as e:
        return Verdict(status=FAILED, errors=[error("scoring", str(e))])
    except OSError as e:
        if e.errno not in FULL_ERRNOS:
            log.exception("submission %d: internal error while scoring", sid)
            return Verdict(status=FAILED, errors=[internal_error(sid)])
        # the server's disk, not the submission
        log.error("submission %d: server storage full while judging: %s", sid, e)
        return Verdict(status=FAILED, errors=[platform_error(storage_full_message())])
    except Exception:
        log.exception("submission %d: internal error while scoring", sid)
        return Verdict(status=FAILED, errors=[internal_error(sid)])
    status = VALID if claim.dry_run else SCORED
    doc = dict(doc or {})
    doc.setdefault("status", status)
    return Verdict(status=status, doc=doc)


def child_settings(settings: Settings) -> Settings:
    """The settings a judging child gets: no organizer token, no database or broker URL
    (it opens no connection; its parent writes everything)."""
    return settings.model_copy(
        update={"organizer_token": None, "database_url": "sqlite://", "broker_url": ""}
    )


def _score_in_child(settings: Settings, claim: Claim, gt: Any, tmp: Path) -> dict[str, Any]:
    """The child's side: temporary files in the job's folder, progress and outcome
    through the pipe (:func:`app.jobs.isolation.send_to_parent`); no database."""
    tempfile.tempdir = str(tmp)
    os.environ["TMPDIR"] = str(tmp)

    def progress(done: int, total: int) -> None:
        send_to_parent({"progress": [int(done), int(total)]})

    return _score(settings, claim, gt, limits_here=True, progress=progress).to_report()


def _on_child_message(progress: Progress) -> Callable[[dict[str, Any]], None]:
    def handle(message: dict[str, Any]) -> None:
        done_total = message.get("progress")
        if isinstance(done_total, list) and len(done_total) == 2:
            progress(int(done_total[0]), int(done_total[1]))

    return handle


def _child_failure(settings: Settings, submission_id: int, outcome: ChildOutcome) -> Verdict:
    """The verdict on a judging child that ended without a report."""
    if outcome.timed_out:
        log.warning(
            "submission %d: over the time limit of %s; judging process killed",
            submission_id,
            format_duration(settings.job_timeout_seconds),
        )
        err = error("limit", time_message(settings.job_timeout_seconds))
    elif outcome.exit_code == EXIT_MEMORY:
        log.warning("submission %d: over the memory limit (outside the scorer)", submission_id)
        err = error("limit", memory_message(settings.job_memory_mb))
    elif outcome.exit_code == EXIT_ERROR:  # the traceback went to the log (stderr)
        log.error("submission %d: the judging process failed", submission_id)
        err = internal_error(submission_id)
    else:
        log.error("submission %d: judging process %s", submission_id, outcome.ended)
        err = error("limit", crash_message(outcome, settings.job_memory_mb))
    return Verdict(status=FAILED, errors=[err])


def _load_or_fail(sf: sessionmaker[Session], settings: Settings, claim: Claim) -> Any:
    """The claim's ground truth (trusted input, read outside the limits, cached in this
    process for the next jobs), or the status stored on failing the submission (a str)."""
    from evaluator.errors import GroundTruthError

    sid = claim.submission_id
    if claim.ground_truth is None:
        message = "the phase has no ground truth for this task"
        return _fail_internal(sf, claim, message)
    try:
        return ground_truth(settings, claim.ground_truth)
    except Exception as e:
        if isinstance(e, GroundTruthError):
            log.error("submission %d: ground truth unusable: %s", sid, e)
        else:
            log.exception("submission %d: could not load the ground truth", sid)
        return _fail_internal(
            sf,
            claim,
            "the ground truth of this phase could not be loaded; the organizers have been "
            f"notified (reference: submission {sid})",
        )


def _fail_internal(sf: sessionmaker[Session], claim: Claim, message: str) -> str:
    verdict = Verdict(status=FAILED, errors=[error("internal", message)])
    return claims.store(sf, claim.submission_id, claim.attempt, verdict)


def _judge_here(
    settings: Settings, claim: Claim, gt: Any, tmp: Path, progress: Progress
) -> Verdict:
    """Without ``fork``: judge in this process, the limits only inside a pool process."""
    in_worker = multiprocessing.parent_process() is not None
    old_tmp = tempfile.tempdir
    tempfile.tempdir = str(tmp)
    try:
        with time_limit(settings.job_timeout_seconds if in_worker else 0):
            return _score(settings, claim, gt, limits_here=in_worker, progress=progress)
    finally:
        tempfile.tempdir = old_tmp


def _judge(sf: sessionmaker[Session], settings: Settings, claim: Claim, tmp: Path) -> str:
    gt = _load_or_fail(sf, settings, claim)
    if isinstance(gt, str):
        return gt
    sid, attempt = claim.submission_id, claim.attempt
    started = time.monotonic()
    progress = Progress(sf, sid, attempt, settings.progress_interval)
    if claim.kind == KIND_ALGORITHM:
        ran = _run_algorithm(settings, claim, gt, tmp, progress)
        if isinstance(ran, Verdict):
            return _stored(sf, claim, ran, started)
        claim = ran
    progress(0, len(gt.case_ids))
    if not CAN_FORK:
        return _stored(sf, claim, _judge_here(settings, claim, gt, tmp, progress), started)
    outcome = run_in_child(
        functools.partial(_score_in_child, child_settings(settings), claim, gt, tmp),
        timeout=settings.job_timeout_seconds,
        on_message=_on_child_message(progress),
    )
    verdict = Verdict.from_report(outcome.report)
    if verdict is not None:
        if claim.kind == KIND_ALGORITHM:
            from app.jobs.algorithm_job import name_cases

            name_cases(verdict.errors, tuple(gt.case_ids))
        return _stored(sf, claim, verdict, started)
    return claims.store(sf, sid, attempt, _child_failure(settings, sid, outcome))


def _run_algorithm(
    settings: Settings, claim: Claim, gt: Any, tmp: Path, progress: Progress
) -> Verdict | Claim:
    """Run an algorithm submission's container on every case (in this process, never
    in the limited child); the verdict when it failed (or was a dry run), else the claim
    with its staged outputs to score in place of an upload."""
    from app.jobs.algorithm_job import run_cases

    if claim.algorithm is None:
        msg = "the phase has no case inputs for algorithms; the organizers have been notified"
        log.error(
            "submission %d: an algorithm submission in a phase without inputs", claim.submission_id
        )
        return Verdict(status=FAILED, errors=[error("internal", msg)])
    try:
        ran = run_cases(
            settings, claim, tuple(gt.case_ids), tmp, progress=progress, note=progress.note
        )
    except OSError as e:
        if e.errno not in FULL_ERRNOS:
            log.exception(
                "submission %d: internal error while running the algorithm", claim.submission_id
            )
            return Verdict(status=FAILED, errors=[internal_error(claim.submission_id)])
        log.error(
            "submission %d: server storage full while running the algorithm: %s",
            claim.submission_id,
            e,
        )
        return Verdict(status=FAILED, errors=[platform_error(storage_full_message())])
    except Exception:
        log.exception(
            "submission %d: internal error while running the algorithm", claim.submission_id
        )
        return Verdict(status=FAILED, errors=[internal_error(claim.submission_id)])
    if ran.verdict is not None:
        return ran.verdict
    assert ran.stage is not None
    return dataclasses.replace(claim, archive_path=rel(settings, ran.stage), filename="")


def _stored(sf: sessionmaker[Session], claim: Claim, verdict: Verdict, started: float) -> str:
    """Write a verdict; returns what was stored."""
    result = claims.store(sf, claim.submission_id, claim.attempt, verdict)
    if result == verdict.status:
        log.info(
            "submission %d: %s in %.1f s (attempt %d)",
            claim.submission_id,
            verdict.status,
            time.monotonic() - started,
            claim.attempt,
        )
    return result


def _status(sf: sessionmaker[Session], submission_id: int) -> str | None:
    with session_scope(sf) as s:
        return claims.status_of(s, submission_id)


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
            tmp = _enter_job_dir(stack, settings, submission_id)
            status = _claim_and_judge(sf, settings, submission_id, tmp, reclaim=lock.exclusive)
    if status == SCORED:  # after the lock: the bootstrap holds up no other judge
        warm_analysis(engine, submission_id)
    return status


def _enter_job_dir(
    stack: contextlib.ExitStack, settings: Settings, submission_id: int
) -> Path | None:
    """The job's folder (:func:`app.jobs.locks.job_dir`), or None when the disk is full."""
    try:
        return stack.enter_context(job_dir(settings.data_dir, submission_id))
    except OSError as e:
        if e.errno not in FULL_ERRNOS:
            raise
        log.error("submission %d: no room for its job folder: %s", submission_id, e)
        return None


def _claim_and_judge(
    sf: sessionmaker[Session],
    settings: Settings,
    submission_id: int,
    tmp: Path | None,
    *,
    reclaim: bool,
) -> str:
    taken = claims.claim(sf, submission_id, reclaim=reclaim)
    if taken is None:
        log.info("submission %d: not queued (already claimed or finished); skipped", submission_id)
        return SKIPPED
    if isinstance(taken, GaveUp):
        return FAILED
    if tmp is None:
        full = Verdict(status=FAILED, errors=[platform_error(storage_full_message())])
        return claims.store(sf, submission_id, taken.attempt, full)
    return _judge(sf, settings, taken, tmp)


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
