"""A phase task's ground truth: validated, copied into the data dir, prepared and
recorded (one :class:`~app.db.models.PhaseTask` and its case rows per task)."""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import (
    GroundTruthCase,
    Phase,
    PhaseTask,
)
from app.errors import BadRequest, Conflict, Unprocessable, problem
from app.settings import Settings
from app.storage import fsync_dir, rel
from evaluator.protocol import HECKTOR2025, Protocol, builtin_protocol

if TYPE_CHECKING:
    from evaluator.scoring import PreparedGroundTruth

log = logging.getLogger(__name__)


TASK_FOLDERS = {1: "Task 1", 2: "Task 2", 3: "Task 3"}


# -- organizer: phases and ground truth -------------------------------------------------
def _protocol_of(protocol: Protocol | dict[str, Any] | str | None) -> Protocol:
    """The protocol given, a built-in one by its name, or one from its fields (of the
    edition its ``name`` names); hecktor2025 when none is given."""
    if protocol is None:
        return HECKTOR2025
    if isinstance(protocol, Protocol):
        return protocol
    try:
        if isinstance(protocol, str):
            return builtin_protocol(protocol)
        return Protocol.from_dict(protocol)
    except (TypeError, ValueError) as e:
        raise BadRequest(f"invalid protocol: {e}") from None


def _gt_source(root: Path, task: int) -> Path:
    return root / TASK_FOLDERS[task]


def server_folder(source: Path, what: str, example: str) -> Path:
    """``source`` resolved: an organizer's folder on the server (``what`` names it in
    messages, ``example`` shows such a path); BadRequest when it is not one."""
    try:
        root = Path(source).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a NUL byte, a symlink loop
        raise BadRequest(
            f"{what} {str(source)!r} is not a usable path ({exc}); give the folder's path "
            f"on the server, e.g. {example}"
        ) from None
    if not root.is_dir():
        raise BadRequest(f"{what} {str(root)!r} does not exist on the server")
    return root


def _resolved(source_root: Path) -> Path:
    return server_folder(source_root, "ground-truth folder", "/ground-truth/<phase>")


def _prepare(
    phase: Phase, source_root: Path, dest_root: Path, tasks: Sequence[int], proto: Protocol
) -> list[PreparedGroundTruth]:
    """Each task's ground truth validated, copied into ``dest_root`` and prepared, in one
    read of the organizer's folder; every problem of every task reported at once."""
    from evaluator.errors import GroundTruthChanged, GroundTruthError
    from evaluator.scoring import prepare_ground_truth

    problems: list[dict[str, str]] = []
    prepared: list[PreparedGroundTruth] = []
    changed: Conflict | None = None
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
            prepared.append(
                prepare_ground_truth(task, src, dest_root / TASK_FOLDERS[task], protocol=proto)
            )
        except GroundTruthError as e:
            problems += [problem(f"Task {task}: {p}", kind="ground_truth") for p in e.problems]
        except GroundTruthChanged as e:
            changed = changed or Conflict(
                f"Task {task}: the copy of the ground truth hashes to {e.copy_sha256}, "
                f"the original to {e.source_sha256}; the folder changed while importing?"
            )
    if problems:
        raise Unprocessable(f"the ground truth of phase {phase.name!r} is invalid", problems)
    if changed is not None:
        raise changed
    return prepared


def _record(
    session: Session,
    settings: Settings,
    phase: Phase,
    gt: PreparedGroundTruth,
    task_dir: Path,
    proto: Protocol,
) -> PhaseTask:
    """The phase task's row and its case rows, replacing an earlier import of the task."""
    old = session.scalars(
        select(PhaseTask).where(PhaseTask.phase_id == phase.id, PhaseTask.task == gt.task)
    ).first()
    if old is not None:
        session.delete(old)
        session.flush()
    pt = PhaseTask(
        phase_id=phase.id,
        task=gt.task,
        gt_dir=rel(settings, task_dir),
        gt_sha256=gt.sha256,
        protocol_json=proto.to_json(),
        protocol_sha256=proto.sha256,
        n_cases=gt.n_cases,
    )
    pt.cases = [
        GroundTruthCase(
            patient_id=c.patient_id,
            center=c.center,
            sha256=c.sha256,
            file=rel(settings, task_dir / c.file) if c.file else None,
        )
        for c in gt.cases
    ]
    session.add(pt)
    return pt


def import_ground_truth(
    session: Session,
    settings: Settings,
    phase: Phase,
    source_root: Path,
    tasks: Sequence[int],
    protocol: Protocol | dict[str, Any] | str | None = None,
) -> list[PhaseTask]:
    """Validate, copy (label files / CSVs only), prepare and record the ground truth of
    ``tasks``.

    The organizer's folder is read here and never again: scoring uses the copy in the
    data dir, whose hash is the hash of the original.
    """
    proto = _protocol_of(protocol)
    source_root = _resolved(source_root)
    dest_root = settings.ground_truth_dir / f"phase-{phase.id}-{uuid.uuid4().hex[:12]}"
    try:
        prepared = _prepare(phase, source_root, dest_root, tasks, proto)
        created = [
            _record(session, settings, phase, gt, dest_root / TASK_FOLDERS[gt.task], proto)
            for gt in prepared
        ]
        session.flush()
    except BaseException:
        shutil.rmtree(dest_root, ignore_errors=True)
        raise
    fsync_dir(dest_root)
    log.info(
        "phase %s: imported ground truth of task(s) %s into %s",
        phase.name,
        ",".join(str(gt.task) for gt in prepared),
        dest_root,
    )
    return created
