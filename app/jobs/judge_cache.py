"""What a judging process (a local pool process, a Celery worker's pool process) keeps
warm for its next jobs: the scorer, imported before the first job, and the ground
truth of the phase tasks it scores against (it judges many submissions of the same
task). Forked judging children inherit both at no cost."""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

from app.jobs.claims import GroundTruthRef
from app.jobs.isolation import watch_parent
from app.settings import Settings
from app.storage import absolute

log = logging.getLogger(__name__)

_CACHE: dict[tuple[str, str, int, str, str], Any] = {}
_CACHE_MAX = 8


def ground_truth(settings: Settings, ref: GroundTruthRef) -> Any:
    """The phase task's ground truth from its copy in the data dir, checked against the
    hash recorded at import; cached in this process."""
    from evaluator.errors import GroundTruthError

    gt_dir = absolute(settings, ref.gt_dir)
    # the folder is part of the key: a database recreated with the same ids (or a task
    # imported again) must never be served the ground truth of an older copy
    key = (settings.db_url, str(gt_dir), ref.id, ref.gt_sha256, ref.protocol_sha256)
    gt = _CACHE.get(key)
    if gt is not None:
        return gt
    gt = open_ground_truth(settings, ref)
    if gt.sha256 != ref.gt_sha256:
        raise GroundTruthError(
            [
                f"the stored ground truth of task {ref.task} hashes to {gt.sha256}, "
                f"but {ref.gt_sha256} was recorded at import; it was changed on disk"
            ]
        )
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = gt
    return gt


def open_ground_truth(settings: Settings, ref: GroundTruthRef) -> Any:
    """Read the phase task's stored ground truth: its prepared form when it has one (no
    image decoded; crops hash-checked on use), else its copy."""
    from evaluator import scoring
    from evaluator.protocol import Protocol

    protocol = Protocol.from_json(ref.protocol_json)
    return scoring.open_ground_truth(ref.task, absolute(settings, ref.gt_dir), protocol=protocol)


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


def judging_process_ready() -> int:
    """A no-op task: handing one to each judging process at start-up makes the pool
    start them all (each runs :func:`warm_up` first). Returns the process id."""
    return os.getpid()


def preload_scorer() -> None:
    """Import everything a job imports, in a judging process (local pool or Celery),
    so that each job's forked child inherits it instead of importing it again
    (lifelines alone takes about 1 s: every Task 2 job paid that)."""
    started = time.monotonic()
    for mod in (
        "evaluator.scoring",
        "evaluator.pipeline.task1",
        "evaluator.pipeline.table_tasks",
        "evaluator.metrics.survival",
        "evaluator.metrics.classification",
        "lifelines.utils",
        "sklearn.metrics",
        "app.services.board_analysis",
    ):
        try:
            __import__(mod)
        except Exception:  # a missing module surfaces as a job error, with a message
            log.debug("could not pre-import %s", mod, exc_info=True)
    log.info("judging process ready: scorer imported in %.1f s", time.monotonic() - started)
