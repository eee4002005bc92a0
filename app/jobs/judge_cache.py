"""The ground truth of the phase tasks a judging process scores against, kept in memory
for its next jobs (a local pool process or a Celery worker judges many submissions of
the same task). Forked judging children inherit what is cached here at no cost."""

from __future__ import annotations

from typing import Any

from app.jobs.claims import GroundTruthRef
from app.settings import Settings
from app.storage import absolute

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
