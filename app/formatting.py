"""Numbers, ranks and metric names as text: the one set of formatters every layer
(services, API, pages, report, CLI) uses.

Values come from stored JSON (metrics, ranks, per-case records), so every function
takes what such a document may hold: ``None``, booleans, whole and real numbers,
strings.
"""

from __future__ import annotations

import math
import numbers

from evaluator.registry import BY_NAME, ProtocolRef, protocol_of

__all__ = [
    "as_finite",
    "column_label",
    "csv_number",
    "format_number",
    "format_rank",
    "metric_label",
    "task_title",
]

#: what a missing value reads as in tables (an en dash)
MISSING = "–"


def format_number(value: object, *, digits: int = 4, missing: str = MISSING) -> str:
    """A value for a table cell: ``missing`` for None and for a NaN or infinite number,
    ``yes``/``no`` for a boolean, a whole number as it is, a real number with
    ``digits`` decimals, anything else (a patient id, a centre) as its text."""
    if value is None:
        return missing
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        f = float(value)
        return f"{f:.{digits}f}" if math.isfinite(f) else missing
    return str(value)


def format_rank(rank: float | None, *, missing: str = "") -> str:
    """A rank: ``2`` for a whole rank, ``2.5`` for a shared one; ``missing`` for None
    or a rank that is not a finite number."""
    if rank is None:
        return missing
    f = float(rank)
    if not math.isfinite(f):
        return missing
    return str(int(f)) if f.is_integer() else f"{f:g}"


def csv_number(value: object) -> str:
    """A value for a CSV cell: empty for None, a real number in full precision
    (``repr``, so that it reads back to the same float), anything else as its text."""
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def as_finite(value: object) -> float | None:
    """``value`` as a finite float, or None when it is missing, not a number, NaN or
    infinite."""
    if value is None:
        return None
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def task_title(
    task: int, protocol: ProtocolRef | None = None, *, sep: str = " · ", long: bool = False
) -> str:
    """``Task 1 · GTVp/GTVn segmentation``: the task's number and its title under
    ``protocol``'s edition (by default the 2025 one); ``long`` for the report's."""
    spec = protocol_of(protocol).TASKS.get(task)
    if spec is None:
        return f"Task {task}"
    return f"Task {task}{sep}{spec.long_title if long else spec.title}"


def metric_label(name: str) -> str:
    """The registered label of a metric (``GTVp DSC (mean)``), else its name."""
    m = BY_NAME.get(name)
    return m.label if m is not None and m.label else name


# words of per-case field names, as a table header writes them
_WORDS = {
    "id": "ID",
    "patient": "Patient",
    "center": "Centre",
    "gtvp": "GTVp",
    "gtvn": "GTVn",
    "dsc": "DSC",
    "hd95": "HD95",
    "f1": "F1",
    "tp": "TP",
    "fp": "FP",
    "fn": "FN",
    "rfs": "RFS",
    "hpv": "HPV",
    "auc": "AUC",
    "pred": "pred.",
    "gt": "GT",
    "ref": "ref.",
    "mm3": "(mm³)",
    "mm": "(mm)",
    "n": "number of",
}
_FIELDS = {
    "patient_id": "Patient",
    "center": "Centre",
    "n_cases": "Cases",
    "prediction": "Prediction",
}


def column_label(name: str) -> str:
    """A table header for a metric or a per-case field: the metric's registered label
    (``GTVp DSC (mean)``), else the field in words (``gtvp_pred_voxels`` -> ``GTVp
    pred. voxels``, ``voxel_volume_mm3`` -> ``Voxel volume (mm³)``)."""
    m = BY_NAME.get(name)
    if m is not None and m.label:
        return m.label
    if name in _FIELDS:
        return _FIELDS[name]
    words = [_WORDS.get(w, w) for w in name.split("_") if w]
    if not words:
        return name
    text = " ".join(words)
    return text[0].upper() + text[1:]
