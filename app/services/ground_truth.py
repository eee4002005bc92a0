"""A phase task's ground truth: validated, copied into the data dir, prepared and
recorded (one :class:`~app.db.models.PhaseTask` and its case rows per task)."""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import (
    GroundTruthCase,
    Phase,
    PhaseTask,
)
from app.errors import BadRequest, Conflict, Unprocessable, problem
from app.settings import Settings
from app.storage import atomic_copy, fsync_dir, prepared_dir, rel
from evaluator.protocol import HECKTOR2025, Protocol

log = logging.getLogger(__name__)


TASK_FOLDERS = {1: "Task 1", 2: "Task 2", 3: "Task 3"}


# -- organizer: phases and ground truth -------------------------------------------------
def _protocol_of(protocol: Protocol | dict[str, Any] | None) -> Protocol:
    if protocol is None:
        return HECKTOR2025
    if isinstance(protocol, Protocol):
        return protocol
    try:
        return Protocol.from_dict(protocol)
    except (TypeError, ValueError) as e:
        raise BadRequest(f"invalid protocol: {e}") from None


def _gt_source(root: Path, task: int) -> Path:
    return root / TASK_FOLDERS[task]


def _gt_records(task: int, gt: Any) -> tuple[list[tuple[Path, Path]], list[dict[str, Any]]]:
    """Files to copy (source, path relative to the task folder) and per-case records."""
    files: list[tuple[Path, Path]] = []
    records: list[dict[str, Any]] = []
    case_ids = list(gt.case_ids)
    if task == 1:
        for pid in case_ids:
            case = gt.cases[pid]
            src = Path(case.path)
            relpath = Path(pid) / src.name
            files.append((src, relpath))
            records.append(
                {
                    "patient_id": pid,
                    "center": getattr(case, "center", None),
                    "sha256": getattr(case, "sha256", None),
                    "file": relpath.as_posix(),
                }
            )
        return files, records
    source = Path(gt.source)
    files.append((source, Path(source.name)))
    centers = getattr(gt, "centers", None)
    for i, pid in enumerate(case_ids):
        center = None
        if isinstance(centers, (tuple, list)) and len(centers) == len(case_ids):
            center = centers[i]
        elif hasattr(gt, "center_of"):
            center = gt.center_of(pid)
        records.append({"patient_id": pid, "center": center, "sha256": None, "file": source.name})
    return files, records


def import_ground_truth(
    session: Session,
    settings: Settings,
    phase: Phase,
    source_root: Path,
    tasks: Sequence[int],
    protocol: Protocol | dict[str, Any] | None = None,
) -> list[PhaseTask]:
    """Validate, copy (label files / CSVs only) and record the ground truth of ``tasks``.

    The organizer's folder is read here and never again: scoring uses the copy in the
    data dir, whose hash must equal the hash of the original.
    """
    from evaluator.errors import GroundTruthError
    from evaluator.scoring import load_ground_truth

    proto = _protocol_of(protocol)
    try:
        source_root = Path(source_root).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a NUL byte, a symlink loop
        raise BadRequest(
            f"ground-truth folder {str(source_root)!r} is not a usable path ({exc}); give "
            "the folder's path on the server, e.g. /ground-truth/<phase>"
        ) from None
    if not source_root.is_dir():
        raise BadRequest(f"ground-truth folder {str(source_root)!r} does not exist on the server")
    problems: list[dict[str, str]] = []
    loaded: dict[int, Any] = {}
    for task in tasks:
        src = _gt_source(source_root, task)
        if not src.exists():
            problems.append(
                problem(
                    f"{src} is missing (expected the folder {TASK_FOLDERS[task]!r})",
                    kind="ground_truth",
                )
            )
            continue
        try:
            loaded[task] = load_ground_truth(task, src, protocol=proto)
        except GroundTruthError as e:
            problems += [problem(f"Task {task}: {p}", kind="ground_truth") for p in e.problems]
    if problems:
        raise Unprocessable(f"the ground truth of phase {phase.name!r} is invalid", problems)

    dest_root = settings.ground_truth_dir / f"phase-{phase.id}-{uuid.uuid4().hex[:12]}"
    created: list[PhaseTask] = []
    try:
        for task, gt in loaded.items():
            files, records = _gt_records(task, gt)
            task_dir = dest_root / TASK_FOLDERS[task]
            for src, relpath in files:
                atomic_copy(src, task_dir / relpath)
            # Task 1: the copy is read once more and its prepared form written beside it
            # (foreground crops + manifest), so that judges decode only predictions
            copy = load_ground_truth(
                task,
                task_dir,
                protocol=proto,
                cache_dir=prepared_dir(task_dir) if task == 1 else None,
            )
            if copy.sha256 != gt.sha256:
                raise Conflict(
                    f"Task {task}: the copy of the ground truth hashes to {copy.sha256}, "
                    f"the original to {gt.sha256}; the folder changed while importing?"
                )
            old = session.scalars(
                select(PhaseTask).where(PhaseTask.phase_id == phase.id, PhaseTask.task == task)
            ).first()
            if old is not None:
                session.delete(old)
                session.flush()
            pt = PhaseTask(
                phase_id=phase.id,
                task=task,
                gt_dir=rel(settings, task_dir),
                gt_sha256=gt.sha256,
                protocol_json=proto.to_json(),
                protocol_sha256=proto.sha256,
                n_cases=len(records),
            )
            pt.cases = [
                GroundTruthCase(
                    patient_id=r["patient_id"],
                    center=r["center"],
                    sha256=r["sha256"],
                    file=rel(settings, task_dir / r["file"]) if r["file"] else None,
                )
                for r in records
            ]
            session.add(pt)
            created.append(pt)
        session.flush()
    except BaseException:
        shutil.rmtree(dest_root, ignore_errors=True)
        raise
    fsync_dir(dest_root)
    log.info(
        "phase %s: imported ground truth of task(s) %s into %s",
        phase.name,
        ",".join(str(t) for t in loaded),
        dest_root,
    )
    return created
