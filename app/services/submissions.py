"""Submissions: refuse early, register the upload, read them back, queue them again.

Functions taking a ``Session`` never commit unless their docstring says so; the
caller owns the unit of work."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypedDict

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, joinedload

from app.access import scores_hidden
from app.db.models import (
    FAILED,
    KIND_ALGORITHM,
    KIND_PREDICTIONS,
    QUEUED,
    RECEIVED,
    SCORED,
    CaseResult,
    Phase,
    Submission,
    Team,
)
from app.errors import Conflict, Forbidden, NotFound, Unauthorized, problem
from app.security import TEAM, Principal
from app.services.phases import get_phase, get_phase_task
from app.services.quota import check_quota
from app.services.results import CaseRecord
from app.settings import Settings
from app.storage import MODEL_NAMES, MODEL_SHA256_NAME, fsync_dir, rel, stored_name

log = logging.getLogger(__name__)


_quota_lock = threading.Lock()


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
    (:mod:`app.services.allowances`)."""
    from app.services.allowances import check_allowances

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


def _recheck_locked(
    session: Session, phase: Phase, principal: Principal, task: int, *, dry_run: bool, size: int
) -> None:
    """PostgreSQL: lock the team's row, so that concurrent uploads of one team across
    processes are serialised, and check the quota and the allowances again under it."""
    from app.services.allowances import check_allowances

    session.execute(select(Team.id).where(Team.id == principal.team_id).with_for_update())
    if not dry_run:
        check_quota(session, phase, principal.team_id or 0, task)
    check_allowances(session, phase, principal.team_id or 0, task, dry_run=dry_run, size=size)


def refuse_duplicate(
    session: Session,
    phase: Phase,
    team_id: int,
    task: int,
    sha256: str,
    filename: str,
    *,
    settings: Settings | None = None,
    model_sha256: str | None = None,
) -> None:
    """Refuse (409) an upload byte-identical to an earlier submission of the team for
    this phase and task (the same SHA-256) that was not refused: it would score the
    same and take a quota slot. Dry runs and failed submissions are not compared. An
    algorithm's image counts as the same only with the same model (or none), whose
    SHA-256 is stored beside the earlier one's (``settings`` finds it)."""
    earlier_ones = session.scalars(
        select(Submission)
        .where(
            Submission.team_id == team_id,
            Submission.phase_id == phase.id,
            Submission.task == task,
            Submission.sha256 == sha256,
            Submission.dry_run.is_(False),
            Submission.status != FAILED,
        )
        .order_by(Submission.id)
    )
    earlier = next(
        (
            e
            for e in earlier_ones
            if e.kind != KIND_ALGORITHM or _stored_model_sha256(settings, e) == model_sha256
        ),
        None,
    )
    if earlier is None:
        return
    if earlier.kind == KIND_ALGORITHM:
        same = f"the same image SHA-256 {sha256[:16]}…" + (
            ", the same model" if model_sha256 else ", no model"
        )
        todo = "Submit a changed image or model"
    else:
        same, todo = f"same SHA-256 {sha256[:16]}…", "Submit changed predictions"
    msg = (
        f"{filename}: byte-identical to submission {earlier.id} of your team for phase "
        f"{phase.name!r}, task {task} ({same}, {earlier.status}); it would score the same, "
        f"so it was not accepted and used no quota. {todo}, or read submission "
        f"{earlier.id}'s result (/submissions/{earlier.id})"
    )
    raise Conflict(msg, [problem(msg, kind="duplicate")])


def _stored_model_sha256(settings: Settings | None, sub: Submission) -> str | None:
    if settings is None:
        return None
    path = settings.submissions_dir / str(sub.id) / MODEL_SHA256_NAME
    try:
        return path.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class ModelUpload:
    """The model tarball sent with an algorithm's image: where it was received, its
    archive type (``tar`` or ``tar.gz``), SHA-256 and size."""

    path: Path
    archive_type: str
    sha256: str
    size: int


def _store_upload(
    settings: Settings, sub: Submission, upload_path: Path, model: ModelUpload | None = None
) -> Path:
    """Move the upload (and an algorithm's model, with its SHA-256 beside it) into
    ``submissions/<id>/`` and mark the row queued; returns the folder."""
    dest_dir = settings.submissions_dir / str(sub.id)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / stored_name(sub.archive_type)
    if model is not None:
        os.replace(model.path, dest_dir / MODEL_NAMES[model.archive_type])
        (dest_dir / MODEL_SHA256_NAME).write_text(model.sha256 + "\n", encoding="ascii")
    os.replace(upload_path, dest)
    fsync_dir(dest_dir)
    sub.archive_path = rel(settings, dest)
    sub.status = QUEUED
    return dest_dir


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
    kind: str = KIND_PREDICTIONS,
    model: ModelUpload | None = None,
) -> int:
    """Insert the row, move the upload (and an algorithm's ``model``) to
    ``submissions/<id>/`` and commit (status queued). ``size`` counts the model too
    (the allowances count both).

    The caller dispatches the job only after this returned: the row is committed first.
    """
    with _quota_lock:
        phase = precheck_submission(
            session, principal, phase_name, task, dry_run=dry_run, size=size
        )
        if session.get_bind().dialect.name == "postgresql":
            _recheck_locked(session, phase, principal, task, dry_run=dry_run, size=size)
        if not dry_run and settings.refuse_duplicates:
            refuse_duplicate(
                session,
                phase,
                principal.team_id or 0,
                task,
                sha256,
                filename,
                settings=settings,
                model_sha256=model.sha256 if model is not None else None,
            )
        sub = Submission(
            team_id=principal.team_id,
            phase_id=phase.id,
            task=task,
            dry_run=dry_run,
            kind=kind,
            status=RECEIVED,
            filename=filename[:255],
            archive_type=archive_type,
            size_bytes=size,
            sha256=sha256,
        )
        session.add(sub)
        session.flush()
        dest_dir = _store_upload(settings, sub, upload_path, model)
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


def submission_cases(session: Session, submission_id: int) -> list[CaseRecord]:
    """The submission's stored per-case records, in stored order."""
    rows = session.scalars(
        select(CaseResult).where(CaseResult.submission_id == submission_id).order_by(CaseResult.idx)
    )
    return [dict(r.record) for r in rows]


def visible_submission_cases(
    session: Session, sub: Submission, principal: Principal
) -> list[CaseRecord] | None:
    """The per-case rows of ``sub`` the principal may read (:func:`app.access.visible_cases`):
    all fields for organizers, the allowed fields for its team, None when the phase shows
    teams no per-case rows."""
    from app.access import visible_cases

    return visible_cases(sub.task, sub.phase, principal, submission_cases(session, sub.id))


class Progress(TypedDict):
    done: int
    total: int
    note: str  # what the judge is doing (which cases of an algorithm run)


class SubmissionView(TypedDict):
    """A submission as its team or an organizer reads it. ``result`` is the stored result
    document (its ``cases`` the rows the caller may read), None while not scored or when
    the phase hides scores from the caller; ``errors`` only when it failed."""

    id: int
    team: str
    phase: str
    task: int
    dry_run: bool
    kind: str
    status: str
    progress: Progress
    filename: str
    size_bytes: int
    sha256: str
    submitted_at: datetime
    started_at: datetime | None
    scored_at: datetime | None
    finished_at: datetime | None
    scores_hidden: bool
    case_rows: str
    result: dict[str, Any] | None
    errors: list[dict[str, Any]] | None
    warnings: list[dict[str, Any]]


def submission_public(
    session: Session, sub: Submission, principal: Principal, *, include_cases: bool = True
) -> SubmissionView:
    """The submission as ``principal`` may read it (:class:`SubmissionView`)."""
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
        "kind": sub.kind,
        "status": sub.status,
        "progress": {
            "done": sub.progress_done,
            "total": sub.progress_total,
            "note": sub.progress_note or "",
        },
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
        # what the result document warns about (inverted predictions), with the result
        "warnings": list((result or {}).get("warnings") or []),
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
