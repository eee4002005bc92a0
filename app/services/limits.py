"""What an upload may be before it is sent: the phase's size caps, the accepted types of
the task (prediction archives and tables, or for an algorithm phase container image
tarballs), the per-case limits an algorithm runs under, the quota and allowances left.
A client asks first, so that an upload the server would refuse is refused before its
bytes travel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import KIND_ALGORITHM, KIND_BOTH, KIND_PREDICTIONS, Phase, utcnow
from app.security import Principal
from app.services.allowances import allowance_summary
from app.services.quota import counted_submission_times
from app.services.submissions import precheck_submission
from app.settings import Settings

# what the upload may be, per task (recognised by its first bytes, not its name)
_ARCHIVES = ["application/zip", "application/x-tar", "application/gzip (a .tar.gz)"]
ACCEPTED_TYPES: dict[int, list[str]] = {
    1: _ARCHIVES,
    2: ["text/csv", "application/json", *_ARCHIVES],
    3: ["text/csv", "application/json", *_ARCHIVES],
}
# what an algorithm phase takes: a saved container image, recognised by its first member
IMAGE_TYPES = [
    "application/x-tar (a container image: docker save / podman save, or an OCI archive)",
    "application/gzip (such a container image tarball, gzip-compressed)",
]
MODEL_TYPES = ["application/x-tar", "application/gzip (a .tar.gz)"]


def takes_archives(phase: Phase) -> bool:
    return phase.kind in (KIND_PREDICTIONS, KIND_BOTH)


def takes_images(phase: Phase) -> bool:
    return phase.kind in (KIND_ALGORITHM, KIND_BOTH)


def accepted_types(phase: Phase, task: int) -> list[str]:
    """The upload types of ``phase``'s ``task``, by content."""
    return [
        *(ACCEPTED_TYPES[task] if takes_archives(phase) else []),
        *(IMAGE_TYPES if takes_images(phase) else []),
    ]


def file_cap(settings: Settings, phase: Phase) -> int:
    """The largest ``file`` part ``phase`` takes (before its type is known)."""
    caps = [settings.max_upload_bytes] if takes_archives(phase) else []
    if takes_images(phase):
        caps.append(phase.image_max_bytes)
    return max(caps)


def model_cap(phase: Phase) -> int:
    """The largest ``model`` part an algorithm upload to ``phase`` may carry."""
    return phase.image_max_bytes


def body_cap(settings: Settings, phase: Phase) -> int:
    """The largest request body an upload to ``phase`` may need (image and model)."""
    image = phase.image_max_bytes + model_cap(phase) if takes_images(phase) else 0
    return max(settings.max_upload_bytes if takes_archives(phase) else 0, image)


def largest_caps(session: Session, settings: Settings) -> tuple[int, int, int]:
    """The largest ``file`` part, the largest request body and the largest image (0:
    no open phase judges algorithms) any open phase takes: what an upload can be
    refused for before its phase is known."""
    image = int(
        session.scalar(
            select(func.max(Phase.image_max_bytes)).where(
                Phase.is_open.is_(True), Phase.kind.in_((KIND_ALGORITHM, KIND_BOTH))
            )
        )
        or 0
    )
    return (
        max(settings.max_upload_bytes, image),
        max(settings.max_upload_bytes, 2 * image),
        image,
    )


@dataclass(frozen=True)
class UploadPlan:
    """What an upload to one phase may be, read once from the phase's row."""

    phase: str
    kind: str  # Phase.kind
    archive_cap: int | None  # None: the phase takes no prediction archives
    image_cap: int | None  # None: the phase takes no algorithm images
    file_cap: int
    body_cap: int


def upload_plan(settings: Settings, phase: Phase) -> UploadPlan:
    return UploadPlan(
        phase=phase.name,
        kind=phase.kind,
        archive_cap=settings.max_upload_bytes if takes_archives(phase) else None,
        image_cap=phase.image_max_bytes if takes_images(phase) else None,
        file_cap=file_cap(settings, phase),
        body_cap=body_cap(settings, phase),
    )


def case_limits(phase: Phase) -> dict[str, Any]:
    """What each case of an algorithm phase runs under."""
    return {
        "cases": phase.n_inputs,
        "seconds": phase.case_seconds,
        "memory_mb": phase.case_memory_mb,
        "cpus": phase.case_cpus,
        "pids": phase.case_pids,
        "gpu": phase.case_gpu,
        "tmp_mb": phase.case_tmp_mb,
        "output_mb": phase.case_output_mb,
        "network": False,
    }


def submission_limits(
    session: Session,
    settings: Settings,
    principal: Principal,
    phase_name: str,
    task: int,
    *,
    dry_run: bool,
    size: int | None = None,
) -> dict[str, Any]:
    """The limits an upload of ``principal`` to ``phase_name``/``task`` meets; raises the
    error the upload itself would get (unknown phase or task, closed phase, quota,
    allowances, with ``size`` the dry-run bytes) before any byte is sent."""
    phase = precheck_submission(session, principal, phase_name, task, dry_run=dry_run, size=size)
    team_id = principal.team_id or 0
    now = utcnow()
    used = len(counted_submission_times(session, phase, team_id, task, now=now))
    allowances = allowance_summary(session, phase, team_id, task, now=now)
    images = takes_images(phase)
    return {
        "phase": phase.name,
        "task": task,
        "dry_run": dry_run,
        "kind": phase.kind,
        "max_upload_bytes": file_cap(settings, phase),
        "max_archive_bytes": settings.max_upload_bytes if takes_archives(phase) else None,
        "max_image_bytes": phase.image_max_bytes if images else None,
        "max_model_bytes": model_cap(phase) if images else None,
        "accepted_types": accepted_types(phase, task),
        "model_types": MODEL_TYPES if images else [],
        "case_limits": case_limits(phase) if images else None,
        "quota": {
            "limit": phase.daily_limit,
            "used": used,
            "left": max(0, phase.daily_limit - used),
        },
        "dry_runs": allowances["dry_runs"],
        "failed": allowances["failed"],
    }
