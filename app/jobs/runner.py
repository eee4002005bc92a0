"""The judging job: ``run_job(submission_id, settings_dict)``.

Module-level and picklable, so any dispatcher can run it: a process of the local pool,
a Celery worker, or a plain call in a test. It takes only the submission id (and the
settings to find the database and data dir), loads everything else, and is safe to run
twice:

- it claims the submission with a conditional update ``queued -> running`` (also
  bumping ``attempts``); if that changes no row, someone else has it and it returns;
- it writes progress, and at the end the result plus the per-case rows, only while
  the row is still ``running`` with its own attempt number, all in one transaction.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import FAILED, QUEUED, RUNNING, SCORED, VALID, PhaseTask, Submission, utcnow
from app.db.session import get_engine, session_factory, session_scope
from app.services import absolute, delete_results, replace_result
from app.settings import Settings

log = logging.getLogger(__name__)

CLAIMED = "claimed"
SKIPPED = "skipped"
SUPERSEDED = "superseded"

_GT_CACHE: dict[tuple[str, int, str, str], Any] = {}
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
    """RLIMIT_AS for the duration of the job, only inside a worker process."""
    if megabytes <= 0 or multiprocessing.parent_process() is None:
        yield
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    want = megabytes << 20
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    resource.setrlimit(resource.RLIMIT_AS, (want, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _error(kind: str, message: str, case: str = "") -> dict[str, str]:
    return {"case": case, "kind": kind, "message": message}


def _load_ground_truth(settings: Settings, pt: dict[str, Any]) -> Any:
    """The phase task's ground truth from its copy in the data dir, checked against its hash."""
    from app.services import prepared_dir
    from evaluator.errors import GroundTruthError
    from evaluator.io.ground_truth import MANIFEST, load_prepared_task1
    from evaluator.protocol import Protocol
    from evaluator.scoring import load_ground_truth

    key = (settings.db_url, pt["id"], pt["gt_sha256"], pt["protocol_sha256"])
    gt = _GT_CACHE.get(key)
    if gt is not None:
        return gt
    protocol = Protocol.from_json(pt["protocol_json"])
    gt_dir = absolute(settings, pt["gt_dir"])
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


def _claim(sf: sessionmaker[Session], submission_id: int) -> dict[str, Any] | None:
    with session_scope(sf) as s:
        res = s.execute(
            update(Submission)
            .where(Submission.id == submission_id, Submission.status == QUEUED)
            .values(
                status=RUNNING,
                started_at=utcnow(),
                finished_at=None,
                attempts=Submission.attempts + 1,
                progress_done=0,
                progress_total=0,
            )
        )
        if res.rowcount != 1:
            return None
        sub = s.get(Submission, submission_id)
        assert sub is not None
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


def _mine(submission_id: int, attempt: int) -> Any:
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
                    .where(_mine(self.sid, self.attempt))
                    .values(progress_done=int(done), progress_total=int(total))
                )
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
        res = s.execute(update(Submission).where(_mine(submission_id, attempt)).values(**values))
        if res.rowcount != 1:
            s.rollback()
            return False
        if doc is not None:
            replace_result(s, submission_id, doc)
        else:
            delete_results(s, submission_id)
    return True


def _fail_unclaimable(
    sf: sessionmaker[Session], submission_id: int, attempt: int, msg: str
) -> None:
    _finish(sf, submission_id, attempt, status=FAILED, errors=[_error("internal", msg)])


def run_job(submission_id: int, settings_dict: dict[str, Any]) -> str:
    """Judge one submission. Returns ``scored``, ``valid``, ``failed``, ``skipped`` or
    ``superseded``; every failure is stored on the row, never raised."""
    settings = Settings.from_dict(settings_dict)
    sf = session_factory(get_engine(settings.db_url))
    claim = _claim(sf, submission_id)
    if claim is None:
        log.info("submission %d: not queued (already claimed or finished); skipped", submission_id)
        return SKIPPED
    attempt = claim["attempt"]
    pt = claim["pt"]
    if pt is None:
        _fail_unclaimable(sf, submission_id, attempt, "the phase has no ground truth for this task")
        return FAILED

    from evaluator.errors import GroundTruthError, ScoringError, SubmissionRejected
    from evaluator.protocol import Limits, Protocol
    from evaluator.scoring import score_submission

    started = time.monotonic()
    progress = _Progress(sf, submission_id, attempt, settings.progress_interval)
    status, doc, errors = FAILED, None, None
    try:
        with _time_limit(settings.job_timeout_seconds), _memory_limit(settings.job_memory_mb):
            gt = _load_ground_truth(settings, pt)
            progress(0, len(gt.case_ids))
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
        errors = [
            _error(
                "limit",
                f"scoring took longer than the limit of {settings.job_timeout_seconds} s and was "
                "stopped; check that the archive holds only the expected predictions",
            )
        ]
    except MemoryError:
        errors = [
            _error("limit", "scoring ran out of memory; check the image sizes of the predictions")
        ]
    except GroundTruthError as e:
        log.error("submission %d: ground truth unusable: %s", submission_id, e)
        errors = [
            _error(
                "internal",
                "the ground truth of this phase could not be loaded; the organizers have been "
                f"notified (reference: submission {submission_id})",
            )
        ]
    except ScoringError as e:
        errors = [_error("scoring", str(e))]
    except Exception:
        log.exception("submission %d: internal error while scoring", submission_id)
        errors = [
            _error(
                "internal",
                "internal error while scoring; the organizers have been notified "
                f"(reference: submission {submission_id})",
            )
        ]
    if status != FAILED:
        doc = dict(doc or {})
        doc.setdefault("status", status)
    written = _finish(sf, submission_id, attempt, status=status, doc=doc, errors=errors)
    if not written:
        log.warning(
            "submission %d: attempt %d was superseded; result dropped", submission_id, attempt
        )
        return SUPERSEDED
    log.info(
        "submission %d: %s in %.1f s (attempt %d)",
        submission_id,
        status,
        time.monotonic() - started,
        attempt,
    )
    return status


def warm_up(log_level: str = "info") -> None:
    """Pool initializer: configure logging and import the scorer ahead of the first job."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=getattr(logging, log_level.upper(), logging.INFO),
            format="%(asctime)s %(levelname)s [judge %(process)d] %(name)s: %(message)s",
        )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    for mod in ("evaluator.scoring", "evaluator.task1", "evaluator.tabular"):
        try:
            __import__(mod)
        except Exception:  # a missing module surfaces as a job error, with a message
            log.debug("could not pre-import %s", mod, exc_info=True)
