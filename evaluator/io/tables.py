"""Reading a participant's Task 2/3 prediction table (docs/scoring.md section 2).

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

import re
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from evaluator.errors import (
    ExtraCaseError,
    FormatError,
    MissingCaseError,
    SubmissionError,
    SubmissionRejected,
    TableError,
)
from evaluator.io.table_csv import read_csv
from evaluator.io.table_json import read_case_value, read_json
from evaluator.io.table_staging import STAGE_FILES
from evaluator.io.table_text import (
    BROKEN,
    CASE_FILES,
    ID_COLUMN,
    PREDICTION_COLUMN,
    AnyPath,
    Broken,
    LoadedTable,
    PredictionEntry,
    json_kind,
    short,
)
from evaluator.io.table_values import convert, example_value, expected_value
from evaluator.protocol import Limits

if TYPE_CHECKING:
    from evaluator.io.members import Member

__all__ = [
    "TABLE_BYTES_BASE",
    "TABLE_BYTES_PER_ROW",
    "load_entries",
    "read_predictions",
    "table_bytes_limit",
    "wanted_member",
]


CSV_SUFFIXES: Final = (".csv", ".tsv", ".txt")
JSON_SUFFIXES: Final = (".json",)
_IGNORED_NAMES: Final = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})


TABLE_BYTES_BASE: Final = 1 << 20
TABLE_BYTES_PER_ROW: Final = 1024


def table_bytes_limit(n_rows: int, limits: Limits) -> int:
    """The most bytes a prediction table of ``n_rows`` cases may take: 1 MiB plus 1 KiB
    per row (a row of a CSV takes about 30 bytes, of pretty-printed JSON about 60), and
    never more than ``limits.max_table_bytes``."""
    return min(limits.max_table_bytes, TABLE_BYTES_BASE + TABLE_BYTES_PER_ROW * n_rows)


def wanted_member(m: Member) -> bool:
    """Whether an archive member is read for a Task 2/3 submission: a table file at the
    top (or in a single top folder), or a per-case value file (``rfs.json``,
    ``hpv-status.json``, ``t-stage.json``, ``n-stage.json``) in a case folder. Others
    are listed, never read."""
    parts = m.name.split("/")
    if parts[-1] in CASE_FILES.values() or parts[-1] in STAGE_FILES:
        return len(parts) <= 3
    suffix = Path(parts[-1]).suffix.lower()
    return len(parts) <= 2 and suffix in CSV_SUFFIXES + JSON_SUFFIXES


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
                    f"hold {case_file} with one JSON value such as {example_value(task)}",
                )
            )
            entries.append(PredictionEntry(pid, BROKEN, where, False))
            continue
        value, problem = read_case_value(path, where, task=task, limits=limits)
        if problem is not None:
            problems.append(type(problem)(pid.strip(), problem.message))
            entries.append(PredictionEntry(pid, BROKEN, where, False))
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
        return _load_file(root, task=task, limits=limits)
    if not root.is_dir():
        return LoadedTable(root.name, None, [FormatError(root.name, f"{root.name}: not found")])
    return _load_folder(root, task=task, limits=limits)


def _load_file(path: AnyPath, *, task: int, limits: Limits) -> LoadedTable:
    name = path.name
    kind = _table_kind(path)
    if kind == "csv":
        return read_csv(path, name, limits=limits, task=task)
    if kind == "json":
        return read_json(path, name, limits=limits)
    hint = (
        " (export spreadsheets as CSV)" if path.suffix.lower() in (".xlsx", ".xls", ".ods") else ""
    )
    return LoadedTable(
        name,
        None,
        [TableError(name, f"{name}: not a .csv or .json file{hint}; {_layout_help(task)}")],
    )


def _load_folder(root: AnyPath, *, task: int, limits: Limits) -> LoadedTable:
    """One table file, or one folder per case; both, several tables or neither are
    refused."""
    children = sorted((p for p in root.iterdir() if _visible(p)), key=lambda p: p.name)
    case_file = CASE_FILES[task]
    tables = [
        p
        for p in children
        if p.is_file() and _table_kind(p) is not None and p.name not in CASE_FILES.values()
    ]
    folders = [p for p in children if p.is_dir()]
    case_folders = [p for p in folders if (p / case_file).is_file()]
    if len(tables) > 1:
        return _refused(
            root,
            f"the submission holds {len(tables)} table files "
            f"({', '.join(p.name for p in tables)}); keep exactly one",
        )
    if len(tables) == 1 and case_folders:
        return _refused(
            root,
            f"the submission holds both a table ({tables[0].name}) and per-case folders "
            f"with {case_file} ({len(case_folders)}); keep one of the two",
        )
    if len(tables) == 1:
        return _load_file(tables[0], task=task, limits=limits)
    if case_folders:
        return _read_case_folders(root, folders, task=task, limits=limits)
    return _refused(
        root,
        f"no prediction table found: {_layout_help(task)}{_what_is_there(children)}"
        f"{_other_task_hint(children)}",
    )


def _refused(root: AnyPath, message: str) -> LoadedTable:
    return LoadedTable(root.name, None, [TableError("submission", message)])


_LABEL_MAP_EXTS: Final = (".nii.gz", ".nii", ".mha", ".mhd")


def _other_task_hint(children: list[AnyPath]) -> str:
    """What a submission without a table looks like when it is one of Task 1: label
    maps at its top."""
    maps = [p for p in children if p.name.lower().endswith(_LABEL_MAP_EXTS)]
    if not maps:
        return ""
    return (
        f". This looks like a Task 1 submission (label maps: {len(maps)} file(s) such as "
        f"{maps[0].name}): upload it to Task 1"
    )


def _what_is_there(children: list[AnyPath]) -> str:
    """What a submission without a table holds, with hints for per-case files of the
    other task and for a case file outside its case folder."""
    found = ", ".join(p.name + ("/" if p.is_dir() else "") for p in children[:10])
    found += " ..." if len(children) > 10 else ""
    other = f"; found: {found}" if found else "; the submission is empty"
    folders = [p for p in children if p.is_dir()]
    wrong_task = [
        f"{p.name}/{f}" for p in folders for f in CASE_FILES.values() if (p / f).is_file()
    ]
    if wrong_task:
        other += f" (per-case files for the other task, e.g. {wrong_task[0]})"
    loose = [p for p in children if p.is_file() and p.name in CASE_FILES.values()]
    if loose:
        other += (
            f" ({loose[0].name} must sit in a folder named after its case, "
            f"<PatientID>/{loose[0].name})"
        )
    return other


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
    expected: str | None = None,
) -> dict[str, float]:
    """The validated predictions of a Task 2/3 submission, keyed by patient id.

    ``case_ids`` are the cases of the phase (each needs exactly one prediction).
    ``ignored_ids`` are ids that may appear and are silently dropped (cases whose
    ground-truth target is unknown). Ids not in either are rejected unless
    ``ignore_extra_cases``. ``expected`` says in messages what a value is (default:
    the 2025 reading of the task, e.g. a risk score). Raises :class:`SubmissionRejected`
    listing every problem.
    """
    limits = limits or Limits()
    cap = table_bytes_limit(len(case_ids) + len(ignored_ids), limits)
    limits = replace(limits, max_table_bytes=cap)
    source = load_entries(root, task=task, limits=limits)
    if source.entries is None:
        raise SubmissionRejected(source.problems)
    if not source.entries and not source.problems:
        raise SubmissionRejected(
            [
                TableError(
                    source.name,
                    f"{source.name}: holds no predictions; expected one per case "
                    f"({len(case_ids)} cases, e.g. {', '.join(case_ids[:3])})",
                )
            ]
        )
    check = _Validation(
        source,
        task=task,
        case_ids=case_ids,
        ignored_ids=ignored_ids,
        ignore_extra=ignore_extra_cases,
        expected=expected,
    )
    for entry in source.entries:
        check.entry(entry)
    check.duplicates()
    check.missing()
    if check.problems:
        raise SubmissionRejected(check.problems)
    return {pid: check.values[pid] for pid in case_ids}


class _Validation:
    """The entries of a table checked against the phase's cases: the problems found
    and the values of the cases named once."""

    def __init__(
        self,
        source: LoadedTable,
        *,
        task: int,
        case_ids: Sequence[str],
        ignored_ids: Collection[str],
        ignore_extra: bool,
        expected: str | None = None,
    ) -> None:
        self.source = source
        self.task = task
        self.value_help = expected or expected_value(task)
        self.case_ids = case_ids
        self.expected = set(case_ids)
        self.ignored = set(ignored_ids)
        self.ignore_extra = ignore_extra
        self.by_norm = {_normalised(c): c for c in case_ids}
        self.problems: list[SubmissionError] = list(source.problems)
        self.where_by_id: dict[str, list[str]] = {}
        self.values: dict[str, float] = {}

    def entry(self, entry: PredictionEntry) -> None:
        pid = self._patient_id(entry)
        if pid is None:
            return
        self.where_by_id.setdefault(pid, []).append(entry.where)
        if pid not in self.expected and pid not in self.ignored and not self.ignore_extra:
            guess = self.by_norm.get(_normalised(pid))
            hint = f" Did you mean {guess!r}? Ids must match exactly." if guess else ""
            self.problems.append(
                ExtraCaseError(
                    pid, f"{entry.where}: {pid!r} is not a case of this phase; remove it.{hint}"
                )
            )
        if isinstance(entry.raw, Broken):
            return
        converted = convert(entry.raw, task=self.task, from_text=entry.from_text)
        if isinstance(converted, str):
            self.problems.append(
                TableError(
                    pid,
                    f"{entry.where} ({pid}): {converted}; expected {self.value_help}, "
                    f"such as {example_value(self.task)}",
                )
            )
            return
        if len(self.where_by_id[pid]) == 1:
            self.values[pid] = converted

    def _patient_id(self, entry: PredictionEntry) -> str | None:
        """The entry's id, stripped; None (and a problem) when it is not a string or
        is empty."""
        pid_raw = entry.patient_id
        if not isinstance(pid_raw, str):
            example = short(self.case_ids[0] if self.case_ids else "CHUM-001")
            self.problems.append(
                TableError(
                    self.source.name,
                    f"{entry.where}: {ID_COLUMN} is {json_kind(pid_raw)}; expected a string "
                    f"such as {example}",
                )
            )
            return None
        pid = pid_raw.strip()
        if not pid:
            self.problems.append(
                TableError(
                    self.source.name, f"{entry.where}: empty {ID_COLUMN}; every row names its case"
                )
            )
            return None
        return pid

    def duplicates(self) -> None:
        for pid, wheres in self.where_by_id.items():
            if len(wheres) > 1:
                self.problems.append(
                    TableError(
                        pid,
                        f"{self.source.name}: {pid} appears {len(wheres)} times "
                        f"({'; '.join(wheres)}); keep exactly one prediction per case",
                    )
                )

    def missing(self) -> None:
        expected = self.value_help
        case_file = self.source.case_file
        for pid in self.case_ids:
            if pid in self.where_by_id:
                continue
            if case_file:
                todo = f"no folder {pid}/ with {case_file}; add it, holding {expected}"
            else:
                todo = f"no prediction for {pid}; add one with {expected}"
            self.problems.append(
                MissingCaseError(
                    pid, f"{self.source.name}: {todo}; every case of the phase needs one"
                )
            )
