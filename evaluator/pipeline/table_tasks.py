"""Scoring of the table tasks: Task 2 (C-index) and Task 3 (HPV status, or T and N
staging under HECKTOR 2026).

``score_table_task`` validates the whole submission first (every problem reported at
once as :class:`SubmissionRejected`), then builds one record per case in
ground-truth order and computes the metrics from those records with the same
``aggregate_task2`` / ``aggregate_task3`` that re-aggregation of stored records uses,
so a stored result can always be recomputed exactly.
"""

from __future__ import annotations

from collections.abc import Callable

from evaluator.io.table_staging import StagePrediction, read_stage_predictions
from evaluator.io.table_text import AnyPath
from evaluator.io.table_truth import (
    ClassificationGroundTruth,
    StagingGroundTruth,
    SurvivalGroundTruth,
    TableGroundTruth,
)
from evaluator.io.tables import read_predictions
from evaluator.metrics.aggregate import aggregate
from evaluator.metrics.orientation import orientation_warnings
from evaluator.pipeline.result import (
    CaseRecord,
    ResultDocument,
    Task2Case,
    Task3Case,
    Task3StagingCase,
    ValidDocument,
    build_result,
)
from evaluator.protocol import HECKTOR2025, Hecktor2026Protocol, Limits, Protocol

__all__ = ["score_table_task", "staging_cases", "task2_cases", "task3_cases"]


def task2_cases(gt: SurvivalGroundTruth, predictions: dict[str, float]) -> list[Task2Case]:
    """Per-case records of Task 2, in ground-truth order (plain JSON types)."""
    return [
        {
            "patient_id": pid,
            "center": center,
            "prediction": float(predictions[pid]),
            "time": float(time),
            "event": int(event),
        }
        for pid, center, time, event in zip(gt.ids, gt.centers, gt.times, gt.events, strict=True)
    ]


def task3_cases(gt: ClassificationGroundTruth, predictions: dict[str, float]) -> list[Task3Case]:
    """Per-case records of Task 3, in ground-truth order (plain JSON types)."""
    return [
        {
            "patient_id": pid,
            "center": center,
            "prediction": float(predictions[pid]),
            "label": int(label),
        }
        for pid, center, label in zip(gt.ids, gt.centers, gt.labels, strict=True)
    ]


def staging_cases(
    gt: StagingGroundTruth, predictions: dict[str, StagePrediction]
) -> list[Task3StagingCase]:
    """Per-case records of the staging task, in ground-truth order."""
    return [
        {
            "patient_id": pid,
            "center": center,
            "t_stage": t,
            "n_stage": n,
            "t_prediction": predictions[pid].t_stage,
            "n_prediction": predictions[pid].n_stage,
        }
        for pid, center, t, n in zip(gt.ids, gt.centers, gt.t_stages, gt.n_stages, strict=True)
    ]


def _cases(
    ground_truth: TableGroundTruth,
    root: AnyPath,
    task: int,
    protocol: Protocol,
    limits: Limits,
) -> list[Task2Case] | list[Task3Case] | list[Task3StagingCase]:
    """The submission read and validated against the ground truth, as case records
    (raises :class:`SubmissionRejected` listing every problem)."""
    if isinstance(ground_truth, StagingGroundTruth):
        if not isinstance(protocol, Hecktor2026Protocol):
            raise TypeError(f"staging needs the switches of hecktor2026, not {protocol.name!r}")
        stages = read_stage_predictions(
            root,
            protocol=protocol,
            case_ids=ground_truth.ids,
            ignored_ids=ground_truth.unknown_ids,
            limits=limits,
        )
        return staging_cases(ground_truth, stages)
    reading = protocol.result_notes(task).get("prediction")
    predictions = read_predictions(
        root,
        task=task,
        case_ids=ground_truth.ids,
        ignored_ids=ground_truth.unknown_ids,
        ignore_extra_cases=protocol.ignore_extra_cases,
        limits=limits,
        expected=f"a finite number ({reading})" if reading else None,
    )
    if isinstance(ground_truth, SurvivalGroundTruth):
        return task2_cases(ground_truth, predictions)
    return task3_cases(ground_truth, predictions)


def score_table_task(
    task: int,
    ground_truth: TableGroundTruth,
    root: AnyPath,
    *,
    protocol: Protocol = HECKTOR2025,
    limits: Limits | None = None,
    progress: Callable[[int, int], None] | None = None,
    dry_run: bool = False,
    submission_sha256: str = "",
) -> ResultDocument | ValidDocument:
    """Validate and score a Task 2/3 submission.

    ``root`` is a folder (an extracted archive holding one table file or per-case
    folders) or a table file (.csv/.json) itself.
    """
    expected_types: dict[int, tuple[type, ...]] = {
        2: (SurvivalGroundTruth,),
        3: (ClassificationGroundTruth, StagingGroundTruth),
    }
    expected_type = expected_types.get(task)
    if expected_type is None:
        raise ValueError(f"score_table_task scores tasks 2 and 3, not {task!r}")
    if not isinstance(ground_truth, expected_type):
        raise TypeError(
            f"Task {task} needs a {' or '.join(t.__name__ for t in expected_type)}, "
            f"got {type(ground_truth).__name__}"
        )
    limits = limits or Limits()
    cases = _cases(ground_truth, root, task, protocol, limits)
    n = len(ground_truth.ids)
    records: list[CaseRecord] = list(cases)
    # cheap (one matrix product per resample batch): a dry run warns as a scored run does
    warnings = orientation_warnings(task, records, protocol)
    if dry_run:
        if progress is not None:
            progress(n, n)
        valid: ValidDocument = {"status": "valid", "task": task, "n_cases": n}
        if warnings:
            valid["warnings"] = warnings
        return valid

    metrics = aggregate(task, records, protocol)
    if progress is not None:
        progress(n, n)
    return build_result(
        task=task,
        protocol=protocol,
        ground_truth_sha256=ground_truth.sha256,
        submission_sha256=submission_sha256,
        metrics=metrics,
        cases=records,
        warnings=warnings,
    )
