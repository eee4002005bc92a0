"""Public entry points of the scorer, shared by the CLI and the service.

    gt = load_ground_truth(task, path, protocol=..., limits=...)
    doc = score_submission(task, gt, predictions_path, protocol=..., workers=2,
                           progress=lambda done, total: ...)
    metrics = aggregate(task, doc["cases"], protocol)

``score_submission`` raises :class:`evaluator.errors.SubmissionRejected` listing every
problem when the submission is invalid; it never turns an error into a score.
``dry_run=True`` runs every validation (names, headers, geometry, labels, tables)
and returns ``{"status": "valid", ...}`` without computing metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from evaluator.errors import ArchiveError, SubmissionRejected
from evaluator.io.archive import detect_archive, read_tree
from evaluator.protocol import HECKTOR2025, Limits, Protocol
from evaluator.results import sha256_path

Progress = Callable[[int, int], None]
TASKS = (1, 2, 3)


def load_ground_truth(
    task: int,
    path: Path,
    *,
    protocol: Protocol = HECKTOR2025,
    limits: Limits | None = None,
    cache_dir: Path | None = None,
) -> Any:
    """Read and validate the ground truth of one task (SPEC section 1).

    For Task 1, ``cache_dir`` receives the prepared form (each case's foreground crop),
    so that scoring a submission decodes only the predictions.
    Raises :class:`evaluator.errors.GroundTruthError` listing every problem.
    """
    limits = limits or Limits()
    path = Path(path)
    if task == 1:
        from evaluator.io.ground_truth import read_task1_ground_truth

        return read_task1_ground_truth(path, protocol=protocol, limits=limits, cache_dir=cache_dir)
    if task == 2:
        from evaluator.io.clinical import read_task2_ground_truth

        return read_task2_ground_truth(path, protocol=protocol)
    if task == 3:
        from evaluator.io.clinical import read_task3_ground_truth

        return read_task3_ground_truth(path, protocol=protocol)
    raise ValueError(f"task must be 1, 2 or 3, not {task!r}")


def score_submission(
    task: int,
    ground_truth: Any,
    predictions: Path,
    *,
    protocol: Protocol = HECKTOR2025,
    limits: Limits | None = None,
    workers: int = 1,
    progress: Progress | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Validate and score one submission (a folder, an archive, or for Task 2/3 a table file)."""
    limits = limits or Limits()
    predictions = Path(predictions)
    if not predictions.exists():
        raise SubmissionRejected(
            [ArchiveError(predictions.name, "the predictions path does not exist")]
        )
    submission_sha256 = sha256_path(predictions)
    if task == 1:
        from evaluator.task1 import score_task1

        # a folder or an archive, read in place: nothing is extracted
        return score_task1(
            ground_truth,
            predictions,
            protocol=protocol,
            limits=limits,
            workers=workers,
            progress=progress,
            dry_run=dry_run,
            submission_sha256=submission_sha256,
        )
    if task in (2, 3):
        from evaluator.io.tables import table_bytes_limit, wanted_member
        from evaluator.tabular import score_table_task

        root: Any = predictions
        if not predictions.is_dir() and detect_archive(predictions) is not None:
            n_rows = len(ground_truth.ids) + len(ground_truth.unknown_ids)
            root = read_tree(
                predictions,
                limits=limits,
                want=wanted_member,
                cap=table_bytes_limit(n_rows, limits),
            )
        return score_table_task(
            task,
            ground_truth,
            root,
            protocol=protocol,
            limits=limits,
            progress=progress,
            dry_run=dry_run,
            submission_sha256=submission_sha256,
        )
    raise ValueError(f"task must be 1, 2 or 3, not {task!r}")


def aggregate(
    task: int, cases: Sequence[Mapping[str, Any]], protocol: Protocol = HECKTOR2025
) -> dict[str, Any]:
    """Task metrics from per-case records (the ``cases`` of a result document).

    Used to re-aggregate stored records (bootstrap, per-centre tables) without
    reading any image again.
    """
    if task == 1:
        from evaluator.segmentation import aggregate_task1

        return aggregate_task1(cases, protocol=protocol)
    if task == 2:
        from evaluator.survival import aggregate_task2

        return aggregate_task2(cases, protocol=protocol)
    if task == 3:
        from evaluator.classification import aggregate_task3

        return aggregate_task3(cases, protocol=protocol)
    raise ValueError(f"task must be 1, 2 or 3, not {task!r}")
