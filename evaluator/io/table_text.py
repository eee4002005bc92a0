"""What the Task 2/3 table readers share: the column names, the entries they find, and
reading a table file as text within its size cap."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Union

from evaluator.errors import FormatError, LimitError, SubmissionError, TableError
from evaluator.protocol import Limits

if TYPE_CHECKING:
    from evaluator.io.tree import TreePath

# a folder or file on disk, or one of an archive read in place (never extracted)
AnyPath = Union[Path, "TreePath"]


ID_COLUMN: Final = "PatientID"
PREDICTION_COLUMN: Final = "Prediction"
CASE_FILES: Final[dict[int, str]] = {2: "rfs.json", 3: "hpv-status.json"}


def decode_text(data: bytes) -> str:
    """Decode a text file: UTF-8 with or without a BOM, or UTF-16 with a BOM.

    Raises :class:`UnicodeDecodeError` for anything else.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    return data.decode("utf-8-sig")


def sniff_delimiter(header_line: str) -> str:
    """The delimiter of a CSV header line: the most frequent of ``,`` ``;`` and tab
    (``,`` when none occurs or on a tie)."""
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


class Pairs(list[tuple[str, Any]]):
    """A JSON object as its list of (key, value) pairs: keeps duplicate keys visible."""


class Broken:
    """Marks an entry whose problem was already reported (the case is present)."""


BROKEN: Final = Broken()


@dataclass(frozen=True)
class PredictionEntry:
    """One prediction as found in the submission, not yet validated."""

    patient_id: object  # a str when well formed
    raw: object  # CSV cell text, a JSON value, or BROKEN
    where: str  # "predictions.csv line 4", "predictions.json item 3", "CHUM-001/rfs.json"
    from_text: bool  # raw is CSV text (not a JSON value)


@dataclass(frozen=True)
class LoadedTable:
    """What was read: a short name for messages, and the entries found (None when
    the file's structure was unusable)."""

    name: str
    entries: list[PredictionEntry] | None
    problems: list[SubmissionError]
    case_file: str | None = None  # set for the per-case folder layout


def short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {short(value)}"
    if isinstance(value, Pairs):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"{short(value)}"


def _too_big(path: AnyPath, name: str, *, limits: Limits) -> LimitError | None:
    size = path.stat().st_size
    if size > limits.max_table_bytes:
        return _too_big_message(name, size, limits=limits)
    return None


def _too_big_message(name: str, size: int, *, limits: Limits) -> LimitError:
    return LimitError(
        name,
        f"{name}: the file is {size:,} bytes, more than the {limits.max_table_bytes:,}-byte "
        "limit for a prediction table of this phase; a table of a few hundred cases takes "
        "a few kilobytes, check that you uploaded the right file",
    )


def _read_capped(path: AnyPath, cap: int) -> bytes:
    """At most ``cap + 1`` bytes of a file: never more, whatever its size says."""
    if isinstance(path, Path):
        with open(path, "rb") as f:
            return f.read(cap + 1)
    return path.read_bytes()[: cap + 1]


def read_text(
    path: AnyPath, name: str, *, limits: Limits
) -> tuple[str | None, SubmissionError | None]:
    big = _too_big(path, name, limits=limits)
    if big is not None:
        return None, big
    try:
        data = _read_capped(path, limits.max_table_bytes)
    except OSError as exc:
        return None, FormatError(name, f"{name}: the file cannot be read ({exc.strerror})")
    if len(data) > limits.max_table_bytes:  # grew after it was measured
        return None, _too_big_message(name, len(data), limits=limits)
    try:
        return decode_text(data), None
    except UnicodeDecodeError as exc:
        return None, TableError(
            name,
            f"{name}: the file is not UTF-8 text (undecodable byte at offset {exc.start}); "
            "save it as UTF-8 (CSV UTF-8 in spreadsheet programs)",
        )


def too_many_rows(name: str, *, limits: Limits) -> LimitError:
    return LimitError(
        name,
        f"{name}: the table has more than {limits.max_table_rows:,} rows; one row per case "
        "is expected (a few hundred), check that you uploaded the right file",
    )
