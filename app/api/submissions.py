"""Submissions: upload (streamed), status, per-case CSV, listing."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.access import aggregate_only_message, check_submission_scores_visible
from app.algorithms.tarball import (
    SLIM_HINT,
    TarballProblem,
    check_image_tarball,
    check_model_tarball,
    describe_upload,
    host_architecture,
    sniff_image_tarball,
)
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
from app.db.models import KIND_ALGORITHM, KIND_PREDICTIONS, SCORED, VALID, Submission
from app.db.session import session_scope
from app.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    TooLarge,
    Unprocessable,
    UnsupportedType,
    problem,
)
from app.security import Principal
from app.services.limits import (
    ACCEPTED_TYPES,
    IMAGE_TYPES,
    MODEL_TYPES,
    UploadPlan,
    largest_caps,
    submission_limits,
    upload_plan,
)
from app.services.phases import FROZEN_NOTE, frozen_since, get_phase
from app.services.submissions import (
    ModelUpload,
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
from evaluator.io.sniff import archive_kind
from evaluator.pipeline.result import cases_csv

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["submissions"])
MODEL_FIELD = "model"

FILE_HELP = (
    "Task 1: .zip/.tar/.tar.gz of <PatientID>.nii.gz; Task 2/3: .csv/.json table or an "
    "archive holding one. A phase that judges algorithms takes a container image tarball "
    "instead (`docker save` / `podman save` output or an OCI archive, .tar or .tar.gz). "
    "Send phase and task before file so that refusals come early."
)
MODEL_HELP = (
    "algorithm phases only, sent after file: a .tar/.tar.gz of the model files, mounted "
    "read-only at /opt/ml/model in every case's container"
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
                        "model": {
                            "type": "string",
                            "format": "binary",
                            "description": MODEL_HELP,
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
    images = ", ".join(IMAGE_TYPES)
    per_phase = (
        "the phase's image limit (image_max_bytes, compressed and uncompressed; "
        "GET /api/v1/phases/{phase}/limits says it)"
    )
    media = op["requestBody"]["content"]["multipart/form-data"]
    file_schema = media["schema"]["properties"]["file"]
    file_schema["maxLength"] = max_upload_bytes
    file_schema["x-max-upload-bytes"] = max_upload_bytes
    file_schema["x-accepted-types"] = {
        **{str(t): v for t, v in ACCEPTED_TYPES.items()},
        "algorithm": IMAGE_TYPES,
    }
    file_schema["description"] = (
        f"{FILE_HELP} At most {size} for a prediction archive or table (maxLength); an "
        f"image tarball at most {per_phase}. Accepted, by content: {types}; for algorithm "
        f"phases: {images}."
    )
    media["schema"]["properties"]["model"]["description"] = (
        f"{MODEL_HELP}; at most {per_phase}. Accepted, by content: {', '.join(MODEL_TYPES)}."
    )
    base = (op.get("description") or "").split("\n\nLimits:")[0]
    op["description"] = (
        f"{base}\n\nLimits: the upload is at most {size}; larger ones are refused with 413 "
        f"while streaming. Accepted, by content: {types}; anything else is 415. A phase "
        f"that judges algorithms takes {images}, at most {per_phase}, with an optional "
        f"model tarball (field model); the image is checked before it is queued "
        f"(one image, its layers and config present, linux/{host_architecture()}, an "
        f"ENTRYPOINT or CMD; 422 otherwise) and a prediction archive sent to it is 415, as an image sent "
        f"to a phase of predictions is."
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


def _refuse_declared_size(request: Request, cap: int, plan: UploadPlan | None = None) -> None:
    """Refuse an upload whose declared ``Content-Length`` is over the limit before
    reading any of it (the streaming reader enforces the limit on the bytes); with the
    phase's ``plan``, its own limit."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap + (1 << 20):
        size = human_size(int(declared))
        if plan is not None and plan.image_cap is not None:
            msg = (
                f"the upload ({size}) is larger than phase {plan.phase!r} takes "
                f"({human_size(cap)}: an image tarball of at most "
                f"{human_size(plan.image_cap)} and a model of at most as much); "
                f"{SLIM_HINT}"
            )
        else:
            msg = (
                f"the upload ({size}) is larger than the limit of {human_size(cap)}; remove "
                "files that are not predictions, or ask the organizers"
            )
        raise TooLarge(msg, [problem(msg, kind="limit")])


def _phase_takes(plan: UploadPlan) -> str:
    if plan.image_cap is None:
        return "prediction archives and tables"
    if plan.archive_cap is None:
        return "algorithms: a container image tarball (`docker save` output, .tar or .tar.gz)"
    return "prediction archives and tables, or an algorithm's container image tarball"


def _refuse_kind(plan: UploadPlan, filename: str, head: bytes, *, image: bool) -> None:
    """415 for an image tarball sent to a phase of predictions, or anything else sent
    to a phase of algorithms only."""
    if image and plan.image_cap is None:
        msg = (
            f"{filename}: is a container image tarball; phase {plan.phase!r} judges "
            f"{_phase_takes(plan)}, not algorithms: upload your predictions (Task 1: a "
            ".zip/.tar/.tar.gz of <PatientID>.nii.gz; Task 2/3: a .csv/.json table)"
        )
    elif not image and plan.archive_cap is None:
        msg = (
            f"{filename}: is {describe_upload(head)}, not a container image tarball; "
            f"phase {plan.phase!r} judges {_phase_takes(plan)}: save your algorithm's "
            "image with `docker save myalgo:latest -o algo.tar` and upload that"
        )
    else:
        return
    raise UnsupportedType(msg, [problem(msg, kind="type")])


def _limit_message(plan: UploadPlan | None, image: bool) -> Callable[[str, int], str]:
    def message(field_name: str, cap: int) -> str:
        if field_name == MODEL_FIELD:
            return (
                f"the model tarball is larger than the limit of {human_size(cap)}; make the "
                "model smaller (no optimizer state or checkpoints the inference does not use)"
            )
        if image:
            return (
                f"the image tarball is larger than the phase's image limit of "
                f"{human_size(cap)}; {SLIM_HINT}"
            )
        return (
            f"the upload is larger than the limit of {human_size(cap)}; "
            "remove files that are not predictions, or ask the organizers"
        )

    return message


async def _classify(
    plan: UploadPlan | None, upload: ReceivedFile, model_file: ReceivedFile | None, task: int
) -> tuple[str, str, str | None, ModelUpload | None]:
    """What a received upload is: its archive type, its submission kind, an image's id
    and its model, once the checks its phase asks for passed (``plan`` None: the phase
    is unknown, which registering refuses)."""
    image_kind = sniff_image_tarball(upload.head)
    if plan is not None:
        _refuse_kind(plan, upload.filename, upload.head, image=image_kind is not None)
    if image_kind is not None and plan is not None and plan.image_cap is not None:
        cap = plan.image_cap
        if upload.size > cap:
            msg = _limit_message(plan, True)("file", cap)
            raise TooLarge(msg, [problem(msg, kind="limit")])
        image_id = await run_in_threadpool(_check_image, upload, cap)
        model = None
        if model_file is not None:
            model = await run_in_threadpool(_check_model, model_file, cap)
        return f"image.{image_kind}", KIND_ALGORITHM, image_id, model
    if model_file is not None:
        msg = (
            f"{model_file.filename}: a model goes with an algorithm's image tarball only; "
            f"{upload.filename} is a prediction upload: send it without 'model'"
        )
        raise BadRequest(msg, [problem(msg)])
    archive_type = upload_type(upload.head, task)
    if plan is not None and plan.archive_cap is not None and upload.size > plan.archive_cap:
        msg = _limit_message(plan, False)("file", plan.archive_cap)
        raise TooLarge(msg, [problem(msg, kind="limit")])
    return archive_type, KIND_PREDICTIONS, None, None


def _check_image(upload: ReceivedFile, cap: int) -> str:
    """The image's id once :func:`check_image_tarball` passed; 422 otherwise."""
    t0 = time.monotonic()
    try:
        info = check_image_tarball(upload.path, max_bytes=cap, name=upload.filename)
    except TarballProblem as e:
        raise Unprocessable(e.message, [problem(p, kind="image") for p in e.problems]) from None
    log.info(
        "image tarball %s checked in %.1f s: %s layout, %d layer(s), %d bytes uncompressed",
        info.image_id[:12],
        time.monotonic() - t0,
        info.layout,
        info.n_layers,
        info.uncompressed_bytes,
    )
    return info.image_id


def _check_model(model: ReceivedFile, cap: int) -> ModelUpload:
    kind = archive_kind(model.head)
    if kind not in ("tar", "tar.gz"):
        msg = (
            f"{model.filename}: the model must be a .tar or .tar.gz archive of the model "
            f"files; it is {describe_upload(model.head)}: pack it with "
            "`tar -czf model.tar.gz -C model .`"
        )
        raise UnsupportedType(msg, [problem(msg, kind="type")])
    try:
        check_model_tarball(model.path, max_bytes=cap, name=model.filename)
    except TarballProblem as e:
        raise Unprocessable(e.message, [problem(p, kind="model") for p in e.problems]) from None
    return ModelUpload(path=model.path, archive_type=kind, sha256=model.sha256, size=model.size)


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
    kind: str = KIND_PREDICTIONS,
    model: ModelUpload | None = None,
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
            size=upload.size + (model.size if model is not None else 0),
            sha256=upload.sha256,
            kind=kind,
            model=model,
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
    summary=(
        "Upload a submission (multipart: file, task, phase; for an algorithm phase an image "
        "tarball and optionally model); ?dry_run=true validates only"
    ),
)
async def create_submission(
    request: Request,
    principal: TeamDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    dry_run: bool = Query(False, description="validate without scoring; uses no quota"),
) -> SubmissionAccepted:
    sessions = request.app.state.sessions

    def _largest() -> tuple[int, int, int]:
        with session_scope(sessions) as s:
            return largest_caps(s, settings)

    file_cap, body_cap, image_cap = await run_in_threadpool(_largest)
    _refuse_declared_size(request, body_cap)
    boundary = boundary_of(request)
    receiver = MultipartReceiver(boundary, settings.incoming_dir, file_cap)
    receiver.limit_message = _limit_message(None, False)
    if image_cap:  # an open phase judges algorithms: a model may come (the phase decides)
        receiver.extra_file_fields = {MODEL_FIELD: image_cap}
    plan: UploadPlan | None = None

    def _precheck(phase: str, task: int) -> UploadPlan:
        with session_scope(sessions) as s:
            found = precheck_submission(s, principal, phase, task, dry_run=dry_run)
            return upload_plan(settings, found)

    def _plan_of(phase: str) -> UploadPlan | None:
        with session_scope(sessions) as s:
            try:
                return upload_plan(settings, get_phase(s, phase))
            except NotFound:
                return None  # registering says so

    async def on_file_start(fields: dict[str, str]) -> None:
        # the fields sent before the file: refuse before reading the upload
        nonlocal plan
        if fields.get("phase") and fields.get("task"):
            plan = await run_in_threadpool(
                _precheck, _parse_phase(fields["phase"]), _parse_task(fields["task"])
            )
            _refuse_declared_size(request, plan.body_cap, plan)
            receiver.max_file_bytes = plan.file_cap
            receiver.extra_file_fields = (
                {MODEL_FIELD: plan.image_cap} if plan.image_cap is not None else {}
            )
            if plan.image_cap is None:
                name = plan.phase
                receiver.unexpected_file = lambda field: (
                    f"unexpected file field {field!r}; phase {name!r} takes prediction "
                    "archives, which come without a model: send the archive as 'file'"
                )

    def on_head(head: bytes, filename: str) -> None:
        # the file's first bytes: an image or not, and the cap that follows
        if plan is None:
            return
        image = sniff_image_tarball(head) is not None
        _refuse_kind(plan, filename, head, image=image)
        cap = plan.image_cap if image else plan.archive_cap
        assert cap is not None
        receiver.max_file_bytes = cap
        receiver.limit_message = _limit_message(plan, image)

    await receiver.receive(request, on_file_start, on_head)
    upload = receiver.file
    assert upload is not None
    try:
        phase = _parse_phase(receiver.fields.get("phase"))
        task = _parse_task(receiver.fields.get("task"))
        if plan is None:  # the fields came after the file
            plan = await run_in_threadpool(_plan_of, phase)
        archive_type, kind, image_id, model = await _classify(
            plan, upload, receiver.files.get(MODEL_FIELD), task
        )
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
                kind=kind,
                model=model,
            )
        )
    finally:
        # moved away on success
        for received in receiver.files.values():
            received.path.unlink(missing_ok=True)
    dispatch(dispatcher, [sid])
    return SubmissionAccepted(
        id=sid,
        status="queued",
        dry_run=dry_run,
        phase=phase,
        task=task,
        sha256=upload.sha256,
        size_bytes=upload.size + (model.size if model is not None else 0),
        url=f"/api/v1/submissions/{sid}",
        note=note,
        kind="algorithm" if kind == KIND_ALGORITHM else "predictions",
        image_id=image_id,
        model_sha256=model.sha256 if model is not None else None,
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
            progress=Progress(
                done=s.progress_done, total=s.progress_total, note=s.progress_note or ""
            ),
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
