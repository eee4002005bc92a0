"""One exception hierarchy for everything the evaluator can refuse.

Participant-facing problems are :class:`SubmissionError` instances. Each says which
file or case it concerns and carries a message written for the participant: what was
expected, what was found and what to do. Validation collects every problem of a
submission and raises them together as :class:`SubmissionRejected`, so that a
participant fixes everything in one round.

Organizer-side problems (a broken ground-truth folder) are :class:`GroundTruthError`;
they are never shown to participants.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class EvaluatorError(Exception):
    """Base class of every error the evaluator raises on purpose."""


class SubmissionError(EvaluatorError):
    """One problem with a participant's submission."""

    kind = "submission"

    def __init__(self, case: str, message: str) -> None:
        # a message that names its file first ("pred.csv line 3: ...") is not prefixed
        # with that name a second time
        named = not case or message.startswith((f"{case}:", f"{case} "))
        super().__init__(message if named else f"{case}: {message}")
        self.case = case
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"case": self.case, "kind": self.kind, "message": self.message}


class ArchiveError(SubmissionError):
    """The uploaded archive is unsafe, corrupt or of the wrong type."""

    kind = "archive"


class FormatError(SubmissionError):
    """A file cannot be read, or is not what the task expects."""

    kind = "format"


class MissingCaseError(SubmissionError):
    """A case of the phase has no prediction."""

    kind = "missing_case"


class ExtraCaseError(SubmissionError):
    """A prediction names a case that is not part of the phase."""

    kind = "extra_case"


class GeometryError(SubmissionError):
    """Shape or affine differ from the ground truth's CT grid."""

    kind = "geometry"


class LabelError(SubmissionError):
    """A label map holds values other than 0, 1, 2."""

    kind = "labels"


class TableError(SubmissionError):
    """A prediction table (Task 2/3) is malformed."""

    kind = "table"


class LimitError(SubmissionError):
    """A resource cap was exceeded (size, member count, voxels, memory, time)."""

    kind = "limit"


MAX_LISTED_PROBLEMS = 200


class SubmissionRejected(EvaluatorError):
    """The submission failed validation; nothing was scored.

    ``problems`` lists every problem found, in a stable order, up to
    :data:`MAX_LISTED_PROBLEMS`: beyond that the last entry says how many more there
    are (a hostile table of a million unknown ids must not become a million-line
    error document). ``n_problems`` is the true count.
    """

    def __init__(self, problems: Iterable[SubmissionError]) -> None:
        found: list[SubmissionError] = list(problems)
        if not found:
            raise ValueError("SubmissionRejected needs at least one problem")
        n = self.n_problems = len(found)
        if n > MAX_LISTED_PROBLEMS:
            keep = MAX_LISTED_PROBLEMS - 1
            found = [
                *found[:keep],
                SubmissionError(
                    "",
                    f"... and {n - keep:,} more problems like the ones above (not listed); "
                    "fix these and try again",
                ),
            ]
        self.problems: list[SubmissionError] = found
        head = "; ".join(str(p) for p in self.problems[:3])
        more = f" (and {n - 3} more)" if n > 3 else ""
        super().__init__(f"submission rejected, {n} problem(s): {head}{more}")

    def as_document(self) -> dict[str, object]:
        """The docs/scoring.md section 5 failure document."""
        return {"status": "failed", "errors": [p.as_dict() for p in self.problems]}


class GroundTruthError(EvaluatorError):
    """The organizer's ground truth is invalid. Lists every problem found."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        body = "\n".join(f"  - {p}" for p in self.problems[:50])
        more = f"\n  ... and {n - 50} more" if n > 50 else ""
        super().__init__(f"ground truth invalid, {n} problem(s):\n{body}{more}")


class GroundTruthChanged(EvaluatorError):
    """The organizer's ground truth changed on disk while it was being prepared: the
    copy does not hash as the source does now."""

    def __init__(self, *, copy_sha256: str, source_sha256: str) -> None:
        self.copy_sha256 = copy_sha256
        self.source_sha256 = source_sha256
        super().__init__(
            f"the copy of the ground truth hashes to {copy_sha256}, the source now to "
            f"{source_sha256}"
        )


class ScoringError(EvaluatorError):
    """A metric cannot be computed (e.g. no comparable pair for the C-index).

    Raised instead of returning a made-up number.
    """


class ScoringProcessError(EvaluatorError):
    """A process scoring cases died or failed on something that is not a problem of
    the submission (killed, out of memory, a bug): no score, and the cases named."""


@dataclass(frozen=True)
class Problem:
    """A plain record of a problem, convenient to ship across processes."""

    kind: str
    case: str
    message: str

    @classmethod
    def of(cls, err: SubmissionError) -> Problem:
        return cls(err.kind, err.case, err.message)

    def to_error(self) -> SubmissionError:
        cls = _KIND_TO_CLASS.get(self.kind, SubmissionError)
        return cls(self.case, self.message)


_KIND_TO_CLASS: dict[str, type[SubmissionError]] = {
    c.kind: c
    for c in (
        SubmissionError,
        ArchiveError,
        FormatError,
        MissingCaseError,
        ExtraCaseError,
        GeometryError,
        LabelError,
        TableError,
        LimitError,
    )
}
