"""Service functions: everything the API routes and the admin CLI do, without HTTP.

Routes validate input, call one of these and map :class:`ServiceError` to a status
code. Functions taking a ``Session`` never commit unless their name says so; the
caller owns the unit of work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, joinedload

from app.db.models import (
    FAILED,
    QUEUED,
    RECEIVED,
    RUNNING,
    SCORED,
    AnalysisCache,
    ApiToken,
    CaseResult,
    GroundTruthCase,
    Phase,
    PhaseTask,
    Result,
    Submission,
    Team,
    utcnow,
)
from app.db.session import rowcount
from app.leaderboard import Entry, build_leaderboard
from app.security import ORGANIZER, TEAM, Principal, issue_token, revoke_tokens
from app.settings import Settings
from evaluator.protocol import HECKTOR2025, Protocol

log = logging.getLogger(__name__)

TASKS = (1, 2, 3)
TASK_FOLDERS = {1: "Task 1", 2: "Task 2", 3: "Task 3"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TEAM_RE = re.compile(r"^[^\x00-\x1f\x7f/\\<>]{1,64}$")
QUOTA_WINDOW = timedelta(hours=24)
COUNTED_STATES = (RECEIVED, QUEUED, RUNNING, SCORED)
_quota_lock = threading.Lock()


# -- errors ----------------------------------------------------------------------------
class ServiceError(Exception):
    status_code = 400

    def __init__(
        self,
        detail: str,
        errors: Sequence[dict[str, Any]] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors) if errors else [problem(detail)]
        self.headers = headers


class BadRequest(ServiceError):
    status_code = 400


class Unauthorized(ServiceError):
    status_code = 401

    def __init__(
        self,
        detail: str,
        errors: Sequence[dict[str, Any]] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail, errors, headers={"WWW-Authenticate": "Bearer", **(headers or {})})


class Forbidden(ServiceError):
    status_code = 403


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class TooLarge(ServiceError):
    status_code = 413


class UnsupportedType(ServiceError):
    status_code = 415


class Unprocessable(ServiceError):
    status_code = 422


class QuotaExceeded(ServiceError):
    status_code = 429


class StorageFull(ServiceError):
    """The server's disk (or database) is full: 507, retry later; the request was fine."""

    status_code = 507
    RETRY_AFTER = 300

    def __init__(self, detail: str = "server storage full, retry later") -> None:
        super().__init__(
            detail,
            [problem(detail, kind="storage")],
            headers={"Retry-After": str(self.RETRY_AFTER)},
        )


def problem(message: str, *, case: str = "", kind: str = "request") -> dict[str, str]:
    return {"case": case, "kind": kind, "message": message}


# -- file helpers ----------------------------------------------------------------------
def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy to a temporary name beside ``dst``, fsync, rename."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.part")
    try:
        with open(src, "rb") as fi, open(tmp, "wb") as fo:
            shutil.copyfileobj(fi, fo, 1 << 20)
            fo.flush()
            os.fsync(fo.fileno())
        os.replace(tmp, dst)
        fsync_dir(dst.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary name beside ``path``, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def rel(settings: Settings, path: Path) -> str:
    return path.resolve().relative_to(settings.data_dir).as_posix()


def absolute(settings: Settings, relpath: str) -> Path:
    p = (settings.data_dir / relpath).resolve()
    if not p.is_relative_to(settings.data_dir):
        raise ValueError(f"path {relpath!r} escapes the data dir")
    return p


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


def get_team(session: Session, name: str) -> Team:
    team = session.scalars(select(Team).where(Team.name == name)).first()
    if team is None:
        raise NotFound(f"no team named {name!r}")
    return team


def get_submission(session: Session, submission_id: int, principal: Principal | None) -> Submission:
    """A submission the principal may read; a team gets 404 for other teams' ones."""
    if principal is None:
        raise Unauthorized("a bearer token is required to read a submission")
    # ids beyond 64 bits exist nowhere (and overflow SQLite's integer)
    sub = (
        session.get(
            Submission,
            submission_id,
            # what every reader of a submission shows, in the same query
            options=[
                joinedload(Submission.team),
                joinedload(Submission.phase),
                joinedload(Submission.result),
            ],
        )
        if 0 < submission_id < 1 << 63
        else None
    )
    if sub is None or (not principal.is_organizer and sub.team_id != principal.team_id):
        raise NotFound(f"no submission {submission_id} for this token")
    return sub


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


# -- organizer: init, teams ------------------------------------------------------------
def init_organizer_token(session: Session) -> str:
    """Revoke earlier organizer tokens stored in the DB and issue a new one."""
    revoke_tokens(session, role=ORGANIZER)
    return issue_token(session, role=ORGANIZER)


def create_team(session: Session, name: str) -> tuple[Team, str]:
    name = name.strip()
    if not TEAM_RE.match(name):
        raise BadRequest(
            f"team name {name!r} is not allowed: 1-64 printable characters, no / \\ < >"
        )
    if session.scalars(select(Team).where(Team.name == name)).first() is not None:
        raise Conflict(f"a team named {name!r} exists already")
    team = Team(name=name)
    session.add(team)
    session.flush()
    token = issue_token(session, role=TEAM, team=team)
    return team, token


def rotate_team_token(session: Session, name: str) -> str:
    team = get_team(session, name)
    revoke_tokens(session, team=team)
    return issue_token(session, role=TEAM, team=team)


def list_teams(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Team, func.count(Submission.id))
        .outerjoin(Submission, Submission.team_id == Team.id)
        .group_by(Team.id)
        .order_by(Team.name)
    ).all()
    return [
        {"id": t.id, "name": t.name, "created_at": t.created_at, "submissions": n} for t, n in rows
    ]


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


def prepared_dir(task_dir: Path) -> Path:
    """Where the prepared form of a phase task's ground truth lives (Task 1)."""
    return task_dir.parent / f"{task_dir.name}.prepared"


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
    protocol: Protocol | dict[str, Any] | None = None,
    analysis_resamples: int | None = None,
    analysis_seed: int | None = None,
    case_rows: str | None = None,
    min_center_cases: int | None = None,
    dry_run_limit: int | None = None,
    dry_run_bytes: int | None = None,
    failed_limit: int | None = None,
    failed_bytes: int | None = None,
    retention_days: int | None = None,
) -> Phase:
    """Create a phase and import its ground truth. Settings left ``None`` take their
    defaults (:data:`PHASE_SETTINGS`; ``daily_limit`` the server's)."""
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
    session.add(phase)
    session.flush()
    import_ground_truth(session, settings, phase, ground_truth, parse_tasks(tasks), protocol)
    return phase


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
    allowed |= {"analysis_resamples", "analysis_seed", *PHASE_SETTINGS}
    _check_analysis_settings(changes.get("analysis_resamples"), changes.get("analysis_seed"))
    for key, value in changes.items():
        if value is None:
            continue
        if key not in allowed:
            raise BadRequest(f"cannot change {key!r} of a phase")
        if key in PHASE_SETTINGS:
            value = check_phase_setting(key, value)
        if key == "selection" and value not in ("best", "latest"):
            raise BadRequest(f"selection must be 'best' or 'latest', not {value!r}")
        if key == "daily_limit" and value < 0:
            raise BadRequest("daily_limit must be >= 0")
        setattr(phase, key, value)
    return phase


def phase_public(phase: Phase) -> dict[str, Any]:
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
    }


def phase_detail(phase: Phase) -> dict[str, Any]:
    """Organizer view: adds the ground-truth and protocol records of each task."""
    d = phase_public(phase)
    d["analysis_resamples"] = phase.analysis_resamples
    d["analysis_seed"] = phase.analysis_seed
    for key in PHASE_SETTINGS:
        d[key] = getattr(phase, key)
    d["task_details"] = [
        {
            "task": t.task,
            "n_cases": t.n_cases,
            "ground_truth_sha256": t.gt_sha256,
            "protocol_sha256": t.protocol_sha256,
            "protocol": Protocol.from_json(t.protocol_json).to_dict(),
            "imported_at": t.imported_at,
        }
        for t in phase.tasks
    ]
    return d


def list_phases(session: Session) -> list[Phase]:
    return list(session.scalars(select(Phase).order_by(Phase.created_at, Phase.id)))


def rescore(session: Session, phase_name: str, task: int | None = None) -> list[int]:
    """Queue every finished, non-dry-run submission of the phase again, at low priority
    (``PRIORITY_RESCORE``: judges take every team's own submissions first). Returns
    their ids.

    Submissions whose upload retention deleted (``purged_at``, failed ones only) are
    skipped: there is nothing left to score. Stored results stay until the new ones
    replace them, so the leaderboard keeps showing the old scores while re-scoring runs.
    """
    from app.db.models import PRIORITY_RESCORE

    phase = get_phase(session, phase_name)
    where = [
        Submission.phase_id == phase.id,
        Submission.dry_run.is_(False),
        Submission.status.in_((SCORED, FAILED)),
    ]
    if task is not None:
        where.append(Submission.task == task)
    ids = sorted(
        session.scalars(
            update(Submission)
            .where(*where, Submission.purged_at.is_(None))
            .values(status=QUEUED, progress_done=0, attempts=0, priority=PRIORITY_RESCORE)
            .returning(Submission.id)
        )
    )
    purged = session.scalar(
        select(func.count(Submission.id)).where(*where, Submission.purged_at.is_not(None))
    )
    if purged:
        log.info(
            "phase %s: %d failed submission(s) not re-scored: retention deleted their uploads",
            phase.name,
            purged,
        )
    return ids


def recover_pending(session: Session) -> list[int]:
    """Start-up: submissions left ``running`` go back to ``queued``; all queued are returned."""
    n = rowcount(
        session.execute(
            update(Submission).where(Submission.status == RUNNING).values(status=QUEUED)
        )
    )
    if n:
        log.warning("re-queued %d submission(s) left running by a previous process", n)
    return list(
        session.scalars(
            select(Submission.id).where(Submission.status == QUEUED).order_by(Submission.id)
        )
    )


# -- submissions -----------------------------------------------------------------------
def _fmt_delta(d: timedelta) -> str:
    secs = max(0, int(d.total_seconds()))
    h, rem = divmod(secs, 3600)
    m = rem // 60
    return f"{h} h {m:02d} min" if h else f"{m} min" if m else f"{secs} s"


def check_quota(
    session: Session, phase: Phase, team_id: int, task: int, *, now: datetime | None = None
) -> None:
    """Raise :class:`QuotaExceeded` naming when the next slot opens.

    The window is the last 24 hours, per team, phase and task; failed submissions and
    dry runs do not count.
    """
    now = now or utcnow()
    limit = phase.daily_limit
    since = now - QUOTA_WINDOW
    times = list(
        session.scalars(
            select(Submission.submitted_at)
            .where(
                Submission.team_id == team_id,
                Submission.phase_id == phase.id,
                Submission.task == task,
                Submission.dry_run.is_(False),
                Submission.status.in_(COUNTED_STATES),
                Submission.submitted_at > since,
            )
            .order_by(Submission.submitted_at)
        )
    )
    if len(times) < limit:
        return
    if limit == 0:
        raise QuotaExceeded(
            f"phase {phase.name!r} accepts no submissions for task {task} (daily limit 0)",
            [problem("daily limit is 0", kind="quota")],
        )
    opens = times[len(times) - limit] + QUOTA_WINDOW
    when = opens.isoformat(timespec="seconds").replace("+00:00", "Z")
    msg = (
        f"daily limit reached: {len(times)} of {limit} submissions for phase {phase.name!r}, "
        f"task {task} in the last 24 hours; the next slot opens at {when} "
        f"(in {_fmt_delta(opens - now)}). Failed submissions and dry runs do not count."
    )
    retry = max(1, int((opens - now).total_seconds()) + 1)
    raise QuotaExceeded(
        msg, [problem(msg, kind="quota")], headers={"Retry-After": str(retry), "X-Next-Slot": when}
    )


def precheck_submission(
    session: Session,
    principal: Principal,
    phase_name: str,
    task: int,
    *,
    dry_run: bool,
    size: int | None = None,
) -> Phase:
    """Everything that can be refused before the upload is read (``size`` None), or,
    with the upload's ``size``, before it is registered: the quota and the allowances
    (:mod:`app.allowances`)."""
    from app.allowances import check_allowances

    if principal.role != TEAM or principal.team_id is None:
        raise Forbidden("only a team token can submit; organizers have no team")
    phase = get_phase(session, phase_name)
    get_phase_task(session, phase, task)
    if not phase.is_open:
        raise Forbidden(f"phase {phase.name!r} is closed; it accepts no submissions")
    if not dry_run:
        check_quota(session, phase, principal.team_id, task)
    check_allowances(session, phase, principal.team_id, task, dry_run=dry_run, size=size)
    return phase


def register_submission(
    session: Session,
    settings: Settings,
    principal: Principal,
    *,
    phase_name: str,
    task: int,
    dry_run: bool,
    upload_path: Path,
    archive_type: str,
    filename: str,
    size: int,
    sha256: str,
) -> int:
    """Insert the row, move the upload to ``submissions/<id>/`` and commit (status queued).

    The caller dispatches the job only after this returned: the row is committed first.
    """
    from app.uploads import stored_name

    with _quota_lock:
        phase = precheck_submission(
            session, principal, phase_name, task, dry_run=dry_run, size=size
        )
        if session.get_bind().dialect.name == "postgresql":
            # serialise concurrent uploads of one team across processes
            session.execute(select(Team.id).where(Team.id == principal.team_id).with_for_update())
            if not dry_run:
                check_quota(session, phase, principal.team_id or 0, task)
            from app.allowances import check_allowances

            check_allowances(
                session, phase, principal.team_id or 0, task, dry_run=dry_run, size=size
            )
        sub = Submission(
            team_id=principal.team_id,
            phase_id=phase.id,
            task=task,
            dry_run=dry_run,
            status=RECEIVED,
            filename=filename[:255],
            archive_type=archive_type,
            size_bytes=size,
            sha256=sha256,
        )
        session.add(sub)
        session.flush()
        dest_dir = settings.submissions_dir / str(sub.id)
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / stored_name(archive_type)
        os.replace(upload_path, dest)
        fsync_dir(dest_dir)
        sub.archive_path = rel(settings, dest)
        sub.status = QUEUED
        sid = sub.id
        try:
            session.commit()
        except BaseException:
            session.rollback()
            shutil.rmtree(dest_dir, ignore_errors=True)
            raise
    log.info(
        "submission %d: team %s, phase %s, task %d%s, %d bytes queued",
        sid,
        principal.team_name,
        phase_name,
        task,
        " (dry run)" if dry_run else "",
        size,
    )
    return sid


def scores_hidden(sub: Submission, principal: Principal) -> bool:
    return sub.phase.hidden and not principal.is_organizer


def submission_cases(session: Session, submission_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(CaseResult).where(CaseResult.submission_id == submission_id).order_by(CaseResult.idx)
    )
    return [dict(r.record) for r in rows]


def visible_submission_cases(
    session: Session, sub: Submission, principal: Principal
) -> list[dict[str, Any]] | None:
    """The per-case rows of ``sub`` the principal may read (:func:`app.access.visible_cases`):
    all fields for organizers, the allowed fields for its team, None when the phase shows
    teams no per-case rows."""
    from app.access import visible_cases

    return visible_cases(sub.task, sub.phase, principal, submission_cases(session, sub.id))


def submission_public(
    session: Session, sub: Submission, principal: Principal, *, include_cases: bool = True
) -> dict[str, Any]:
    from app.access import case_rows_policy

    hidden = scores_hidden(sub, principal)
    result = None
    if sub.result is not None and not hidden and sub.status in (SCORED, "valid"):
        result = dict(sub.result.document)
        result.pop("cases", None)
        if include_cases:
            cases = visible_submission_cases(session, sub, principal)
            if cases is not None:
                result["cases"] = cases
    return {
        "id": sub.id,
        "team": sub.team.name,
        "phase": sub.phase.name,
        "task": sub.task,
        "dry_run": sub.dry_run,
        "status": sub.status,
        "progress": {"done": sub.progress_done, "total": sub.progress_total},
        "filename": sub.filename,
        "size_bytes": sub.size_bytes,
        "sha256": sub.sha256,
        "submitted_at": sub.submitted_at,
        "started_at": sub.started_at,
        "scored_at": sub.finished_at if sub.status in (SCORED, "valid") else None,
        "finished_at": sub.finished_at,
        "scores_hidden": hidden,
        "case_rows": "all" if principal.is_organizer else case_rows_policy(sub.phase),
        "result": result,
        "errors": sub.errors if sub.status == FAILED else None,
    }


def list_submissions(
    session: Session,
    principal: Principal,
    *,
    phase: str | None = None,
    task: int | None = None,
    limit: int = 100,
) -> list[Submission]:
    q = select(Submission).order_by(Submission.id.desc()).limit(max(1, min(limit, 1000)))
    if not principal.is_organizer:
        q = q.where(Submission.team_id == principal.team_id)
    if phase is not None:
        q = q.where(Submission.phase_id == get_phase(session, phase).id)
    if task is not None:
        q = q.where(Submission.task == task)
    return list(session.scalars(q))


# -- leaderboards ----------------------------------------------------------------------
def can_see_leaderboard(phase: Phase, principal: Principal | None) -> bool:
    """Organizers always; others when the leaderboard is public and the phase is not
    hidden (a hidden phase never shows scores to teams, whatever its board setting)."""
    if principal is not None and principal.is_organizer:
        return True
    return phase.leaderboard_public and not phase.hidden


def leaderboard_entries(session: Session, phase: Phase, task: int) -> list[Entry]:
    rows = session.execute(
        select(Submission, Team.name, Result.metrics)
        .join(Team, Team.id == Submission.team_id)
        .join(Result, Result.submission_id == Submission.id)
        .where(
            Submission.phase_id == phase.id,
            Submission.task == task,
            Submission.dry_run.is_(False),
            Submission.status != FAILED,
        )
        .order_by(Submission.id)
    ).all()
    return [
        Entry(
            team=team,
            submission_id=sub.id,
            metrics=metrics,
            submitted_at=sub.submitted_at,
            scored_at=sub.finished_at,
        )
        for sub, team, metrics in rows
    ]


def leaderboard(
    session: Session,
    phase_name: str,
    task: int,
    principal: Principal | None,
    *,
    selection: str | None = None,
    live: bool = False,
) -> dict[str, Any]:
    """The leaderboard of a phase and task. While the phase is frozen, its snapshot is
    served as stored (``frozen`` true); ``live`` (organizers only) derives the current
    board from the stored rows instead."""
    phase = get_phase(session, phase_name)
    if not can_see_leaderboard(phase, principal):
        if principal is None:
            raise Unauthorized(f"the leaderboard of phase {phase.name!r} is for organizers only")
        raise Forbidden(f"the leaderboard of phase {phase.name!r} is for organizers only")
    if live and (principal is None or not principal.is_organizer):
        raise Forbidden("only organizers can see the live leaderboard (live=true)")
    pt = get_phase_task(session, phase, task)
    if not live:
        from app.freeze import active_snapshot, frozen_board

        snap = active_snapshot(session, phase.id, task)
        if snap is not None:
            return frozen_board(snap, selection=selection)
    sel = selection or phase.selection
    if sel not in ("best", "latest"):
        raise BadRequest(f"selection must be 'best' or 'latest', not {sel!r}")
    rows = build_leaderboard(task, leaderboard_entries(session, phase, task), selection=sel)  # type: ignore[arg-type]
    return {
        "phase": phase.name,
        "task": task,
        "selection": sel,
        "protocol_sha256": pt.protocol_sha256,
        "ground_truth_sha256": pt.gt_sha256,
        "rows": rows,
        "frozen": False,
    }


# -- jobs' bookkeeping (used by app.jobs) -----------------------------------------------
def replace_result(session: Session, submission_id: int, doc: dict[str, Any]) -> None:
    """Delete the old result and per-case rows of a submission and write the new ones
    (and, in the same transaction, drop the cached analyses of its phase and task)."""
    invalidate_analysis(session, submission_id)
    session.execute(delete(CaseResult).where(CaseResult.submission_id == submission_id))
    session.execute(delete(Result).where(Result.submission_id == submission_id))
    cases = list(doc.get("cases") or [])
    body = {k: v for k, v in doc.items() if k != "cases"}
    proto = body.get("protocol") or {}
    session.add(
        Result(
            submission_id=submission_id,
            metrics=dict(body.get("metrics") or {}),
            document=body,
            protocol_sha256=str(proto.get("sha256", "")),
            ground_truth_sha256=str(body.get("ground_truth_sha256", "")),
            evaluator_version=str(body.get("evaluator_version", "")),
            sha256=result_sha256(doc),
        )
    )
    session.add_all(
        CaseResult(
            submission_id=submission_id,
            idx=i,
            patient_id=str(c.get("patient_id", "")),
            center=c.get("center"),
            record=dict(c),
        )
        for i, c in enumerate(cases)
    )


def result_sha256(doc: dict[str, Any]) -> str:
    """SHA-256 of a result document (with its cases) as canonical JSON."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def invalidate_analysis(session: Session, submission_id: int) -> None:
    """Drop the cached ranking analyses of the submission's phase and task. Called in
    the transaction that writes or deletes its result; the cache key covers the result
    hashes as well, so an entry can never outlive the rows it was computed from."""
    row = session.execute(
        select(Submission.phase_id, Submission.task).where(Submission.id == submission_id)
    ).first()
    if row is not None:
        session.execute(
            delete(AnalysisCache).where(
                AnalysisCache.phase_id == row.phase_id, AnalysisCache.task == row.task
            )
        )


def delete_results(session: Session, submission_id: int) -> None:
    invalidate_analysis(session, submission_id)
    session.execute(delete(CaseResult).where(CaseResult.submission_id == submission_id))
    session.execute(delete(Result).where(Result.submission_id == submission_id))


def token_count(session: Session) -> int:
    return session.scalar(select(func.count(ApiToken.id))) or 0
