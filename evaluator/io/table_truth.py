"""Ground truth of Task 2 (recurrence-free survival) and Task 3 (HPV status).

docs/scoring.md section 1: ``Task 2/<any>.csv`` holds one row per patient with ``PatientID``,
``RFS`` (time) and ``Relapse`` (1 event, 0 censored); ``Task 3/<any>.csv`` holds
``PatientID`` and ``HPV Status`` (1 positive, 0 negative). Column names come from the
protocol. The centre is read from ``CenterID`` or ``Center`` when present, else it is
the prefix of the PatientID before the first ``-`` (``CHUM-001`` -> ``CHUM``).

Rows whose target is missing or unknown (empty, NA, NaN, "unknown", ...) are not part
of the task's case set: they are counted in ``n_unknown`` and their ids kept in
``unknown_ids``, so that a prediction for such a patient is ignored rather than
rejected as an unknown case. Everything else is validated (unique ids, finite times
>= 0, events and labels in {0, 1}) and every problem is reported at once as a
:class:`GroundTruthError` naming the file, the row and the id.

HECKTOR 2026 scores Task 3 as T and N staging: :func:`read_staging_ground_truth` reads
the protocol's stage columns (``T-stage``, ``N-stage`` by default) and folds each
cell onto an allowed stage (``t2`` -> ``T2``, ``N2b`` -> ``N2``); any other value is a
problem naming the file, the line, the id and the allowed stages.

``path`` is the CSV file itself or the task folder holding it. When the folder holds
several CSV files, the one with the needed columns is chosen; if more than one has
them, the choice is refused as ambiguous (pass the file itself).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

import numpy as np
from numpy.typing import NDArray

from evaluator.errors import GroundTruthError
from evaluator.io.hashing import combine_hashes, sha256_file
from evaluator.io.table_text import decode_text, sniff_delimiter
from evaluator.protocol import HECKTOR2025, Hecktor2026Protocol, Protocol

__all__ = [
    "UNKNOWN_TOKENS",
    "ClassificationGroundTruth",
    "StagingGroundTruth",
    "SurvivalGroundTruth",
    "TableGroundTruth",
    "center_of",
    "read_staging_ground_truth",
    "read_table_ground_truth",
    "read_task2_ground_truth",
    "read_task3_ground_truth",
]

#: Cell values (compared lower-cased, stripped) that mean "target not known".
UNKNOWN_TOKENS: Final = frozenset(
    {
        "",
        "na",
        "n/a",
        "n.a.",
        "#n/a",
        "nan",
        "none",
        "null",
        "unknown",
        "unk",
        "not known",
        "not available",
        "missing",
        "?",
        "-",
        "--",
        ".",
    }
)
_POSITIVE: Final = frozenset({"1", "positive", "pos", "true"})
_NEGATIVE: Final = frozenset({"0", "negative", "neg", "false"})
_MAX_GT_BYTES: Final = 256 << 20


def center_of(patient_id: str) -> str:
    """The centre encoded in a patient id: the prefix before the first ``-``
    (``CHUM-001`` -> ``CHUM``), or ``""`` when the id has no ``-``."""
    prefix, sep, _ = patient_id.partition("-")
    return prefix.strip() if sep else ""


_A = TypeVar("_A", bound=np.ndarray)


def _readonly(arr: _A) -> _A:
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False, kw_only=True)
class _ClinicalGroundTruth:
    ids: tuple[str, ...]
    centers: tuple[str, ...]
    sha256: str  # combine_hashes over the CSV contents' SHA-256
    n_unknown: int  # rows left out because their target is missing/unknown
    unknown_ids: tuple[str, ...]  # their ids: predictions for them are ignored
    source: Path  # the CSV file that was read

    @property
    def case_ids(self) -> tuple[str, ...]:
        return self.ids

    @property
    def n_cases(self) -> int:
        return len(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def center_of(self, patient_id: str) -> str:
        return self.centers[self.ids.index(patient_id)]


@dataclass(frozen=True, eq=False, kw_only=True)
class SurvivalGroundTruth(_ClinicalGroundTruth):
    """Task 2: per case a recurrence-free time and an event flag (1 event, 0 censored)."""

    times: NDArray[np.float64]
    events: NDArray[np.int64]

    task = 2


@dataclass(frozen=True, eq=False, kw_only=True)
class ClassificationGroundTruth(_ClinicalGroundTruth):
    """Task 3: per case the HPV status (1 positive, 0 negative)."""

    labels: NDArray[np.int64]

    task = 3


# -- reading the CSV ------------------------------------------------------------------
@dataclass(frozen=True)
class _Table:
    path: Path
    header: list[str]
    rows: list[tuple[int, list[str]]]  # (line number, cells)


def _read_table(path: Path) -> _Table:
    try:
        size = path.stat().st_size
        if size > _MAX_GT_BYTES:
            raise GroundTruthError([f"{path}: {size:,} bytes, too large for a clinical table"])
        data = path.read_bytes()
    except OSError as exc:
        raise GroundTruthError([f"{path}: cannot be read ({exc.strerror})"]) from exc
    try:
        text = decode_text(data)
    except UnicodeDecodeError as exc:
        raise GroundTruthError(
            [f"{path}: not UTF-8 text (undecodable byte at offset {exc.start}); save it as UTF-8"]
        ) from exc
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise GroundTruthError([f"{path}: the file is empty"])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(lines[0]))
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip() for cell in row]
            else:
                rows.append((reader.line_num, [cell.strip() for cell in row]))
    except csv.Error as exc:
        raise GroundTruthError(
            [f"{path} line {reader.line_num}: not a readable CSV ({exc})"]
        ) from exc
    assert header is not None
    return _Table(path, header, rows)


def _column(header: list[str], name: str) -> int | None:
    """Index of a column: exact name first, else a unique case-insensitive match."""
    if header.count(name) == 1:
        return header.index(name)
    if header.count(name) > 1:
        return None
    folded = [h.casefold() for h in header]
    if folded.count(name.casefold()) == 1:
        return folded.index(name.casefold())
    return None


def _missing_columns(header: list[str], needed: list[str]) -> list[str]:
    return [name for name in needed if _column(header, name) is None]


def _locate(path: Path, needed: list[str], *, task: int) -> _Table:
    path = Path(path)
    if path.is_file():
        table = _read_table(path)
        missing = _missing_columns(table.header, needed)
        if missing:
            raise GroundTruthError(
                [
                    f"{path}: missing (or duplicated) column(s) {', '.join(missing)} "
                    f"(found: {', '.join(table.header)}); expected {', '.join(needed)}"
                ]
            )
        return table
    if not path.is_dir():
        raise GroundTruthError([f"{path}: no such file or folder"])
    candidates = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and p.suffix.lower() == ".csv" and not p.name.startswith(".")
    )
    if not candidates:
        raise GroundTruthError(
            [
                f"{path}: no .csv file; the Task {task} folder holds one CSV with the columns "
                f"{', '.join(needed)}"
            ]
        )
    tables: list[_Table] = []
    described: list[str] = []
    for candidate in candidates:
        try:
            table = _read_table(candidate)
        except GroundTruthError as exc:
            described.append("; ".join(exc.problems))
            continue
        if not _missing_columns(table.header, needed):
            tables.append(table)
        else:
            described.append(f"{candidate.name} (columns: {', '.join(table.header)})")
    if len(tables) == 1:
        return tables[0]
    if not tables:
        raise GroundTruthError(
            [
                f"{path}: no CSV file has the columns {', '.join(needed)}; found: "
                + "; ".join(described)
            ]
        )
    raise GroundTruthError(
        [
            f"{path}: several CSV files have the columns {', '.join(needed)} "
            f"({', '.join(t.path.name for t in tables)}); pass the CSV file itself"
        ]
    )


def _is_unknown(cell: str) -> bool:
    return cell.strip().casefold() in UNKNOWN_TOKENS


def _number(cell: str) -> float | None:
    try:
        return float(cell.replace("_", "#"))  # float() accepts "1_0"; a table must not
    except ValueError:
        return None


@dataclass
class _Rows:
    """The rows with a known target, plus every problem found on the way."""

    ids: list[str]
    centers: list[str]
    rows: list[tuple[int, list[str]]]
    unknown_ids: list[str]
    problems: list[str]


def _scan(table: _Table, *, protocol: Protocol, target_columns: list[str]) -> _Rows:
    """Ids, centres and duplicate checks shared by both tasks."""
    header = table.header
    id_ix = _column(header, protocol.id_column)
    assert id_ix is not None
    target_ix = [_column(header, c) for c in target_columns]
    center_ix = next(
        (ix for c in protocol.center_columns if (ix := _column(header, c)) is not None), None
    )
    name = table.path.name
    out = _Rows([], [], [], [], [])
    first_line: dict[str, int] = {}
    for line, cells in table.rows:

        def cell(ix: int | None, cells: list[str] = cells) -> str:
            return cells[ix] if ix is not None and ix < len(cells) else ""

        pid = cell(id_ix)
        if not pid:
            out.problems.append(f"{name} line {line}: empty {protocol.id_column}")
            continue
        if pid in first_line:
            out.problems.append(
                f"{name} line {line}: {pid}: duplicate {protocol.id_column} "
                f"(first on line {first_line[pid]})"
            )
            continue
        first_line[pid] = line
        if any(_is_unknown(cell(ix)) for ix in target_ix):
            out.unknown_ids.append(pid)
            continue
        center = cell(center_ix) or center_of(pid)
        out.ids.append(pid)
        out.centers.append(center)
        out.rows.append((line, [cell(ix) for ix in target_ix]))
    return out


def _finish(out: _Rows, table: _Table) -> None:
    if not out.ids and not out.problems:
        out.problems.append(
            f"{table.path.name}: no row with a known target "
            f"({len(out.unknown_ids)} row(s) with a missing or unknown one)"
        )
    if out.problems:
        raise GroundTruthError(out.problems)


def _hash(table: _Table, *, task: int) -> str:
    return combine_hashes([(f"task{task}.csv", sha256_file(table.path))])


def read_task2_ground_truth(path: Path, *, protocol: Protocol = HECKTOR2025) -> SurvivalGroundTruth:
    """Read and validate the Task 2 ground truth (a CSV or the folder holding it)."""
    needed = [protocol.id_column, protocol.rfs_time_column, protocol.rfs_event_column]
    table = _locate(Path(path), needed, task=2)
    out = _scan(
        table,
        protocol=protocol,
        target_columns=[protocol.rfs_time_column, protocol.rfs_event_column],
    )
    name = table.path.name
    times: list[float] = []
    events: list[int] = []
    for pid, (line, (time_cell, event_cell)) in zip(out.ids, out.rows, strict=True):
        where = f"{name} line {line}: {pid}"
        t = _number(time_cell)
        if t is None or not math.isfinite(t) or t < 0:
            out.problems.append(
                f"{where}: {protocol.rfs_time_column} is {time_cell!r}; expected a finite time >= 0"
            )
        e = _number(event_cell)
        if e not in (0.0, 1.0):
            out.problems.append(
                f"{where}: {protocol.rfs_event_column} is {event_cell!r}; "
                "expected 1 (event) or 0 (censored)"
            )
        times.append(t if t is not None else math.nan)
        events.append(int(e) if e is not None and e in (0.0, 1.0) else -1)
    _finish(out, table)
    return SurvivalGroundTruth(
        ids=tuple(out.ids),
        centers=tuple(out.centers),
        times=_readonly(np.asarray(times, dtype=np.float64)),
        events=_readonly(np.asarray(events, dtype=np.int64)),
        sha256=_hash(table, task=2),
        n_unknown=len(out.unknown_ids),
        unknown_ids=tuple(out.unknown_ids),
        source=table.path,
    )


def read_task3_ground_truth(
    path: Path, *, protocol: Protocol = HECKTOR2025
) -> ClassificationGroundTruth:
    """Read and validate the Task 3 ground truth (a CSV or the folder holding it)."""
    needed = [protocol.id_column, protocol.hpv_column]
    table = _locate(Path(path), needed, task=3)
    out = _scan(table, protocol=protocol, target_columns=[protocol.hpv_column])
    name = table.path.name
    labels: list[int] = []
    for pid, (line, (label_cell,)) in zip(out.ids, out.rows, strict=True):
        folded = label_cell.casefold()
        number = _number(label_cell)
        if folded in _POSITIVE or number == 1.0:
            labels.append(1)
        elif folded in _NEGATIVE or number == 0.0:
            labels.append(0)
        else:
            out.problems.append(
                f"{name} line {line}: {pid}: {protocol.hpv_column} is {label_cell!r}; "
                "expected 1 (positive) or 0 (negative), or empty when unknown"
            )
            labels.append(-1)
    _finish(out, table)
    return ClassificationGroundTruth(
        ids=tuple(out.ids),
        centers=tuple(out.centers),
        labels=_readonly(np.asarray(labels, dtype=np.int64)),
        sha256=_hash(table, task=3),
        n_unknown=len(out.unknown_ids),
        unknown_ids=tuple(out.unknown_ids),
        source=table.path,
    )


@dataclass(frozen=True, eq=False, kw_only=True)
class StagingGroundTruth(_ClinicalGroundTruth):
    """Task 3 of HECKTOR 2026: per case the T and the N stage (normalised, e.g. ``N2b``
    read as ``N2``)."""

    t_stages: tuple[str, ...]
    n_stages: tuple[str, ...]

    task = 3


def _stage_cell(
    cell: str, column: str, allowed: tuple[str, ...], protocol: Hecktor2026Protocol, where: str
) -> tuple[str, str | None]:
    """The normalised stage of one cell, or ``""`` and the problem."""
    stage = protocol.stage_of(cell)
    if stage is not None and stage in allowed:
        return stage, None
    aliases = [f"{a} -> {b}" for a, b in protocol.stage_aliases if b in allowed]
    also = f" (also {', '.join(aliases)})" if aliases else ""
    return "", (
        f"{where}: {column} is {cell!r}; expected one of {', '.join(allowed)}{also}, any case, "
        "or empty when unknown (fix the cell or the protocol's stage_aliases)"
    )


def read_staging_ground_truth(path: Path, *, protocol: Hecktor2026Protocol) -> StagingGroundTruth:
    """Read and validate the staging ground truth (the clinical CSV or its folder): the
    protocol's T and N stage columns; a row with either stage unknown is not a case."""
    t_col, n_col = protocol.t_stage_column, protocol.n_stage_column
    needed = [protocol.id_column, t_col, n_col]
    table = _locate(Path(path), needed, task=3)
    out = _scan(table, protocol=protocol, target_columns=[t_col, n_col])
    name = table.path.name
    t_stages: list[str] = []
    n_stages: list[str] = []
    for pid, (line, (t_cell, n_cell)) in zip(out.ids, out.rows, strict=True):
        where = f"{name} line {line}: {pid}"
        for cell, column, allowed, into in (
            (t_cell, t_col, protocol.t_stages, t_stages),
            (n_cell, n_col, protocol.n_stages, n_stages),
        ):
            stage, problem = _stage_cell(cell, column, allowed, protocol, where)
            if problem is not None:
                out.problems.append(problem)
            into.append(stage)
    _finish(out, table)
    return StagingGroundTruth(
        ids=tuple(out.ids),
        centers=tuple(out.centers),
        t_stages=tuple(t_stages),
        n_stages=tuple(n_stages),
        sha256=_hash(table, task=3),
        n_unknown=len(out.unknown_ids),
        unknown_ids=tuple(out.unknown_ids),
        source=table.path,
    )


TableGroundTruth = SurvivalGroundTruth | ClassificationGroundTruth | StagingGroundTruth


def read_table_ground_truth(task: int, path: Path, *, protocol: Protocol) -> TableGroundTruth:
    """The Task 2 or 3 ground truth as ``protocol``'s edition defines the task: the
    staging columns when its Task 3 is scored as staging, else the HPV status."""
    if task == 2:
        return read_task2_ground_truth(path, protocol=protocol)
    if task != 3:
        raise ValueError(f"table ground truth exists for tasks 2 and 3, not {task!r}")
    if protocol.TASKS[3].kind == "staging":
        if not isinstance(protocol, Hecktor2026Protocol):
            raise TypeError(f"staging needs the switches of hecktor2026, not {protocol.name!r}")
        return read_staging_ground_truth(path, protocol=protocol)
    return read_task3_ground_truth(path, protocol=protocol)
