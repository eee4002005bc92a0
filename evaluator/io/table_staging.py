"""Reading a participant's staging predictions (HECKTOR 2026 Task 3).

Accepted layouts, found under the submission root (a folder) or given as a file:

- a CSV file with the header ``PatientID,T-stage,N-stage`` (a UTF-8 BOM and ``;`` or
  tab delimiters are tolerated; the column names in any case);
- one folder per case, ``<PatientID>/t-stage.json`` and ``<PatientID>/n-stage.json``,
  each holding one bare JSON string such as ``"T2"``: what grand-challenge algorithm
  containers write.

A stage is written as the protocol allows it (``T1``-``T4``, ``N0``-``N3``, any case,
with the aliases such as ``N2b`` -> ``N2``). Everything is validated before anything
is scored and every problem is reported at once as :class:`SubmissionRejected`, each
message naming the file and case, what was expected, what was found and what to do.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Final

from evaluator.errors import (
    ExtraCaseError,
    FormatError,
    MissingCaseError,
    SubmissionError,
    SubmissionRejected,
    TableError,
)
from evaluator.io.table_text import AnyPath, read_text, short, sniff_delimiter, too_many_rows
from evaluator.protocol import Hecktor2026Protocol, Limits

__all__ = ["STAGE_COLUMNS", "STAGE_FILES", "StagePrediction", "read_stage_predictions"]

STAGE_FILES: Final = ("t-stage.json", "n-stage.json")
STAGE_COLUMNS: Final = ("PatientID", "T-stage", "N-stage")
_CASE_FILE_BYTES: Final = 4096
_IGNORED: Final = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})


@dataclass(frozen=True)
class StagePrediction:
    t_stage: str
    n_stage: str


@dataclass
class _Entries:
    """The rows found: (patient id, T text, N text, where); None for a value already
    reported as a problem."""

    name: str
    rows: list[tuple[str, str | None, str | None, str]] = field(default_factory=list)
    problems: list[SubmissionError] = field(default_factory=list)
    folders: bool = False


def _allowed(stages: Sequence[str], protocol: Hecktor2026Protocol) -> str:
    aliases = [f"{a} -> {b}" for a, b in protocol.stage_aliases if b in stages]
    text = ", ".join(stages)
    return text + (f" (also {', '.join(aliases)}; any case)" if aliases else " (any case)")


def _read_csv(path: AnyPath, name: str, limits: Limits) -> _Entries:
    out = _Entries(name)
    text, problem = read_text(path, name, limits=limits)
    if text is None:
        assert problem is not None
        out.problems.append(problem)
        return out
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        out.problems.append(
            TableError(
                name,
                f"{name}: the file is empty; the first line must be the header "
                f"{','.join(STAGE_COLUMNS)}, then one line per case",
            )
        )
        return out
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(lines[0]))
    header: list[str] | None = None
    try:
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            if header is None:
                header = [c.strip().lower() for c in row]
                if sorted(header) != sorted(c.lower() for c in STAGE_COLUMNS):
                    out.problems.append(
                        TableError(
                            name,
                            f"{name}: wrong columns: found {', '.join(repr(c) for c in row)}; "
                            f"expected exactly the columns {', '.join(STAGE_COLUMNS)}",
                        )
                    )
                    return out
                continue
            if len(out.rows) >= limits.max_table_rows:
                out.problems = [too_many_rows(name, limits=limits)]
                return out
            where = f"{name} line {reader.line_num}"
            cells = dict(zip(header, (c.strip() for c in row), strict=False))
            if len(row) != len(header):
                out.problems.append(
                    TableError(
                        cells.get("patientid") or name,
                        f"{where}: expected {len(header)} fields, found {len(row)}: "
                        f"{short(','.join(row), 60)}",
                    )
                )
                if cells.get("patientid"):
                    out.rows.append((cells["patientid"], None, None, where))
                continue
            out.rows.append((cells["patientid"], cells["t-stage"], cells["n-stage"], where))
    except csv.Error as exc:
        out.problems.append(TableError(name, f"{name}: not a readable CSV table ({exc})"))
    return out


def _read_stage_file(path: AnyPath, where: str) -> tuple[str | None, SubmissionError | None]:
    size = path.stat().st_size
    if size > _CASE_FILE_BYTES:
        return None, TableError(
            where, f'{where}: {size:,} bytes; a stage file holds one JSON string such as "T2"'
        )
    try:
        value = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        return None, TableError(
            where, f'{where}: not valid JSON ({exc}); write one JSON string such as "T2"'
        )
    if not isinstance(value, str):
        return None, TableError(
            where,
            f'{where}: found {short(value)}; expected one JSON string such as "T2" '
            "(with the quotes)",
        )
    return value, None


def _read_folders(root: AnyPath, folders: list[AnyPath]) -> _Entries:
    out = _Entries("<PatientID>/t-stage.json, n-stage.json", folders=True)
    for folder in folders:
        pid = folder.name.strip()
        values: list[str | None] = []
        for fname in STAGE_FILES:
            where = f"{folder.name}/{fname}"
            path = folder / fname
            if not path.is_file():
                out.problems.append(
                    FormatError(
                        pid,
                        f"{where}: missing; each case folder holds t-stage.json and "
                        'n-stage.json, each with one JSON string such as "T2" / "N0"',
                    )
                )
                values.append(None)
                continue
            value, problem = _read_stage_file(path, where)
            if problem is not None:
                out.problems.append(type(problem)(pid, problem.message))
            values.append(value)
        out.rows.append((pid, values[0], values[1], f"{folder.name}/"))
    del root
    return out


def _load(root: AnyPath, limits: Limits) -> _Entries:
    if root.is_file():
        if root.suffix.lower() in (".csv", ".tsv", ".txt"):
            return _read_csv(root, root.name, limits)
        out = _Entries(root.name)
        out.problems.append(
            TableError(root.name, f"{root.name}: not a .csv file; {_layout_help()}")
        )
        return out
    children = sorted(
        (p for p in root.iterdir() if not p.name.startswith(".") and p.name not in _IGNORED),
        key=lambda p: p.name,
    )
    tables = [p for p in children if p.is_file() and p.suffix.lower() in (".csv", ".tsv", ".txt")]
    folders = [p for p in children if p.is_dir()]
    case_folders = [p for p in folders if any((p / f).is_file() for f in STAGE_FILES)]
    out = _Entries(root.name)
    if len(tables) > 1 or (tables and case_folders):
        found = ", ".join(p.name for p in tables) + (" and case folders" if case_folders else "")
        out.problems.append(
            TableError("submission", f"the submission holds {found}; keep exactly one layout")
        )
        return out
    if tables:
        return _read_csv(tables[0], tables[0].name, limits)
    if case_folders:
        return _read_folders(root, folders)
    found = ", ".join(p.name + ("/" if p.is_dir() else "") for p in children[:10]) or "nothing"
    out.problems.append(
        TableError("submission", f"no staging predictions found: {_layout_help()}; found: {found}")
    )
    return out


def _layout_help() -> str:
    return (
        f"expected one CSV table with the header {','.join(STAGE_COLUMNS)}, or one folder "
        "per case holding <PatientID>/t-stage.json and <PatientID>/n-stage.json"
    )


def _stage(
    raw: str | None, axis: str, stages: Sequence[str], protocol: Hecktor2026Protocol
) -> str | ValueError | None:
    if raw is None:
        return None
    stage = protocol.stage_of(raw)
    if stage is None or stage not in stages:
        return ValueError(
            f"{axis}-stage is {short(raw)}; expected one of {_allowed(stages, protocol)}"
        )
    return stage


def read_stage_predictions(
    root: AnyPath,
    *,
    protocol: Hecktor2026Protocol,
    case_ids: Sequence[str],
    ignored_ids: Collection[str] = (),
    limits: Limits | None = None,
) -> dict[str, StagePrediction]:
    """The validated T and N stage of every case of ``case_ids``, keyed by patient id.

    ``ignored_ids`` may appear and are dropped (cases whose true stage is unknown);
    other unknown ids are rejected unless the protocol ignores extra cases. Raises
    :class:`SubmissionRejected` listing every problem.
    """
    limits = limits or Limits()
    found = _load(root, limits)
    problems = list(found.problems)
    expected, ignored = set(case_ids), set(ignored_ids)
    seen: dict[str, list[str]] = {}
    values: dict[str, StagePrediction] = {}
    for pid_raw, t_raw, n_raw, where in found.rows:
        pid = pid_raw.strip()
        if not pid:
            problems.append(TableError(found.name, f"{where}: empty PatientID"))
            continue
        seen.setdefault(pid, []).append(where)
        if pid not in expected:
            if pid not in ignored and not protocol.ignore_extra_cases:
                problems.append(
                    ExtraCaseError(pid, f"{where}: {pid!r} is not a case of this phase; remove it")
                )
            continue
        t = _stage(t_raw, "T", protocol.t_stages, protocol)
        n = _stage(n_raw, "N", protocol.n_stages, protocol)
        for bad in (t, n):
            if isinstance(bad, ValueError):
                problems.append(TableError(pid, f"{where} ({pid}): {bad}"))
        if isinstance(t, str) and isinstance(n, str) and len(seen[pid]) == 1:
            values[pid] = StagePrediction(t, n)
    for pid, wheres in seen.items():
        if len(wheres) > 1:
            problems.append(
                TableError(
                    pid,
                    f"{found.name}: {pid} appears {len(wheres)} times ({'; '.join(wheres)}); "
                    "keep exactly one prediction per case",
                )
            )
    for pid in case_ids:
        if pid not in seen:
            todo = (
                f"no folder {pid}/ with t-stage.json and n-stage.json"
                if found.folders
                else f"no row for {pid}"
            )
            problems.append(
                MissingCaseError(
                    pid, f"{found.name}: {todo}; every case of the phase needs a T and an N stage"
                )
            )
    if problems:
        raise SubmissionRejected(problems)
    return {pid: values[pid] for pid in case_ids}
