"""Public entry points of the scorer, shared by the CLI and the service.

    prepared = prepare_ground_truth(task, organizer_folder, dest, protocol=...)
    gt = open_ground_truth(task, dest, protocol=...)      # or load_ground_truth(task, path)
    doc = score_submission(task, gt, predictions_path, protocol=..., workers=2,
                           progress=lambda done, total: ...)

``score_submission`` raises :class:`evaluator.errors.SubmissionRejected` listing every
problem when the submission is invalid; it never turns an error into a score.
``dry_run=True`` runs every validation (names, headers, geometry, labels, tables)
and returns ``{"status": "valid", ...}`` without computing metrics. The metrics of
stored per-case records come from :func:`evaluator.metrics.aggregate.aggregate`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evaluator.errors import ArchiveError, GroundTruthChanged, SubmissionRejected
from evaluator.io.hashing import sha256_path
from evaluator.io.prepared import (
    MANIFEST,
    load_prepared_task1,
    prepare_task1,
    prepared_path,
    read_and_prepare_task1,
)
from evaluator.io.sniff import detect_archive
from evaluator.io.table_truth import TableGroundTruth, read_table_ground_truth
from evaluator.io.tables import table_bytes_limit, wanted_member
from evaluator.io.task1_truth import Task1GroundTruth, read_task1_ground_truth
from evaluator.io.tree import TreePath, read_tree
from evaluator.pipeline.result import ResultDocument, ValidDocument
from evaluator.pipeline.table_tasks import score_table_task
from evaluator.pipeline.task1 import score_task1
from evaluator.protocol import HECKTOR2025, Limits, Protocol

__all__ = [
    "GroundTruth",
    "PreparedCase",
    "PreparedGroundTruth",
    "load_ground_truth",
    "open_ground_truth",
    "prepare_ground_truth",
    "score_submission",
]

Progress = Callable[[int, int], None]
TASKS = (1, 2, 3)
GroundTruth = Task1GroundTruth | TableGroundTruth


def _check_task(task: int) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be 1, 2 or 3, not {task!r}")


def load_ground_truth(
    task: int,
    path: Path,
    *,
    protocol: Protocol = HECKTOR2025,
    limits: Limits | None = None,
    cache_dir: Path | None = None,
    shared_cache: Path | None = None,
) -> GroundTruth:
    """Read and validate the ground truth of one task (docs/scoring.md section 1).

    For Task 1, ``cache_dir`` receives the prepared form (each case's foreground crop),
    so that scoring a submission decodes only the predictions. ``shared_cache`` (a
    folder such as :func:`evaluator.io.gt_cache.user_cache_dir`) keeps that prepared
    form across runs, under the ground truth's hash: a later run with the same label
    files decodes none of them.
    Raises :class:`evaluator.errors.GroundTruthError` listing every problem.
    """
    _check_task(task)
    limits = limits or Limits()
    path = Path(path)
    if task == 1 and shared_cache is not None and cache_dir is None:
        from evaluator.io.gt_cache import cached_task1_ground_truth

        return cached_task1_ground_truth(path, shared_cache, limits=limits)
    if task == 1 and cache_dir is not None:
        return read_and_prepare_task1(path, cache_dir, limits=limits)
    if task == 1:
        return read_task1_ground_truth(path, protocol=protocol, limits=limits)
    return read_table_ground_truth(task, path, protocol=protocol)


# --- ground truth of a phase: prepared once, opened by every judge ---------------------


@dataclass(frozen=True, kw_only=True)
class PreparedCase:
    patient_id: str
    center: str
    sha256: str | None  # of the case's label file (Task 1); None for a table row
    file: str  # the file holding the case, relative to the destination folder


@dataclass(frozen=True, kw_only=True)
class PreparedGroundTruth:
    """What :func:`prepare_ground_truth` wrote, and the ground truth it read."""

    task: int
    sha256: str
    n_cases: int
    cases: tuple[PreparedCase, ...]
    ground_truth: GroundTruth


def _copy_file(source: Path, dest: Path) -> None:
    """``source`` copied to ``dest`` (written to a temporary name, synced, renamed)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    with open(source, "rb") as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(dest)


def _prepare_table(task: int, source: Path, dest: Path, protocol: Protocol) -> TableGroundTruth:
    """Validate the Task 2/3 table under ``source``, copy it into ``dest`` and read the
    copy, which must hash as the source did."""
    original = read_table_ground_truth(task, source, protocol=protocol)
    _copy_file(original.source, dest / original.source.name)
    copy = read_table_ground_truth(task, dest / original.source.name, protocol=protocol)
    if copy.sha256 != original.sha256:
        raise GroundTruthChanged(copy_sha256=copy.sha256, source_sha256=original.sha256)
    return copy


def _prepared_cases(gt: GroundTruth, dest: Path) -> tuple[PreparedCase, ...]:
    if isinstance(gt, Task1GroundTruth):
        return tuple(
            PreparedCase(
                patient_id=pid,
                center=c.center,
                sha256=c.sha256,
                file=c.path.relative_to(dest).as_posix(),
            )
            for pid, c in gt.cases.items()
        )
    return tuple(
        PreparedCase(patient_id=pid, center=center, sha256=None, file=gt.source.name)
        for pid, center in zip(gt.ids, gt.centers, strict=True)
    )


def prepare_ground_truth(
    task: int,
    source: Path,
    dest: Path,
    *,
    protocol: Protocol = HECKTOR2025,
    limits: Limits | None = None,
) -> PreparedGroundTruth:
    """Validate the organizer's ground truth of ``task`` (its folder or, Task 2/3, its
    table), copy its label files or table into ``dest`` and, for Task 1, write the
    prepared form that :func:`open_ground_truth` reads. Each Task 1 label file is read
    once: hashed, copied and decoded in one pass.

    Raises :class:`evaluator.errors.GroundTruthError` listing every problem, and
    :class:`evaluator.errors.GroundTruthChanged` when the source changed while it was
    read. What was written to ``dest`` before an error is left for the caller to remove.
    """
    _check_task(task)
    source, dest = Path(source), Path(dest)
    gt: GroundTruth
    if task == 1:
        gt = prepare_task1(source, dest, limits=limits or Limits())
    else:
        gt = _prepare_table(task, source, dest, protocol)
    cases = _prepared_cases(gt, dest)
    return PreparedGroundTruth(
        task=task, sha256=gt.sha256, n_cases=len(cases), cases=cases, ground_truth=gt
    )


def open_ground_truth(
    task: int, dest: Path, *, protocol: Protocol = HECKTOR2025, limits: Limits | None = None
) -> GroundTruth:
    """The ground truth :func:`prepare_ground_truth` wrote to ``dest``: for Task 1 its
    prepared form when there is one (no image decoded; each crop is checked against its
    hash when it is used), else the copy read as :func:`load_ground_truth` reads it."""
    dest = Path(dest)
    prepared = prepared_path(dest)
    if task == 1 and (prepared / MANIFEST).is_file():
        return load_prepared_task1(prepared)
    return load_ground_truth(task, dest, protocol=protocol, limits=limits)


# --- scoring ----------------------------------------------------------------------------


def _table_root(gt: TableGroundTruth, predictions: Path, limits: Limits) -> Path | TreePath:
    """A Task 2/3 submission as the table reader takes it: an archive's table members
    read into memory, else the folder or file itself."""
    if predictions.is_dir() or detect_archive(predictions) is None:
        return predictions
    n_rows = len(gt.ids) + len(gt.unknown_ids)
    return read_tree(
        predictions, limits=limits, want=wanted_member, cap=table_bytes_limit(n_rows, limits)
    )


def score_submission(
    task: int,
    ground_truth: GroundTruth,
    predictions: Path,
    *,
    protocol: Protocol = HECKTOR2025,
    limits: Limits | None = None,
    workers: int = 1,
    progress: Progress | None = None,
    dry_run: bool = False,
) -> ResultDocument | ValidDocument:
    """Validate and score one submission (a folder, an archive, or for Task 2/3 a table file)."""
    _check_task(task)
    limits = limits or Limits()
    predictions = Path(predictions)
    if not predictions.exists():
        raise SubmissionRejected(
            [ArchiveError(predictions.name, "the predictions path does not exist")]
        )
    submission_sha256 = sha256_path(predictions)
    if task == 1:
        if not isinstance(ground_truth, Task1GroundTruth):
            raise TypeError(f"Task 1 needs a Task1GroundTruth, got {type(ground_truth).__name__}")
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
    if isinstance(ground_truth, Task1GroundTruth):
        raise TypeError(f"Task {task} needs a table ground truth, got a Task1GroundTruth")
    return score_table_task(
        task,
        ground_truth,
        _table_root(ground_truth, predictions, limits),
        protocol=protocol,
        limits=limits,
        progress=progress,
        dry_run=dry_run,
        submission_sha256=submission_sha256,
    )
