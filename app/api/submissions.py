"""Submissions: upload (streamed), status, per-case CSV, listing."""

from __future__ import annotations

import functools
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.access import aggregate_only_message, check_submission_scores_visible
from app.api.deps import (
    DispatcherDep,
    PrincipalDep,
    ReadSessionDep,
    SessionDep,
    SettingsDep,
    TeamDep,
    dispatch,
)
from app.api.error_handlers import ERRORS
from app.api.multipart import MultipartReceiver, ReceivedFile, boundary_of, upload_type
from app.api.schemas import (
    ErrorResponse,
    Progress,
    SubmissionAccepted,
    SubmissionLimits,
    SubmissionPublic,
    SubmissionSummary,
)
from app.db.models import SCORED, VALID, Submission
from app.db.session import session_scope
from app.errors import BadRequest, Conflict, Forbidden, TooLarge, problem
from app.security import Principal
from app.services.limits import ACCEPTED_TYPES, submission_limits
from app.services.phases import FROZEN_NOTE, frozen_since, get_phase
from app.services.submissions import (
    SubmissionView,
    get_submission,
    list_submissions,
    precheck_submission,
    register_submission,
    submission_public,
    visible_submission_cases,
)
from app.settings import Settings
from evaluator.io.sizes import human_size
from evaluator.pipeline.result import cases_csv

router = APIRouter(prefix="/api/v1", tags=["submissions"])

FILE_HELP = (
    "Task 1: .zip/.tar/.tar.gz of <PatientID>.nii.gz; Task 2/3: .csv/.json table or an "
    "archive holding one. Send phase and task before file so that refusals come early."
)
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "task", "phase"],
                    "properties": {
                        "phase": {"type": "string", "description": "phase name"},
                        "task": {"type": "integer", "enum": [1, 2, 3]},
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": FILE_HELP,
                        },
                    },
                },
            }
        },
    }
}


def document_upload_limits(openapi: dict[str, Any], max_upload_bytes: int) -> dict[str, Any]:
    """State this server's real upload limit and accepted types in ``openapi`` (the
    document built from the routes), in place; returns it."""
    op = openapi.get("paths", {}).get("/api/v1/submissions", {}).get("post")
    if op is None:
        return openapi
    size = f"{human_size(max_upload_bytes)} ({max_upload_bytes} bytes, HECKTOR_MAX_UPLOAD_BYTES)"
    types = "; ".join(f"Task {t}: {', '.join(v)}" for t, v in ACCEPTED_TYPES.items())
    media = op["requestBody"]["content"]["multipart/form-data"]
    file_schema = media["schema"]["properties"]["file"]
    file_schema["maxLength"] = max_upload_bytes
    file_schema["x-max-upload-bytes"] = max_upload_bytes
    file_schema["x-accepted-types"] = {str(t): v for t, v in ACCEPTED_TYPES.items()}
    file_schema["description"] = f"{FILE_HELP} At most {size}. Accepted, by content: {types}."
    base = (op.get("description") or "").split("\n\nLimits:")[0]
    op["description"] = (
        f"{base}\n\nLimits: the upload is at most {size}; larger ones are refused with 413 "
        f"while streaming. Accepted, by content: {types}; anything else is 415."
    ).lstrip()
    if "413" in op.get("responses", {}):
        op["responses"]["413"]["description"] = f"the upload is larger than {size}"
    return openapi


def _parse_task(value: str | None) -> int:
    try:
        task = int(value or "")
    except ValueError:
        task = 0
    if task not in (1, 2, 3):
        msg = (
            "the form field 'task' (1, 2 or 3) is required"
            if value is None
            else f"the form field 'task' must be 1, 2 or 3, not {value!r}"
        )
        raise BadRequest(msg, [problem(msg)])
    return task


def _parse_phase(value: str | None) -> str:
    if not value:
        msg = "the form field 'phase' (the phase name) is required"
        raise BadRequest(msg, [problem(msg)])
    return value


def _refuse_declared_size(request: Request, cap: int) -> None:
    """Refuse an upload whose declared ``Content-Length`` is over the limit before
    reading any of it (the streaming reader enforces the limit on the bytes)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap + (1 << 20):
        msg = (
            f"the upload ({human_size(int(declared))}) is larger than the limit of "
            f"{human_size(cap)}; remove files that are not predictions, or ask the organizers"
        )
        raise TooLarge(msg, [problem(msg, kind="limit")])


def _register(
    sessions: sessionmaker[Session],
    settings: Settings,
    principal: Principal,
    upload: ReceivedFile,
    *,
    phase: str,
    task: int,
    dry_run: bool,
    archive_type: str,
) -> tuple[int, str | None]:
    """The new submission's id, and the note of a frozen phase (real submissions)."""
    with sessions() as s:
        sid = register_submission(
            s,
            settings,
            principal,
            phase_name=phase,
            task=task,
            dry_run=dry_run,
            upload_path=upload.path,
            archive_type=archive_type,
            filename=upload.filename,
            size=upload.size,
            sha256=upload.sha256,
        )
        frozen = not dry_run and frozen_since(s, get_phase(s, phase)) is not None
        return sid, FROZEN_NOTE if frozen else None


@router.post(
    "/submissions",
    status_code=202,
    response_model=SubmissionAccepted,
    responses={
        **ERRORS,
        507: {"model": ErrorResponse, "description": "server storage full; retry later"},
    },
    openapi_extra=UPLOAD_BODY,
    summary="Upload a submission (multipart: file, task, phase); ?dry_run=true validates only",
)
async def create_submission(
    request: Request,
    principal: TeamDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    dry_run: bool = Query(False, description="validate without scoring; uses no quota"),
) -> SubmissionAccepted:
    sessions = request.app.state.sessions
    cap = settings.max_upload_bytes
    _refuse_declared_size(request, cap)
    boundary = boundary_of(request)

    def _precheck(phase: str, task: int) -> None:
        with session_scope(sessions) as s:
            precheck_submission(s, principal, phase, task, dry_run=dry_run)

    async def on_file_start(fields: dict[str, str]) -> None:
        # the fields sent before the file: refuse before reading the upload
        if fields.get("phase") and fields.get("task"):
            await run_in_threadpool(
                _precheck, _parse_phase(fields["phase"]), _parse_task(fields["task"])
            )

    receiver = MultipartReceiver(boundary, settings.incoming_dir, cap)
    await receiver.receive(request, on_file_start)
    upload = receiver.file
    assert upload is not None
    try:
        phase = _parse_phase(receiver.fields.get("phase"))
        task = _parse_task(receiver.fields.get("task"))
        archive_type = upload_type(upload.head, task)
        sid, note = await run_in_threadpool(
            functools.partial(
                _register,
                sessions,
                settings,
                principal,
                upload,
                phase=phase,
                task=task,
                dry_run=dry_run,
                archive_type=archive_type,
            )
        )
    finally:
        upload.path.unlink(missing_ok=True)  # moved away on success
    dispatch(dispatcher, [sid])
    return SubmissionAccepted(
        id=sid,
        status="queued",
        dry_run=dry_run,
        phase=phase,
        task=task,
        sha256=upload.sha256,
        size_bytes=upload.size,
        url=f"/api/v1/submissions/{sid}",
        note=note,
    )


@router.get(
    "/phases/{phase}/limits",
    response_model=SubmissionLimits,
    responses=ERRORS,
    summary="What an upload to this phase and task may be, asked before sending it",
)
def upload_limits(
    phase: str,
    principal: TeamDep,
    session: ReadSessionDep,
    settings: SettingsDep,
    task: int = Query(..., ge=1, le=3, description="the task the upload is for"),
    dry_run: bool = Query(False, description="the limits of a dry run"),
    size: int | None = Query(None, ge=0, description="the upload's size in bytes"),
) -> dict[str, Any]:
    """The size cap, the accepted types, the quota and allowances left; answered with the
    error the upload would get (401, 403 closed phase, 404, 413, 429) when it would be
    refused before its bytes are read."""
    return submission_limits(session, settings, principal, phase, task, dry_run=dry_run, size=size)


@router.get("/submissions", response_model=list[SubmissionSummary], responses=ERRORS)
def submissions_index(
    principal: PrincipalDep,
    session: SessionDep,
    phase: str | None = None,
    task: int | None = Query(None, ge=1, le=3),
    limit: int = Query(100, ge=1, le=1000),
) -> list[SubmissionSummary]:
    """The caller's team's submissions (all submissions for the organizer), newest first."""
    subs = list_submissions(session, principal, phase=phase, task=task, limit=limit)
    return [
        SubmissionSummary(
            id=s.id,
            team=s.team.name,
            phase=s.phase.name,
            task=s.task,
            dry_run=s.dry_run,
            status=s.status,
            progress=Progress(done=s.progress_done, total=s.progress_total),
            submitted_at=s.submitted_at,
            finished_at=s.finished_at,
        )
        for s in subs
    ]


@router.get("/submissions/{submission_id}", response_model=SubmissionPublic, responses=ERRORS)
def submission_status(
    submission_id: int, principal: PrincipalDep, session: ReadSessionDep
) -> SubmissionView:
    """Status, progress, and the result document or the errors. Own team or organizer."""
    sub = get_submission(session, submission_id, principal)
    return submission_public(session, sub, principal)


@router.get(
    "/submissions/{submission_id}/cases.csv",
    response_class=PlainTextResponse,
    responses={**ERRORS, 200: {"content": {"text/csv": {}}}},
)
def submission_cases_csv(
    submission_id: int, principal: PrincipalDep, session: SessionDep
) -> Response:
    """Per-case records of a scored submission as CSV: for its team the fields of
    :data:`app.access.TEAM_CASE_FIELDS` (never a ground-truth value), for organizers every
    field. 403 in a hidden phase and in a phase showing aggregate scores only."""
    sub = get_submission(session, submission_id, principal)
    return cases_csv_response(session, sub, principal)


def cases_csv_response(session: Session, sub: Submission, principal: Principal) -> Response:
    """The ``cases.csv`` answer of the API and of the pages."""
    check_submission_scores_visible(sub, principal)
    if sub.status not in (SCORED, VALID):
        raise Conflict(
            f"submission {sub.id} is {sub.status}; per-case results exist once it is scored"
        )
    cases = visible_submission_cases(session, sub, principal)
    if cases is None:
        raise Forbidden(aggregate_only_message(sub.phase))
    text = cases_csv(cases)
    return PlainTextResponse(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="submission-{sub.id}-cases.csv"'},
    )
