"""Reading a CSV prediction table: the header ``PatientID,Prediction`` (a UTF-8 BOM and
``;`` or tab delimiters tolerated), then one row per case."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

from evaluator.errors import SubmissionError, TableError
from evaluator.io.table_text import (
    BROKEN,
    ID_COLUMN,
    PREDICTION_COLUMN,
    AnyPath,
    LoadedTable,
    PredictionEntry,
    read_text,
    short,
    sniff_delimiter,
    too_many_rows,
)
from evaluator.io.table_values import FALSE_WORDS, NON_FINITE_WORDS, NUMBER_RE, TRUE_WORDS
from evaluator.protocol import Limits


def _header_help() -> str:
    return f"the first line must be the header '{ID_COLUMN},{PREDICTION_COLUMN}'"


def read_csv(path: AnyPath, name: str, *, limits: Limits, task: int | None = None) -> LoadedTable:
    """The entries of the CSV table ``path`` (``name`` in messages); ``task`` (2 or 3)
    lets a header say when it is the other task's table."""
    text, problem = read_text(path, name, limits=limits)
    if text is None:
        assert problem is not None
        return LoadedTable(name, None, [problem])
    problem = _not_a_table(text, name)
    if problem is not None:
        return LoadedTable(name, None, [problem])
    first_line = next(line for line in text.splitlines() if line.strip())
    delimiter = sniff_delimiter(first_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    numbered = ((reader.line_num, row) for row in reader)
    try:
        return _read_rows(numbered, name, delimiter, limits=limits, task=task)
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


def _not_a_table(text: str, name: str) -> TableError | None:
    if not text.strip():
        return TableError(
            name, f"{name}: the file is empty; {_header_help()}, then one line per case"
        )
    if "\0" in text:
        return TableError(
            name,
            f"{name}: the file holds NUL bytes, it is not a text table; "
            "export the table as CSV text",
        )
    return None


class _Columns:
    """A table's header and where its two columns are."""

    def __init__(self, header: list[str]) -> None:
        self.header = header
        lowered = [h.lower() for h in header]
        self.id_ix = lowered.index(ID_COLUMN.lower())
        self.pred_ix = lowered.index(PREDICTION_COLUMN.lower())


def _read_rows(
    rows: Iterator[tuple[int, list[str]]],
    name: str,
    delimiter: str,
    *,
    limits: Limits,
    task: int | None = None,
) -> LoadedTable:
    """The header (checked), then one entry per row that is not blank; ``rows`` are
    (line number, cells)."""
    entries: list[PredictionEntry] = []
    problems: list[SubmissionError] = []
    columns: _Columns | None = None
    for line, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        if columns is None:
            header = _without_trailing_empty([cell.strip() for cell in row])
            header_problem = _check_header(header, name)
            if header_problem is not None:
                hint = _other_task_column(header, task)
                if hint:
                    header_problem = TableError(name, f"{header_problem.message}{hint}")
                return LoadedTable(name, None, [header_problem])
            columns = _Columns(header)
            continue
        if len(entries) + len(problems) >= limits.max_table_rows:
            return LoadedTable(name, None, [too_many_rows(name, limits=limits)])
        entry, problem = _row_entry(row, columns, f"{name} line {line}", name, delimiter)
        if problem is not None:
            problems.append(problem)
        if entry is not None:
            entries.append(entry)
    if columns is None:  # pragma: no cover - the text was not blank
        return LoadedTable(name, None, [TableError(name, f"{name}: no header; {_header_help()}")])
    return LoadedTable(name, entries, problems)


def _row_entry(
    row: list[str], columns: _Columns, where: str, name: str, delimiter: str
) -> tuple[PredictionEntry | None, TableError | None]:
    """The entry of one row; for a row with the wrong number of fields, its problem
    and (when it names its case) an entry marked broken."""
    header, id_ix = columns.header, columns.id_ix
    if len(row) > len(header):  # tolerate trailing empty cells ("a,b,,")
        row = row[: len(header)] + _without_trailing_empty(row[len(header) :])
    if len(row) == len(header):
        return PredictionEntry(row[id_ix], row[columns.pred_ix], where, True), None
    hint = ""
    if len(row) > len(header) and delimiter == ",":
        hint = " (a decimal comma? write 0.42, not 0,42)"
    problem = TableError(
        (row[id_ix].strip() if id_ix < len(row) else "") or name,
        f"{where}: expected {len(header)} fields ({', '.join(header)}), found "
        f"{len(row)}: {short(delimiter.join(row), 60)}{hint}; write one "
        "PatientID and one Prediction per line",
    )
    entry = None
    if id_ix < len(row) and row[id_ix].strip():
        entry = PredictionEntry(row[id_ix], BROKEN, where, True)
    return entry, problem


# column names that say which table task a table was made for
_TASK_COLUMNS = {
    3: re.compile(r"hpv|p16", re.IGNORECASE),
    2: re.compile(r"rfs|risk|surviv|relapse|recurr|hazard", re.IGNORECASE),
}
_TASK_WHAT = {2: "Task 2 (RFS) table", 3: "Task 3 (HPV status) table"}


def _other_task_column(header: list[str], task: int | None) -> str:
    """A hint when a refused header has a column named like the other table task's
    target (HPV in a Task 2 upload, RFS or risk in a Task 3 one)."""
    if task not in (2, 3):
        return ""
    other = 5 - task
    found = [h for h in header if _TASK_COLUMNS[other].search(h)]
    if not found or any(_TASK_COLUMNS[task].search(h) for h in header):
        return ""
    return (
        f". A column named like {'HPV' if other == 3 else 'RFS'} ({found[0]!r}): this "
        f"looks like a {_TASK_WHAT[other]}; upload it to Task {other}, or if it is this "
        f"task's prediction, name the column {PREDICTION_COLUMN}"
    )


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
            NUMBER_RE.fullmatch(header[-1]) is not None
            or header[-1].lower() in NON_FINITE_WORDS | TRUE_WORDS | FALSE_WORDS
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
