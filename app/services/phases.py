"""Phases: create (with their ground truth), change settings, list and show."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypedDict

from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session

from app.db.models import (
    KIND_PREDICTIONS,
    PHASE_KINDS,
    LeaderboardSnapshot,
    Phase,
    PhaseTask,
)
from app.errors import BadRequest, Conflict, NotFound
from app.services.algorithm_inputs import import_inputs
from app.services.ground_truth import import_ground_truth
from app.settings import Settings
from app.storage import absolute
from evaluator.protocol import Protocol

log = logging.getLogger(__name__)


TASKS = (1, 2, 3)

#: what participants are told of a result while its phase's leaderboards are frozen
FROZEN_NOTE = "the leaderboard is frozen; this result will appear when it is unfrozen"


NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# -- lookups ---------------------------------------------------------------------------
def get_phase(session: Session, name: str) -> Phase:
    phase = session.scalars(select(Phase).where(Phase.name == name)).first()
    if phase is None:
        raise NotFound(f"no phase named {name!r}")
    return phase


def get_phase_task(session: Session, phase: Phase, task: int) -> PhaseTask:
    pt = session.scalars(
        select(PhaseTask).where(PhaseTask.phase_id == phase.id, PhaseTask.task == task)
    ).first()
    if pt is None:
        tasks = ", ".join(str(t.task) for t in phase.tasks) or "none"
        raise NotFound(f"phase {phase.name!r} has no task {task} (its tasks: {tasks})")
    return pt


@functools.lru_cache(maxsize=64)
def _protocol_from_json(text: str) -> Protocol:
    return Protocol.from_json(text)


def task_protocol(pt: PhaseTask) -> Protocol:
    """The protocol a phase task is scored with (of the edition its name names)."""
    return _protocol_from_json(pt.protocol_json)


def parse_tasks(value: str | Iterable[int]) -> list[int]:
    if isinstance(value, str):
        try:
            items = [int(x) for x in value.replace(" ", "").split(",") if x]
        except ValueError:
            raise BadRequest(
                f"tasks must be a comma-separated list of 1, 2, 3, not {value!r}"
            ) from None
    else:
        items = [int(x) for x in value]
    bad = [t for t in items if t not in TASKS]
    if bad or not items:
        raise BadRequest(f"tasks must be among 1, 2, 3 (got {items})")
    return sorted(set(items))


def _check_new_phase(
    session: Session, name: str, *, selection: str, daily_limit: int | None
) -> None:
    """400 for a name or setting a new phase cannot have, 409 when the name is taken."""
    if not NAME_RE.match(name or ""):
        raise BadRequest(
            f"phase name {name!r} is not allowed: letters, digits, '_', '.', '-', at most 64"
        )
    if selection not in ("best", "latest"):
        raise BadRequest(f"selection must be 'best' or 'latest', not {selection!r}")
    if daily_limit is not None and daily_limit < 0:
        raise BadRequest("daily_limit must be >= 0")
    if session.scalars(select(Phase).where(Phase.name == name)).first() is not None:
        raise Conflict(f"a phase named {name!r} exists already")


def create_phase(
    session: Session,
    settings: Settings,
    *,
    name: str,
    ground_truth: Path,
    tasks: Sequence[int],
    title: str = "",
    hidden: bool = False,
    leaderboard_public: bool | None = None,
    daily_limit: int | None = None,
    selection: str = "best",
    is_open: bool = True,
    protocol: Protocol | dict[str, Any] | str | None = None,
    analysis_resamples: int | None = None,
    analysis_seed: int | None = None,
    case_rows: str | None = None,
    min_center_cases: int | None = None,
    dry_run_limit: int | None = None,
    dry_run_bytes: int | None = None,
    failed_limit: int | None = None,
    failed_bytes: int | None = None,
    retention_days: int | None = None,
    kind: str | None = None,
    inputs: Path | None = None,
    case_seconds: int | None = None,
    case_memory_mb: int | None = None,
    case_cpus: float | None = None,
    case_pids: int | None = None,
    case_gpu: bool | None = None,
    case_tmp_mb: int | None = None,
    case_output_mb: int | None = None,
    image_max_bytes: int | None = None,
    parallel_cases: int | None = None,
    fail_fast: bool | None = None,
) -> Phase:
    """Create a phase and import its ground truth (and, for a phase judging algorithms,
    its cases' inputs from the server-side folder ``inputs``). Settings left ``None``
    take their defaults (:data:`PHASE_SETTINGS`, :data:`ALGORITHM_SETTINGS`;
    ``daily_limit`` the server's; ``kind`` predictions)."""
    _check_new_phase(session, name, selection=selection, daily_limit=daily_limit)
    kind = check_kind(KIND_PREDICTIONS if kind is None else kind)
    if kind != KIND_PREDICTIONS and inputs is None:
        raise BadRequest(
            f"a phase of kind {kind!r} runs the teams' algorithms on each case's CT, PET "
            "and clinical record: give the server-side folder holding them (inputs: "
            "<PatientID>/<PatientID>__CT.nii.gz, __PT.nii.gz and ehr.json per case)"
        )
    limits = {
        "case_seconds": case_seconds,
        "case_memory_mb": case_memory_mb,
        "case_cpus": case_cpus,
        "case_pids": case_pids,
        "case_gpu": case_gpu,
        "case_tmp_mb": case_tmp_mb,
        "case_output_mb": case_output_mb,
        "image_max_bytes": image_max_bytes,
        "parallel_cases": parallel_cases,
        "fail_fast": fail_fast,
    }
    checked = {k: check_algorithm_setting(k, v) for k, v in limits.items() if v is not None}
    phase = Phase(
        name=name,
        title=title or name,
        hidden=hidden,
        leaderboard_public=(not hidden) if leaderboard_public is None else leaderboard_public,
        daily_limit=settings.daily_limit if daily_limit is None else daily_limit,
        selection=selection,
        is_open=is_open,
    )
    _check_analysis_settings(analysis_resamples, analysis_seed)
    if analysis_resamples is not None:
        phase.analysis_resamples = analysis_resamples
    if analysis_seed is not None:
        phase.analysis_seed = analysis_seed
    extra = {
        "case_rows": case_rows,
        "min_center_cases": min_center_cases,
        "dry_run_limit": dry_run_limit,
        "dry_run_bytes": dry_run_bytes,
        "failed_limit": failed_limit,
        "failed_bytes": failed_bytes,
        "retention_days": retention_days,
    }
    for key, value in extra.items():
        if value is not None:
            setattr(phase, key, check_phase_setting(key, value))
    phase.kind = kind
    for key, value in checked.items():
        setattr(phase, key, value)
    session.add(phase)
    session.flush()
    created = import_ground_truth(
        session, settings, phase, ground_truth, parse_tasks(tasks), protocol
    )
    if inputs is not None:
        try:
            import_inputs(session, settings, phase, inputs)
        except BaseException:
            remove_ground_truth_copies(settings, created)
            raise
    return phase


def remove_ground_truth_copies(settings: Settings, tasks: Sequence[PhaseTask]) -> None:
    """The data-dir copies of a ground truth whose phase is not created after all."""
    import shutil

    for root in {absolute(settings, pt.gt_dir).parent for pt in tasks}:
        if root.is_relative_to(settings.ground_truth_dir):
            shutil.rmtree(root, ignore_errors=True)


MAX_ANALYSIS_RESAMPLES = 20_000


MAX_ANALYSIS_SEED = 2**63 - 1


#: visibility, allowance and retention settings of a phase: name -> (upper bound, what
#: it is); ``case_rows`` takes one of :data:`app.db.models.CASE_ROWS` instead
PHASE_SETTINGS: dict[str, tuple[int, str]] = {
    "case_rows": (0, "what teams see of their own per-case rows: 'scores' or 'none'"),
    "min_center_cases": (1_000_000, "centres with fewer cases are shown to organizers only"),
    "dry_run_limit": (1_000_000, "dry runs per team, task and 24 h"),
    "dry_run_bytes": (2**63 - 1, "bytes of dry-run uploads per team, task and 24 h"),
    "failed_limit": (1_000_000, "failed submissions per team, task and 24 h"),
    "failed_bytes": (2**63 - 1, "bytes of failed uploads per team, task and 24 h"),
    "retention_days": (36_500, "days failed uploads and dry runs are kept"),
}


def check_phase_setting(key: str, value: Any) -> Any:
    """``value`` when it is valid for the phase setting ``key``, else :class:`BadRequest`
    saying what is accepted."""
    from app.db.models import CASE_ROWS

    if key == "case_rows":
        if value not in CASE_ROWS:
            raise BadRequest(
                f"case_rows must be 'scores' (teams see their own per-case scores, never "
                f"a ground-truth value) or 'none' (aggregate scores only), not {value!r}"
            )
        return value
    top, what = PHASE_SETTINGS[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{key} ({what}) must be a whole number, not {value!r}")
    if not 0 <= value <= top:
        raise BadRequest(f"{key} ({what}) must be between 0 and {top}, not {value}")
    return value


#: how and on what a phase of kind algorithm or both runs each case: name -> (type,
#: lowest, highest, what it is); booleans have no bounds
ALGORITHM_SETTINGS: dict[str, tuple[type, float, float, str]] = {
    "case_seconds": (int, 1, 86_400, "wall-clock seconds an algorithm may take per case"),
    "case_memory_mb": (int, 64, 1_048_576, "memory of a case's container in MiB, swap included"),
    "case_cpus": (float, 0.1, 256, "CPUs of a case's container"),
    "case_pids": (int, 16, 1_000_000, "processes and threads of a case's container"),
    "case_gpu": (bool, 0, 1, "whether a case's container gets a GPU"),
    "case_tmp_mb": (int, 1, 1_048_576, "size of a case's /tmp in MiB"),
    "case_output_mb": (int, 1, 1_048_576, "size of a case's /output in MiB"),
    "image_max_bytes": (int, 1 << 20, 100 << 30, "largest container image, bytes uncompressed"),
    "parallel_cases": (int, 1, 64, "cases of one submission run at once"),
    "fail_fast": (bool, 0, 1, "whether the first failed case fails the submission at once"),
}

#: the limits a participant's algorithm must meet: shown to everyone
PARTICIPANT_LIMITS = ("case_seconds", "case_memory_mb", "case_cpus", "case_gpu", "image_max_bytes")

_KINDS_TEXT = (
    "'predictions' (teams upload prediction archives and tables), 'algorithm' (teams "
    "upload an inference container run on each hidden case) or 'both'"
)


def check_kind(value: Any) -> str:
    """``value`` when it names a phase kind, else :class:`BadRequest`."""
    if value not in PHASE_KINDS:
        raise BadRequest(f"kind must be {_KINDS_TEXT}, not {value!r}")
    return str(value)


def check_algorithm_setting(key: str, value: Any) -> Any:
    """``value`` when it is valid for the algorithm setting ``key``, else
    :class:`BadRequest` saying what is accepted."""
    kind, lo, hi, what = ALGORITHM_SETTINGS[key]
    if kind is bool:
        if not isinstance(value, bool):
            raise BadRequest(f"{key} ({what}) must be true or false, not {value!r}")
        return value
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise BadRequest(f"{key} ({what}) must be a whole number, not {value!r}")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(f"{key} ({what}) must be a number, not {value!r}")
        value = float(value)
    if not lo <= value <= hi:
        shown = f"{lo:g} and {hi:g}" if kind is float else f"{int(lo)} and {int(hi)}"
        raise BadRequest(f"{key} ({what}) must be between {shown}, not {value}")
    return value


def _check_analysis_settings(n_resamples: int | None, seed: int | None) -> None:
    if n_resamples is not None and not (0 <= n_resamples <= MAX_ANALYSIS_RESAMPLES):
        raise BadRequest(
            f"analysis_resamples must be between 0 (no bootstrap) and {MAX_ANALYSIS_RESAMPLES}, "
            f"not {n_resamples}"
        )
    if seed is not None and not (0 <= seed <= MAX_ANALYSIS_SEED):
        raise BadRequest(f"analysis_seed must be between 0 and 2**63 - 1, not {seed}")


def update_phase(session: Session, name: str, **changes: Any) -> Phase:
    phase = get_phase(session, name)
    allowed = {"is_open", "hidden", "leaderboard_public", "daily_limit", "selection", "title"}
    allowed |= {"analysis_resamples", "analysis_seed", "kind", *PHASE_SETTINGS}
    allowed |= set(ALGORITHM_SETTINGS)
    _check_analysis_settings(changes.get("analysis_resamples"), changes.get("analysis_seed"))
    for key, value in changes.items():
        if value is None:
            continue
        if key not in allowed:
            raise BadRequest(f"cannot change {key!r} of a phase")
        if key in PHASE_SETTINGS:
            value = check_phase_setting(key, value)
        if key in ALGORITHM_SETTINGS:
            value = check_algorithm_setting(key, value)
        if key == "kind":
            value = check_kind(value)
            if value != KIND_PREDICTIONS and phase.inputs_dir is None:
                raise BadRequest(
                    f"phase {phase.name!r} has no case inputs: import them (POST "
                    f".../phases/{phase.name}/inputs) before making it of kind {value!r}"
                )
        if key == "selection" and value not in ("best", "latest"):
            raise BadRequest(f"selection must be 'best' or 'latest', not {value!r}")
        if key == "daily_limit" and value < 0:
            raise BadRequest("daily_limit must be >= 0")
        setattr(phase, key, value)
    return phase


class PhaseView(TypedDict):
    """What anyone may read of a phase."""

    name: str
    title: str
    is_open: bool
    hidden: bool
    leaderboard_public: bool
    daily_limit: int
    selection: str
    case_rows: str
    min_center_cases: int
    tasks: list[int]
    created_at: datetime
    frozen: bool
    frozen_at: datetime | None
    frozen_note: str | None
    kind: str
    case_seconds: int
    case_memory_mb: int
    case_cpus: float
    case_gpu: bool
    image_max_bytes: int


class TaskDetail(TypedDict):
    """A phase task's ground-truth and protocol records."""

    task: int
    n_cases: int
    ground_truth_sha256: str
    protocol_sha256: str
    protocol: dict[str, Any]
    imported_at: datetime


class PhaseDetailView(PhaseView):
    """The organizers' view of a phase: every setting and each task's records."""

    analysis_resamples: int
    analysis_seed: int
    dry_run_limit: int
    dry_run_bytes: int
    failed_limit: int
    failed_bytes: int
    retention_days: int
    case_pids: int
    case_tmp_mb: int
    case_output_mb: int
    parallel_cases: int
    fail_fast: bool
    n_inputs: int
    inputs_sha256: str | None
    task_details: list[TaskDetail]


def frozen_since(session: Session | None, phase: Phase) -> datetime | None:
    """When the phase's leaderboards were frozen (its earliest active snapshot), or None
    while they are live."""
    if session is None:
        return None
    return session.scalar(
        select(func.min(LeaderboardSnapshot.frozen_at)).where(
            LeaderboardSnapshot.phase_id == phase.id, LeaderboardSnapshot.active.is_(True)
        )
    )


def phase_public(phase: Phase) -> PhaseView:
    since = frozen_since(object_session(phase), phase)
    return {
        "name": phase.name,
        "title": phase.title,
        "is_open": phase.is_open,
        "hidden": phase.hidden,
        "leaderboard_public": phase.leaderboard_public,
        "daily_limit": phase.daily_limit,
        "selection": phase.selection,
        "case_rows": phase.case_rows,
        "min_center_cases": phase.min_center_cases,
        "tasks": [t.task for t in phase.tasks],
        "created_at": phase.created_at,
        "frozen": since is not None,
        "frozen_at": since,
        "frozen_note": FROZEN_NOTE if since is not None else None,
        "kind": phase.kind,
        "case_seconds": phase.case_seconds,
        "case_memory_mb": phase.case_memory_mb,
        "case_cpus": phase.case_cpus,
        "case_gpu": phase.case_gpu,
        "image_max_bytes": phase.image_max_bytes,
    }


def phase_detail(phase: Phase) -> PhaseDetailView:
    """Organizer view: adds every setting (:data:`PHASE_SETTINGS` and
    :data:`ALGORITHM_SETTINGS` among them), the inputs' count and hash (never their
    folder) and the ground-truth and protocol records of each task."""
    return {
        **phase_public(phase),
        "analysis_resamples": phase.analysis_resamples,
        "analysis_seed": phase.analysis_seed,
        "case_rows": phase.case_rows,
        "min_center_cases": phase.min_center_cases,
        "dry_run_limit": phase.dry_run_limit,
        "dry_run_bytes": phase.dry_run_bytes,
        "failed_limit": phase.failed_limit,
        "failed_bytes": phase.failed_bytes,
        "retention_days": phase.retention_days,
        "case_pids": phase.case_pids,
        "case_tmp_mb": phase.case_tmp_mb,
        "case_output_mb": phase.case_output_mb,
        "parallel_cases": phase.parallel_cases,
        "fail_fast": phase.fail_fast,
        "n_inputs": phase.n_inputs,
        "inputs_sha256": phase.inputs_sha256,
        "task_details": [
            {
                "task": t.task,
                "n_cases": t.n_cases,
                "ground_truth_sha256": t.gt_sha256,
                "protocol_sha256": t.protocol_sha256,
                "protocol": task_protocol(t).to_dict(),
                "imported_at": t.imported_at,
            }
            for t in phase.tasks
        ],
    }


def list_phases(session: Session) -> list[Phase]:
    return list(session.scalars(select(Phase).order_by(Phase.created_at, Phase.id)))
