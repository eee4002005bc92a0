"""Reading a JSON prediction table (a list of ``{"PatientID": ..., "Prediction": ...}``
objects, or one object ``{PatientID: value}``) and the per-case value files. The
nesting depth and the entry count are measured before the text is parsed."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from evaluator.errors import SubmissionError, TableError
from evaluator.io.table_text import (
    BROKEN,
    ID_COLUMN,
    PREDICTION_COLUMN,
    AnyPath,
    LoadedTable,
    Pairs,
    PredictionEntry,
    json_kind,
    read_text,
    short,
    too_many_rows,
)
from evaluator.io.table_values import example_value
from evaluator.protocol import Limits

# A JSON string literal, matched possessively so that long strings cost linear time.
_JSON_STRING_RE = re.compile(r'"(?:[^"\\]++|\\.)*+"')
_NOT_BRACKET_RE = re.compile(r"[^\[\]{}]+")


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


def parse_json(text: str, name: str, *, limits: Limits) -> tuple[Any, SubmissionError | None]:
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
        return None, too_many_rows(name, limits=limits)

    def constant(word: str) -> float:  # NaN, Infinity, -Infinity literals
        return float(word.replace("Infinity", "inf"))

    try:
        return json.loads(text, object_pairs_hook=Pairs, parse_constant=constant), None
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


def read_json(path: AnyPath, name: str, *, limits: Limits) -> LoadedTable:
    """The entries of the JSON table ``path`` (``name`` in messages)."""
    text, problem = read_text(path, name, limits=limits)
    if text is None:
        assert problem is not None
        return LoadedTable(name, None, [problem])
    if not text.strip():
        return LoadedTable(
            name, None, [TableError(name, f"{name}: the file is empty; {_shape_help()}")]
        )
    data, problem = parse_json(text, name, limits=limits)
    if problem is not None:
        return LoadedTable(name, None, [problem])
    if isinstance(data, list) and len(data) > limits.max_table_rows:
        return LoadedTable(name, None, [too_many_rows(name, limits=limits)])
    if isinstance(data, Pairs):
        return _from_object(data, name)
    if isinstance(data, list):
        return _from_list(data, name)
    return LoadedTable(
        name, None, [TableError(name, f"{name}: found {json_kind(data)}; {_shape_help()}")]
    )


def _from_object(data: Pairs, name: str) -> LoadedTable:
    """``{PatientID: value, ...}``; refused when its keys are the column names."""
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
    entries = [
        PredictionEntry(key, value, f"{name} key {short(key)}", False) for key, value in data
    ]
    return LoadedTable(name, entries, [])


def _from_list(data: list[Any], name: str) -> LoadedTable:
    """``[{"PatientID": ..., "Prediction": ...}, ...]``: one entry per object with
    exactly these two keys; the others are problems."""
    entries: list[PredictionEntry] = []
    problems: list[SubmissionError] = []
    for i, item in enumerate(data, start=1):
        where = f"{name} item {i}"
        if not isinstance(item, Pairs):
            problems.append(TableError(name, f"{where}: found {json_kind(item)}; {_shape_help()}"))
            continue
        by_key: dict[str, list[tuple[str, Any]]] = {}
        for k, v in item:
            by_key.setdefault(k.strip().lower(), []).append((k, v))
        ids = by_key.get(ID_COLUMN.lower(), [])
        preds = by_key.get(PREDICTION_COLUMN.lower(), [])
        if len(ids) == 1 and len(preds) == 1 and len(item) == 2:
            entries.append(PredictionEntry(ids[0][1], preds[0][1], where, False))
            continue
        found = ", ".join(repr(k) for k, _ in item) or "no keys"
        pid = ids[0][1] if len(ids) == 1 else None
        problems.append(
            TableError(
                pid.strip() if isinstance(pid, str) else name,
                f"{where}: found the keys {found}; expected exactly the keys "
                f'"{ID_COLUMN}" and "{PREDICTION_COLUMN}"',
            )
        )
        if isinstance(pid, str):
            entries.append(PredictionEntry(pid, BROKEN, where, False))
    return LoadedTable(name, entries, problems)


def read_case_value(
    path: AnyPath, where: str, *, task: int, limits: Limits
) -> tuple[Any, SubmissionError | None]:
    text, problem = read_text(path, where, limits=limits)
    if text is None:
        return None, problem
    if not text.strip():
        return None, TableError(
            where, f"{where}: the file is empty; write one JSON value such as {example_value(task)}"
        )
    return parse_json(text, where, limits=limits)
