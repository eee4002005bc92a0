"""The runtime log of an algorithm submission: every case's container output, capped,
for organizers only (participants see the classified outcome on the submission)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse, Response

from app.api.deps import PrincipalDep, ReadSessionDep, SettingsDep, require_organizer
from app.api.error_handlers import ERRORS
from app.db.models import KIND_ALGORITHM
from app.errors import Conflict, NotFound
from app.jobs.algorithm_job import LOG_NAME
from app.services.submissions import get_submission
from app.storage import absolute

router = APIRouter(prefix="/api/v1", tags=["submissions"])


@router.get(
    "/admin/submissions/{submission_id}/logs",
    response_class=PlainTextResponse,
    responses={**ERRORS, 200: {"content": {"text/plain": {}}}},
    dependencies=[Depends(require_organizer)],
    summary="The runtime log of an algorithm submission (organizers only)",
)
def submission_logs(
    submission_id: int, principal: PrincipalDep, session: ReadSessionDep, settings: SettingsDep
) -> Response:
    """Each case's container output (stdout and stderr, capped per case and in all) and
    how it ended; 409 for a prediction submission, 404 before its first case ran or once
    retention deleted it."""
    sub = get_submission(session, submission_id, principal)
    if sub.kind != KIND_ALGORITHM:
        raise Conflict(f"submission {sub.id} is a prediction upload; only algorithms have logs")
    path = absolute(settings, sub.archive_path).parent / LOG_NAME if sub.archive_path else None
    if path is None or not path.is_file():
        raise NotFound(f"submission {sub.id} has no runtime log (not run yet, or deleted)")
    return PlainTextResponse(
        path.read_text(encoding="utf-8", errors="replace"),
        media_type="text/plain; charset=utf-8",
    )
