"""Reading a participant's Task 2/3 prediction table (SPEC section 2).

Accepted layouts, found under the submission root (a folder) or given as a file:

- a CSV file with the header ``PatientID,Prediction`` (a UTF-8 BOM and ``;`` or tab
  delimiters are tolerated);
- a JSON file holding a list of ``{"PatientID": ..., "Prediction": ...}`` objects, or
  one object ``{PatientID: value}``;
- one folder per case, ``<PatientID>/rfs.json`` (Task 2) or
  ``<PatientID>/hpv-status.json`` (Task 3), each holding one bare JSON value: what
  grand-challenge algorithm containers write.

Everything is validated before anything is scored and every problem is reported at
once, each message naming the file and case, what was expected, what was found and
what to do. Files are size-checked before they are read; JSON nesting is measured
before it is parsed. Nothing here raises anything but :class:`SubmissionRejected`
for a bad submission.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Union

import numpy as np

from evaluator.errors import (
    ExtraCaseError,
    FormatError,
    LimitError,
    MissingCaseError,
    SubmissionError,
    SubmissionRejected,
    TableError,
)
from evaluator.protocol import Limits

if TYPE_CHECKING:
    from evaluator.io.archive import Member, TreePath

# a folder or file on disk, or one of an archive read in place (never extracted)
AnyPath = Union[Path, "TreePath"]

__all__ = [
    "CASE_FILES",
    "ID_COLUMN",
    "PREDICTION_COLUMN",
    "LoadedTable",
    "PredictionEntry",
    "decode_text",
    "json_depth",
    "load_entries",
    "read_predictions",
    "sniff_delimiter",
]

ID_COLUMN: Final = "PatientID"
PREDICTION_COLUMN: Final = "Prediction"
CASE_FILES: Final[dict[int, str]] = {2: "rfs.json", 3: "hpv-status.json"}
CSV_SUFFIXES: Final = (".csv", ".tsv", ".txt")
JSON_SUFFIXES: Final = (".json",)
_IGNORED_NAMES: Final = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})

_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DECIMAL_COMMA_RE = re.compile(r"[+-]?\d+,\d+")
_NON_FINITE_WORDS = frozenset(
    {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
)
_TRUE_WORDS = frozenset({"true"})
_FALSE_WORDS = frozenset({"false"})
# A JSON string literal, matched possessively so that long strings cost linear time.
_JSON_STRING_RE = re.compile(r'"(?:[^"\\]++|\\.)*+"')
_NOT_BRACKET_RE = re.compile(r"[^\[\]{}]+")


# -- small shared helpers (also used by evaluator.io.clinical) ----------------------
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


def json_depth(text: str) -> int:
    """The deepest bracket nesting of a JSON text, measured without parsing it.

    Strings are blanked first, so brackets inside them do not count. Linear time and
    no recursion, so a hostile ``[[[[...`` costs nothing.
    """
    stripped = _NOT_BRACKET_RE.sub("", _JSON_STRING_RE.sub("", text))
    if not stripped:
        return 0
    codes = np.frombuffer(stripped.encode("ascii"), dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int64)
    return int(np.cumsum(steps).max(initial=0))


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its list of (key, value) pairs: keeps duplicate keys visible."""


class _Broken:
    """Marks an entry whose problem was already reported (the case is present)."""


_BROKEN: Final = _Broken()


@dataclass(frozen=True)
class PredictionEntry:
    """One prediction as found in the submission, not yet validated."""

    patient_id: object  # a str when well formed
    raw: object  # CSV cell text, a JSON value, or _BROKEN
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


# -- what the task expects ----------------------------------------------------------
def _expected(task: int) -> str:
    if task == 2:
        return "a finite risk score (a number, higher = earlier recurrence)"
    return "a probability of HPV positive in [0, 1], or true/false"


def _example(task: int) -> str:
    return "0.42" if task == 3 else "1.37"


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {_short(value)}"
    if isinstance(value, _Pairs):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"{_short(value)}"


# -- value conversion ---------------------------------------------------------------
def _convert(raw: object, *, task: int, from_text: bool) -> float | str:
    """The prediction as a float, or the text of the problem (what was found and why)."""
    if from_text:
        assert isinstance(raw, str)
        text = raw.strip()
        low = text.lower()
        if not text:
            return "the value is empty"
        if task == 3 and low in _TRUE_WORDS:
            return 1.0
        if task == 3 and low in _FALSE_WORDS:
            return 0.0
        if low in _NON_FINITE_WORDS:
            return f"the value {text!r} is not a finite number"
        if _NUMBER_RE.fullmatch(text):
            value = float(text)
            if not math.isfinite(value):
                return f"the value {_short(text)} is too large to be a finite number"
        elif _DECIMAL_COMMA_RE.fullmatch(text):
            return (
                f"the value {text!r} uses a decimal comma; write a decimal point "
                f"({text.replace(',', '.')})"
            )
        else:
            return f"the value {_short(text)} is not a number"
    else:
        if raw is None:
            return "the value is empty (null)"
        if isinstance(raw, bool):
            if task == 3:
                return 1.0 if raw else 0.0
            return f"the value is {_json_kind(raw)}, not a number"
        if isinstance(raw, str):
            low = raw.strip().lower()
            if task == 3 and low in _TRUE_WORDS:
                return 1.0
            if task == 3 and low in _FALSE_WORDS:
                return 0.0
            if not raw.strip():
                return "the value is an empty string"
            return f"the value is {_json_kind(raw)}, not a number (write numbers without quotes)"
        if isinstance(raw, int):
            try:
                value = float(raw)
            except OverflowError:
                return "the value is too large to be a finite number"
        elif isinstance(raw, float):
            value = raw
            if math.isnan(value):
                return "the value is NaN, not a finite number"
            if math.isinf(value):
                return f"the value is {'-' if value < 0 else ''}Infinity, not a finite number"
        else:
            return f"the value is {_json_kind(raw)}, not a number"
    if task == 3 and not (0.0 <= value <= 1.0):
        return f"the probability {value!r} is outside [0, 1]"
    return value


# -- readers ------------------------------------------------------------------------
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


TABLE_BYTES_BASE: Final = 1 << 20
TABLE_BYTES_PER_ROW: Final = 1024


def table_bytes_limit(n_rows: int, limits: Limits) -> int:
    """The most bytes a prediction table of ``n_rows`` cases may take: 1 MiB plus 1 KiB
    per row (a row of a CSV takes about 30 bytes, of pretty-printed JSON about 60), and
    never more than ``limits.max_table_bytes``."""
    return min(limits.max_table_bytes, TABLE_BYTES_BASE + TABLE_BYTES_PER_ROW * n_rows)


def wanted_member(m: Member) -> bool:
    """Whether an archive member is read for a Task 2/3 submission: a table file at the
    top (or in a single top folder), or a per-case value file in a case folder. Others
    are listed, never read."""
    parts = m.name.split("/")
    if parts[-1] in CASE_FILES.values():
        return len(parts) <= 3
    suffix = Path(parts[-1]).suffix.lower()
    return len(parts) <= 2 and suffix in CSV_SUFFIXES + JSON_SUFFIXES


def _read_text(
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


def _too_many_rows(name: str, *, limits: Limits) -> LimitError:
    return LimitError(
        name,
        f"{name}: the table has more than {limits.max_table_rows:,} rows; one row per case "
        "is expected (a few hundred), check that you uploaded the right file",
    )


def _header_help() -> str:
    return f"the first line must be the header '{ID_COLUMN},{PREDICTION_COLUMN}'"


def _read_csv(path: AnyPath, name: str, *, limits: Limits) -> LoadedTable:
    text, problem = _read_text(path, name, limits=limits)
    if text is None:
        assert problem is not None
        return LoadedTable(name, None, [problem])
    if not text.strip():
        return LoadedTable(
            name,
            None,
            [
                TableError(
                    name, f"{name}: the file is empty; {_header_help()}, then one line per case"
                )
            ],
        )
    if "\0" in text:
        return LoadedTable(
            name,
            None,
            [
                TableError(
                    name,
                    f"{name}: the file holds NUL bytes, it is not a text table; "
                    "export the table as CSV text",
                )
            ],
        )
    first_line = next(line for line in text.splitlines() if line.strip())
    delimiter = sniff_delimiter(first_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    entries: list[PredictionEntry] = []
    problems: list[SubmissionError] = []
    header: list[str] | None = None
    id_ix = pred_ix = -1
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            line = reader.line_num
            if header is None:
                header = _without_trailing_empty([cell.strip() for cell in row])
                header_problem = _check_header(header, name)
                if header_problem is not None:
                    return LoadedTable(name, None, [header_problem])
                lowered = [h.lower() for h in header]
                id_ix = lowered.index(ID_COLUMN.lower())
                pred_ix = lowered.index(PREDICTION_COLUMN.lower())
                continue
            if len(entries) + len(problems) >= limits.max_table_rows:
                return LoadedTable(name, None, [_too_many_rows(name, limits=limits)])
            where = f"{name} line {line}"
            if len(row) > len(header):  # tolerate trailing empty cells ("a,b,,")
                row = row[: len(header)] + _without_trailing_empty(row[len(header) :])
            if len(row) != len(header):
                hint = ""
                if len(row) > len(header) and delimiter == ",":
                    hint = " (a decimal comma? write 0.42, not 0,42)"
                problems.append(
                    TableError(
                        (row[id_ix].strip() if id_ix < len(row) else "") or name,
                        f"{where}: expected {len(header)} fields ({', '.join(header)}), found "
                        f"{len(row)}: {_short(delimiter.join(row), 60)}{hint}; write one "
                        "PatientID and one Prediction per line",
                    )
                )
                if id_ix < len(row) and row[id_ix].strip():
                    entries.append(PredictionEntry(row[id_ix], _BROKEN, where, True))
                continue
            entries.append(PredictionEntry(row[id_ix], row[pred_ix], where, True))
    except csv.Error as exc:
        return LoadedTable(
            name,
            None,
            [
                TableError(
                    name,
                    f"{name} line {reader.line_num}: not a readable CSV table ({exc}); "
                    "export the table as plain CSV",
                )
            ],
        )
    if header is None:  # pragma: no cover - text.strip() was non-empty
        return LoadedTable(name, None, [TableError(name, f"{name}: no header; {_header_help()}")])
    return LoadedTable(name, entries, problems)


def _without_trailing_empty(cells: list[str]) -> list[str]:
    end = len(cells)
    while end > 0 and not cells[end - 1].strip():
        end -= 1
    return cells[:end]


def _check_header(header: list[str], name: str) -> TableError | None:
    lowered = [h.lower() for h in header]
    found = ", ".join(repr(h) for h in header)
    expected = f"exactly the columns {ID_COLUMN}, {PREDICTION_COLUMN}"
    has_id = lowered.count(ID_COLUMN.lower())
    has_pred = lowered.count(PREDICTION_COLUMN.lower())
    if has_id == 1 and has_pred == 1 and len(header) == 2:
        return None
    if has_id == 0 and has_pred == 0:
        looks_like_data = len(header) >= 2 and (
            _NUMBER_RE.fullmatch(header[-1]) is not None
            or header[-1].lower() in _NON_FINITE_WORDS | _TRUE_WORDS | _FALSE_WORDS
        )
        if looks_like_data:
            return TableError(
                name,
                f"{name}: no header; the first line ({found}) looks like data. "
                f"{_header_help()[0].upper()}{_header_help()[1:]}",
            )
        return TableError(
            name,
            f"{name}: wrong columns: found {found}; expected {expected}. "
            "Rename the columns (the first line is the header)",
        )
    if has_id > 1 or has_pred > 1:
        return TableError(
            name,
            f"{name}: duplicate column names: found {found}; expected {expected}",
        )
    missing = [c for c, n in ((ID_COLUMN, has_id), (PREDICTION_COLUMN, has_pred)) if n == 0]
    if missing:
        return TableError(
            name,
            f"{name}: missing column {', '.join(missing)}: found {found}; expected {expected}",
        )
    extra = [
        repr(h) for h in header if h.lower() not in (ID_COLUMN.lower(), PREDICTION_COLUMN.lower())
    ]
    hint = (
        " (pandas writes an unnamed index column: use to_csv(..., index=False))"
        if "''" in extra
        else ""
    )
    return TableError(
        name,
        f"{name}: unexpected column(s) {', '.join(extra)}: found {found}; expected {expected}; "
        f"remove the other columns{hint}",
    )


def _parse_json(text: str, name: str, *, limits: Limits) -> tuple[Any, SubmissionError | None]:
    depth = json_depth(text)
    if depth > limits.max_nesting:
        return None, TableError(
            name,
            f"{name}: JSON nested {depth} levels deep, more than the limit of "
            f"{limits.max_nesting}; a prediction table needs at most 2",
        )
    # every entry but the last is followed by a comma (two per {"PatientID", "Prediction"}
    # object): counted outside strings, before parsing, so a huge table is refused cheaply
    if _JSON_STRING_RE.sub("", text).count(",") > 2 * limits.max_table_rows + 1:
        return None, _too_many_rows(name, limits=limits)

    def constant(word: str) -> float:  # NaN, Infinity, -Infinity literals
        return float(word.replace("Infinity", "inf"))

    try:
        return json.loads(text, object_pairs_hook=_Pairs, parse_constant=constant), None
    except json.JSONDecodeError as exc:
        return None, TableError(
            name,
            f"{name}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "check the file with a JSON validator",
        )
    except RecursionError:
        return None, TableError(
            name, f"{name}: JSON nested too deeply; a prediction table needs at most 2 levels"
        )
    except ValueError as exc:  # e.g. an integer literal with too many digits
        return None, TableError(name, f"{name}: not valid JSON ({exc})")


def _shape_help() -> str:
    return (
        f'expected a list of {{"{ID_COLUMN}": ..., "{PREDICTION_COLUMN}": ...}} objects '
        f"or one object {{{ID_COLUMN}: value}}"
    )


def _read_json(path: AnyPath, name: str, *, limits: Limits) -> LoadedTable:
    text, problem = _read_text(path, name, limits=limits)
    if text is None:
        assert problem is not None
        return LoadedTable(name, None, [problem])
    if not text.strip():
        return LoadedTable(
            name, None, [TableError(name, f"{name}: the file is empty; {_shape_help()}")]
        )
    data, problem = _parse_json(text, name, limits=limits)
    if problem is not None:
        return LoadedTable(name, None, [problem])
    if isinstance(data, list) and len(data) > limits.max_table_rows:
        return LoadedTable(name, None, [_too_many_rows(name, limits=limits)])
    entries: list[PredictionEntry] = []
    problems: list[SubmissionError] = []
    if isinstance(data, _Pairs):
        keys = {str(k).strip().lower() for k, _ in data}
        if keys and keys <= {ID_COLUMN.lower(), PREDICTION_COLUMN.lower()}:
            return LoadedTable(
                name,
                None,
                [
                    TableError(
                        name,
                        f"{name}: this looks like a column-oriented table (keys "
                        f"{', '.join(k for k, _ in data)}); {_shape_help()} "
                        "(pandas: to_json(orient='records'))",
                    )
                ],
            )
        for key, value in data:
            entries.append(PredictionEntry(key, value, f"{name} key {_short(key)}", False))
        return LoadedTable(name, entries, problems)
    if isinstance(data, list):
        for i, item in enumerate(data, start=1):
            where = f"{name} item {i}"
            if not isinstance(item, _Pairs):
                problems.append(
                    TableError(name, f"{where}: found {_json_kind(item)}; {_shape_help()}")
                )
                continue
            by_key: dict[str, list[tuple[str, Any]]] = {}
            for k, v in item:
                by_key.setdefault(k.strip().lower(), []).append((k, v))
            ids = by_key.get(ID_COLUMN.lower(), [])
            preds = by_key.get(PREDICTION_COLUMN.lower(), [])
            found = ", ".join(repr(k) for k, _ in item) or "no keys"
            pid = ids[0][1] if len(ids) == 1 else None
            case = pid.strip() if isinstance(pid, str) else name
            if len(ids) != 1 or len(preds) != 1 or len(item) != 2:
                problems.append(
                    TableError(
                        case,
                        f"{where}: found the keys {found}; expected exactly the keys "
                        f'"{ID_COLUMN}" and "{PREDICTION_COLUMN}"',
                    )
                )
                if isinstance(pid, str):
                    entries.append(PredictionEntry(pid, _BROKEN, where, False))
                continue
            entries.append(PredictionEntry(ids[0][1], preds[0][1], where, False))
        return LoadedTable(name, entries, problems)
    return LoadedTable(
        name, None, [TableError(name, f"{name}: found {_json_kind(data)}; {_shape_help()}")]
    )


def _read_case_value(
    path: AnyPath, where: str, *, task: int, limits: Limits
) -> tuple[Any, SubmissionError | None]:
    text, problem = _read_text(path, where, limits=limits)
    if text is None:
        return None, problem
    if not text.strip():
        return None, TableError(
            where, f"{where}: the file is empty; write one JSON value such as {_example(task)}"
        )
    return _parse_json(text, where, limits=limits)


def _read_case_folders(
    root: AnyPath, folders: list[AnyPath], *, task: int, limits: Limits
) -> LoadedTable:
    case_file = CASE_FILES[task]
    entries: list[PredictionEntry] = []
    problems: list[SubmissionError] = []
    for folder in folders:
        pid = folder.name
        where = f"{folder.name}/{case_file}"
        path = folder / case_file
        if not path.is_file():
            inside = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
            listing = ", ".join(inside[:5]) + (" ..." if len(inside) > 5 else "") or "nothing"
            problems.append(
                FormatError(
                    pid.strip(),
                    f"{folder.name}/: no {case_file} (found: {listing}); each case folder must "
                    f"hold {case_file} with one JSON value such as {_example(task)}",
                )
            )
            entries.append(PredictionEntry(pid, _BROKEN, where, False))
            continue
        value, problem = _read_case_value(path, where, task=task, limits=limits)
        if problem is not None:
            problems.append(type(problem)(pid.strip(), problem.message))
            entries.append(PredictionEntry(pid, _BROKEN, where, False))
            continue
        entries.append(PredictionEntry(pid, value, where, False))
    return LoadedTable(f"<PatientID>/{case_file}", entries, problems, case_file=case_file)


def _visible(path: AnyPath) -> bool:
    return not path.name.startswith(".") and path.name not in _IGNORED_NAMES


def _table_kind(path: AnyPath) -> str | None:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in JSON_SUFFIXES:
        return "json"
    return None


def _layout_help(task: int) -> str:
    return (
        f"expected one table file (.csv with the header {ID_COLUMN},{PREDICTION_COLUMN}, or "
        f".json) or one folder per case holding <PatientID>/{CASE_FILES[task]}"
    )


def load_entries(root: AnyPath, *, task: int, limits: Limits) -> LoadedTable:
    """Find the table (or the per-case folders) under ``root`` and read its entries."""
    if task not in CASE_FILES:
        raise ValueError(f"prediction tables exist for tasks 2 and 3, not {task!r}")
    if root.is_file():
        name = root.name
        kind = _table_kind(root)
        if kind == "csv":
            return _read_csv(root, name, limits=limits)
        if kind == "json":
            return _read_json(root, name, limits=limits)
        hint = (
            " (export spreadsheets as CSV)"
            if root.suffix.lower() in (".xlsx", ".xls", ".ods")
            else ""
        )
        return LoadedTable(
            name,
            None,
            [TableError(name, f"{name}: not a .csv or .json file{hint}; {_layout_help(task)}")],
        )
    if not root.is_dir():
        return LoadedTable(root.name, None, [FormatError(root.name, f"{root.name}: not found")])
    children = sorted((p for p in root.iterdir() if _visible(p)), key=lambda p: p.name)
    case_file = CASE_FILES[task]
    loose = [p for p in children if p.is_file() and p.name in CASE_FILES.values()]
    tables = [
        p
        for p in children
        if p.is_file() and _table_kind(p) is not None and p.name not in CASE_FILES.values()
    ]
    folders = [p for p in children if p.is_dir()]
    case_folders = [p for p in folders if (p / case_file).is_file()]
    found = ", ".join(p.name + ("/" if p.is_dir() else "") for p in children[:10])
    found += " ..." if len(children) > 10 else ""
    if len(tables) > 1:
        return LoadedTable(
            root.name,
            None,
            [
                TableError(
                    "submission",
                    f"the submission holds {len(tables)} table files ({', '.join(p.name for p in tables)}); "
                    "keep exactly one",
                )
            ],
        )
    if len(tables) == 1 and case_folders:
        return LoadedTable(
            root.name,
            None,
            [
                TableError(
                    "submission",
                    f"the submission holds both a table ({tables[0].name}) and per-case folders "
                    f"with {case_file} ({len(case_folders)}); keep one of the two",
                )
            ],
        )
    if len(tables) == 1:
        table = tables[0]
        if _table_kind(table) == "csv":
            return _read_csv(table, table.name, limits=limits)
        return _read_json(table, table.name, limits=limits)
    if case_folders:
        return _read_case_folders(root, folders, task=task, limits=limits)
    other = f"; found: {found}" if found else "; the submission is empty"
    wrong_task = [
        f"{p.name}/{f}" for p in folders for f in CASE_FILES.values() if (p / f).is_file()
    ]
    if wrong_task:
        other += f" (per-case files for the other task, e.g. {wrong_task[0]})"
    if loose:
        other += (
            f" ({loose[0].name} must sit in a folder named after its case, "
            f"<PatientID>/{loose[0].name})"
        )
    return LoadedTable(
        root.name,
        None,
        [TableError("submission", f"no prediction table found: {_layout_help(task)}{other}")],
    )


# -- validation against the phase's cases ---------------------------------------------
def _normalised(patient_id: str) -> str:
    return re.sub(r"[\s_\-]+", "", patient_id).lower()


def read_predictions(
    root: AnyPath,
    *,
    task: int,
    case_ids: Sequence[str],
    ignored_ids: Collection[str] = (),
    ignore_extra_cases: bool = False,
    limits: Limits | None = None,
) -> dict[str, float]:
    """The validated predictions of a Task 2/3 submission, keyed by patient id.

    ``case_ids`` are the cases of the phase (each needs exactly one prediction).
    ``ignored_ids`` are ids that may appear and are silently dropped (cases whose
    ground-truth target is unknown). Ids not in either are rejected unless
    ``ignore_extra_cases``. Raises :class:`SubmissionRejected` listing every problem.
    """
    limits = limits or Limits()
    cap = table_bytes_limit(len(case_ids) + len(ignored_ids), limits)
    limits = replace(limits, max_table_bytes=cap)
    source = load_entries(root, task=task, limits=limits)
    problems = list(source.problems)
    if source.entries is None:
        raise SubmissionRejected(problems)
    if not source.entries and not problems:
        raise SubmissionRejected(
            [
                TableError(
                    source.name,
                    f"{source.name}: holds no predictions; expected one per case "
                    f"({len(case_ids)} cases, e.g. {', '.join(case_ids[:3])})",
                )
            ]
        )
    expected = set(case_ids)
    ignored = set(ignored_ids)
    by_norm = {_normalised(c): c for c in case_ids}
    where_by_id: dict[str, list[str]] = {}
    values: dict[str, float] = {}
    for entry in source.entries:
        pid_raw = entry.patient_id
        if not isinstance(pid_raw, str):
            problems.append(
                TableError(
                    source.name,
                    f"{entry.where}: {ID_COLUMN} is {_json_kind(pid_raw)}; expected a string "
                    f"such as {_short(case_ids[0] if case_ids else 'CHUM-001')}",
                )
            )
            continue
        pid = pid_raw.strip()
        if not pid:
            problems.append(
                TableError(
                    source.name, f"{entry.where}: empty {ID_COLUMN}; every row names its case"
                )
            )
            continue
        where_by_id.setdefault(pid, []).append(entry.where)
        if pid not in expected and pid not in ignored and not ignore_extra_cases:
            guess = by_norm.get(_normalised(pid))
            hint = f" Did you mean {guess!r}? Ids must match exactly." if guess else ""
            problems.append(
                ExtraCaseError(
                    pid,
                    f"{entry.where}: {pid!r} is not a case of this phase; remove it.{hint}",
                )
            )
        if isinstance(entry.raw, _Broken):
            continue
        converted = _convert(entry.raw, task=task, from_text=entry.from_text)
        if isinstance(converted, str):
            problems.append(
                TableError(
                    pid,
                    f"{entry.where} ({pid}): {converted}; expected {_expected(task)}, "
                    f"such as {_example(task)}",
                )
            )
            continue
        if len(where_by_id[pid]) == 1:
            values[pid] = converted
    for pid, wheres in where_by_id.items():
        if len(wheres) > 1:
            problems.append(
                TableError(
                    pid,
                    f"{source.name}: {pid} appears {len(wheres)} times ({'; '.join(wheres)}); "
                    "keep exactly one prediction per case",
                )
            )
    for pid in case_ids:
        if pid not in where_by_id:
            if source.case_file:
                todo = (
                    f"no folder {pid}/ with {source.case_file}; add it, holding {_expected(task)}"
                )
            else:
                todo = f"no prediction for {pid}; add one with {_expected(task)}"
            problems.append(
                MissingCaseError(pid, f"{source.name}: {todo}; every case of the phase needs one")
            )
    if problems:
        raise SubmissionRejected(problems)
    return {pid: values[pid] for pid in case_ids}
