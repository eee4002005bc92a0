"""The result document of SPEC section 5, shared by the CLI and the API."""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from evaluator import EVALUATOR_VERSION
from evaluator.protocol import Protocol


def build_result(
    *,
    task: int,
    protocol: Protocol,
    ground_truth_sha256: str,
    submission_sha256: str,
    metrics: Mapping[str, Any],
    cases: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    return {
        "status": "scored",
        "task": task,
        "protocol": protocol.summary(),
        "evaluator_version": EVALUATOR_VERSION,
        "ground_truth_sha256": ground_truth_sha256,
        "submission_sha256": submission_sha256,
        "metrics": dict(metrics),
        "cases": [dict(c) for c in cases],
    }


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(root: Path) -> str:
    """Hash of a folder: its sorted relative paths and their contents' hashes."""
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(sha256_file(p).encode())
        h.update(b"\n")
    return h.hexdigest()


def sha256_path(path: Path) -> str:
    return sha256_tree(path) if path.is_dir() else sha256_file(path)


def combine_hashes(parts: Iterable[tuple[str, str]]) -> str:
    """One SHA-256 over sorted (name, hash) pairs."""
    h = hashlib.sha256()
    for name, digest in sorted(parts):
        h.update(name.encode())
        h.update(b"\0")
        h.update(digest.encode())
        h.update(b"\n")
    return h.hexdigest()


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def cases_csv(cases: Sequence[Mapping[str, Any]]) -> str:
    """Per-case records as CSV text (columns in first-seen order; floats at full precision)."""
    columns: list[str] = []
    for c in cases:
        for k in c:
            if k not in columns:
                columns.append(k)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns)
    for c in cases:
        w.writerow([_cell(c.get(k)) for k in columns])
    return out.getvalue()
