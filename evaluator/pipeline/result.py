"""The result document of docs/scoring.md section 5, shared by the CLI and the API, and the
per-case records it carries (one TypedDict per task)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Literal, NotRequired, TypedDict

from evaluator import EVALUATOR_VERSION
from evaluator.metrics.orientation import ResultWarning
from evaluator.protocol import Protocol, ProtocolSummary

__all__ = [
    "CaseRecord",
    "ResultDocument",
    "ResultWarning",
    "Task1Case",
    "Task2Case",
    "Task3Case",
    "Task3StagingCase",
    "ValidDocument",
    "build_result",
    "cases_csv",
]


class Task1Case(TypedDict):
    """One Task 1 case: its GTVp DSC and the sufficient statistics of
    :class:`evaluator.metrics.segmentation.CaseStats`."""

    patient_id: str
    center: str
    gtvp_dsc: float | None  # None: both sides empty and the protocol excludes the case
    gtvp_intersection: int
    gtvp_pred_voxels: int
    gtvp_gt_voxels: int
    gtvn_intersection: int
    gtvn_pred_voxels: int
    gtvn_gt_voxels: int
    gtvn_tp: int
    gtvn_fp: int
    gtvn_fn: int
    gtvn_pred_lesions: int
    voxel_volume_mm3: float


class Task2Case(TypedDict):
    patient_id: str
    center: str
    prediction: float  # risk score: higher means an earlier recurrence
    time: float
    event: int  # 1 event, 0 censored


class Task3Case(TypedDict):
    patient_id: str
    center: str
    prediction: float  # probability of HPV positive
    label: int  # 1 positive, 0 negative


class Task3StagingCase(TypedDict):
    """One case of the staging task (HECKTOR 2026 Task 3): true and predicted stages."""

    patient_id: str
    center: str
    t_stage: str
    n_stage: str
    t_prediction: str
    n_prediction: str


CaseRecord = Task1Case | Task2Case | Task3Case | Task3StagingCase


class ResultDocument(TypedDict):
    """A scored submission."""

    status: Literal["scored"]
    task: int
    protocol: ProtocolSummary
    evaluator_version: str
    ground_truth_sha256: str
    submission_sha256: str
    metrics: dict[str, float]
    cases: list[CaseRecord]
    # how the predictions were read, when the rules allow more than one reading
    # (HECKTOR 2026 Task 2: rfs_meaning), and the files of a Task 1 submission skipped as
    # no image (ignored_files); absent when there is nothing to say
    notes: NotRequired[dict[str, str]]
    # what the participant should know about the predictions, the score unchanged
    # (a C-index or AUC far below 0.5: evaluator.metrics.orientation); absent when none
    warnings: NotRequired[list[ResultWarning]]


class ValidDocument(TypedDict):
    """A submission that passed every validation of a dry run (no leaderboard metric
    computed; Tasks 2/3 are checked for inverted predictions, as a scored run is)."""

    status: Literal["valid"]
    task: int
    n_cases: int
    notes: NotRequired[dict[str, str]]
    warnings: NotRequired[list[ResultWarning]]


def build_result(
    *,
    task: int,
    protocol: Protocol,
    ground_truth_sha256: str,
    submission_sha256: str,
    metrics: Mapping[str, float],
    cases: Sequence[CaseRecord],
    warnings: Sequence[ResultWarning] = (),
    notes: Mapping[str, str] | None = None,
) -> ResultDocument:
    doc: ResultDocument = {
        "status": "scored",
        "task": task,
        "protocol": protocol.summary(),
        "evaluator_version": EVALUATOR_VERSION,
        "ground_truth_sha256": ground_truth_sha256,
        "submission_sha256": submission_sha256,
        "metrics": dict(metrics),
        "cases": list(cases),
    }
    all_notes = {**protocol.result_notes(task), **(notes or {})}
    if all_notes:
        doc["notes"] = all_notes
    if warnings:
        doc["warnings"] = list(warnings)
    return doc


def _cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def cases_csv(cases: Sequence[Mapping[str, object]]) -> str:
    """Per-case records as CSV text (columns in first-seen order; floats at full precision)."""
    columns: list[str] = []
    for c in cases:
        for k in c:
            if k not in columns:
                columns.append(k)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns)
    for c in cases:
        w.writerow([_cell(c.get(k)) for k in columns])
    return out.getvalue()
