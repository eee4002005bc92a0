"""What a job stores when judging did not go through: the verdict it writes on the
row, and the error records and participant messages of internal and platform
failures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.storage import SERVER_STORAGE_FULL

# The error kind of a failure that is the platform's, not the submission's (the result
# could not be stored, the judges kept dying). Submissions failed with it count neither
# in the daily quota nor in the failed-submission allowance (see app.services.allowances).
PLATFORM = "platform"

INTERNAL_ERROR = "internal error while scoring; the organizers have been notified"


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What judging decided: the status to store, the result document, the errors."""

    status: str
    doc: dict[str, Any] | None = None
    errors: list[dict[str, Any]] | None = None

    def to_report(self) -> dict[str, Any]:
        """The JSON object a judging child sends its parent."""
        return {"status": self.status, "doc": self.doc, "errors": self.errors}

    @classmethod
    def from_report(cls, report: dict[str, Any] | None) -> Verdict | None:
        if report is None or not isinstance(report.get("status"), str):
            return None
        return cls(status=report["status"], doc=report.get("doc"), errors=report.get("errors"))


def error(kind: str, message: str, case: str = "") -> dict[str, str]:
    return {"case": case, "kind": kind, "message": message}


def platform_error(message: str) -> dict[str, str]:
    """A failure of the platform (error kind :data:`PLATFORM`): refunded, never counted."""
    return error(PLATFORM, message)


def internal_error(submission_id: int) -> dict[str, str]:
    return error("internal", f"{INTERNAL_ERROR} (reference: submission {submission_id})")


def unstored_message(reason: str) -> str:
    return (
        f"the server could not store the result ({reason}); this does not count against "
        "your quota, resubmit later"
    )


def storage_full_message() -> str:
    return (
        f"the server ran out of storage while judging this submission ({SERVER_STORAGE_FULL}); "
        "this does not count against your quota, resubmit later"
    )


def lost_judges_message(attempts: int) -> str:
    return (
        f"the judging process stopped unexpectedly {attempts} times while scoring this "
        "submission (a worker crashed or was lost); the organizers have been notified; this "
        "does not count against your quota, resubmit later"
    )
