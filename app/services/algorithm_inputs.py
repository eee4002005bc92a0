"""An algorithm phase's hidden inputs: every ground-truth case's CT, PET and clinical
record, converted into the per-job ``/input`` form (:mod:`evaluator.gc.inputs`) and
kept beside the ground truth, where no team-facing route reads.

The organizer's folder is read here and never again; the converted store is
``ground_truth_dir / phase-<id>-inputs-<random>``, recorded on the phase
(``inputs_dir`` relative to the data dir, ``inputs_sha256``, ``n_inputs``). A failed
import leaves nothing behind and the phase unchanged.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import KIND_PREDICTIONS, GroundTruthCase, Phase, PhaseTask
from app.errors import Unprocessable, problem
from app.services.ground_truth import server_folder
from app.settings import Settings
from app.storage import absolute, fsync_dir, rel

log = logging.getLogger(__name__)


def ground_truth_case_ids(session: Session, phase: Phase) -> list[str]:
    """Every PatientID of the phase's ground truth, over all its tasks, sorted."""
    ids = session.scalars(
        select(GroundTruthCase.patient_id)
        .join(PhaseTask, GroundTruthCase.phase_task_id == PhaseTask.id)
        .where(PhaseTask.phase_id == phase.id)
        .distinct()
    )
    return sorted(ids)


def _resolved(source: Path) -> Path:
    return server_folder(source, "inputs folder", "/ground-truth/<phase>/inputs")


def _problems(messages: list[str]) -> list[dict[str, str]]:
    """The converter's problems as problem records, the case named when a message
    starts with it (``"CHUM-001: missing ..."``)."""
    out = []
    for m in messages:
        head, sep, _rest = m.partition(": ")
        case = head if sep and " " not in head and not head.startswith("'") else ""
        out.append(problem(m, case=case, kind="inputs"))
    return out


def import_inputs(session: Session, settings: Settings, phase: Phase, source: Path) -> Path:
    """Convert the inputs of every ground-truth case of ``phase`` from ``source`` and
    record them on the phase; returns the new store. Raises :class:`Unprocessable`
    listing every problem of every case (a case without inputs among them)."""
    from evaluator.gc.inputs import InputsError, convert_inputs

    root = _resolved(source)
    ids = ground_truth_case_ids(session, phase)
    if not ids:
        raise Unprocessable(
            f"phase {phase.name!r} has no ground-truth case to take inputs for",
            [problem("import the ground truth first", kind="inputs")],
        )
    dest = settings.ground_truth_dir / f"phase-{phase.id}-inputs-{uuid.uuid4().hex[:12]}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        try:
            index = convert_inputs(root, dest, ids)
        except InputsError as exc:
            raise Unprocessable(
                f"the algorithm inputs of phase {phase.name!r} are invalid: "
                f"{len(exc.problems)} problem(s)",
                _problems(exc.problems),
            ) from None
        previous = phase.inputs_dir
        phase.inputs_dir = rel(settings, dest)
        phase.inputs_sha256 = index.sha256
        phase.n_inputs = len(index)
        session.flush()
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    fsync_dir(dest)
    log.info(
        "phase %s: imported the inputs of %d case(s) into %s (replacing %s)",
        phase.name,
        len(index),
        dest,
        previous or "none",
    )
    return dest


def missing_inputs(session: Session, settings: Settings, phase: Phase) -> list[str]:
    """The ground-truth cases of ``phase`` its recorded inputs lack (all of them when it
    has none), read from the store's index."""
    from evaluator.gc.inputs import InputsError, load_input_index

    ids = ground_truth_case_ids(session, phase)
    if phase.inputs_dir is None:
        return ids
    try:
        index = load_input_index(absolute(settings, phase.inputs_dir))
    except InputsError:
        return ids
    return [pid for pid in ids if pid not in index.cases]


def check_inputs_cover(session: Session, settings: Settings, phase: Phase) -> None:
    """:class:`Unprocessable` naming each ground-truth case without inputs, when
    ``phase`` judges algorithms."""
    if phase.kind == KIND_PREDICTIONS:
        return
    missing = missing_inputs(session, settings, phase)
    if missing:
        raise Unprocessable(
            f"phase {phase.name!r} judges algorithms and {len(missing)} case(s) of its "
            "ground truth have no inputs; import inputs covering every case first (POST "
            f".../phases/{phase.name}/inputs, or admin phase inputs)",
            [problem("no algorithm inputs for this case", case=p, kind="inputs") for p in missing],
        )
