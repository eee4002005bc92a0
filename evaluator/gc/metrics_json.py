"""``/output/metrics.json`` from the result documents of the scored tasks.

One task scored::

    {"case": {"CHUM-001": {"job": "<pk>", "gtvp_dsc": 0.81, ...}},   # {} without --per-case
     "aggregates": {"dsc_agg_gtvp": 0.78, ...},                       # the result's metrics
     "evaluation": {"evaluator_version", "protocol", "case_rule", "tasks": {"1": {...}}}}

Several tasks: ``aggregates`` and each case entry hold one object per task,
``{"task1": {...}, "task2": {...}}``. Only finite numbers are written: a metric or a
per-case value that is NaN or infinite is left out and named in ``notes``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from evaluator import EVALUATOR_VERSION
from evaluator.gc.mapping import CaseMap
from evaluator.pipeline.result import ResultDocument

__all__ = ["metrics_document"]


def _finite(values: Mapping[str, Any], where: str, notes: list[str]) -> dict[str, Any]:
    """``values`` without its non-finite floats, each one dropped named in ``notes``."""
    out: dict[str, Any] = {}
    for key, v in values.items():
        if isinstance(v, float) and not math.isfinite(v):
            notes.append(f"{where} {key} is {v!r}, left out")
            continue
        out[key] = v
    return out


def _case_entries(
    doc: ResultDocument, cases: CaseMap, notes: list[str]
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for record in doc["cases"]:
        pid = record["patient_id"]
        fields = {k: v for k, v in record.items() if k != "patient_id"}
        out[pid] = _finite(fields, f"task {doc['task']} case {pid}", notes)
    return out


def metrics_document(
    results: Mapping[int, ResultDocument], *, cases: CaseMap, per_case: bool
) -> dict[str, Any]:
    """The metrics.json document of the scored tasks (see the module's docstring)."""
    if not results:
        raise ValueError("metrics_document needs at least one scored task")
    notes: list[str] = []
    aggregates = {
        task: _finite(doc["metrics"], f"task {task} aggregate", notes)
        for task, doc in results.items()
    }
    per_task = (
        {task: _case_entries(doc, cases, notes) for task, doc in results.items()}
        if per_case
        else {}
    )
    single = len(results) == 1
    case: dict[str, dict[str, Any]] = {}
    for task, entries in per_task.items():
        for pid, entry in entries.items():
            slot = case.setdefault(pid, {"job": cases.pk_of(pid)})
            if single:
                slot.update(entry)
            else:
                slot[f"task{task}"] = entry
    first = next(iter(results.values()))
    doc: dict[str, Any] = {
        "case": case,
        "aggregates": (
            next(iter(aggregates.values()))
            if single
            else {f"task{t}": a for t, a in aggregates.items()}
        ),
        "evaluation": {
            "evaluator_version": EVALUATOR_VERSION,
            "protocol": first["protocol"],
            "case_rule": cases.rule,
            "tasks": {
                str(t): {
                    "ground_truth_sha256": d["ground_truth_sha256"],
                    "n_cases": len(d["cases"]),
                }
                for t, d in results.items()
            },
        },
    }
    if notes:
        doc["notes"] = notes
    return doc
