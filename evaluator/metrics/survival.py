"""Task 2: recurrence-free survival, scored by Harrell's concordance index.

The prediction is a **risk score**: higher means an earlier recurrence
(docs/scoring.md section 3). A pair of patients is comparable when the shorter time ends in an event; with
equal times only when exactly one of the two has the event (the censored one is taken
to have outlived the other). A comparable pair is concordant when the earlier event
has the higher risk; tied risks count 1/2.

That is exactly ``lifelines.utils.concordance_index(times, -risk, events)`` (lifelines
expects "higher = longer survival", hence the minus sign), which runs in
O(n log n). A prediction that is a predicted recurrence-free *time* (HECKTOR 2026,
``rfs_meaning = "time"``) is concordant when it orders a pair as the observed times do:
``concordance_index(times, predicted_time, events)``, the predicted time itself. lifelines is imported inside the function: importing it pulls in every
fitter, and ``import evaluator`` must stay light.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from evaluator.errors import ScoringError
from evaluator.protocol import HECKTOR2025, Protocol

__all__ = ["RfsMeaning", "aggregate_rfs", "aggregate_task2", "c_index", "has_comparable_pair"]

#: what a Task 2 prediction is: a risk (higher = earlier recurrence) or a time (higher =
#: later recurrence)
RfsMeaning = Literal["risk", "time"]


def _as_1d_float(name: str, values: ArrayLike) -> NDArray[np.float64]:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ScoringError(f"{name} must be numbers: {exc}") from exc
    if arr.ndim != 1:
        raise ScoringError(f"{name} must be one-dimensional, found shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ScoringError(f"{name} holds {bad} non-finite value(s) (NaN or infinity)")
    return arr


def _validated(
    times: ArrayLike, events: ArrayLike, risk: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.float64]]:
    t = _as_1d_float("times", times)
    e = _as_1d_float("events", events)
    r = _as_1d_float("risk", risk)
    if not (t.shape == e.shape == r.shape):
        raise ScoringError(
            f"times, events and risk must have the same length, found {t.size}, {e.size}, {r.size}"
        )
    if not np.isin(e, (0.0, 1.0)).all():
        raise ScoringError("events must be 0 (censored) or 1 (event)")
    if (t < 0).any():
        raise ScoringError("times must be >= 0")
    return t, e.astype(bool), r


def has_comparable_pair(times: ArrayLike, events: ArrayLike) -> bool:
    """True when at least one pair of patients is comparable (see module docstring).

    An event at time t is comparable with anyone whose time is later, or equal and
    censored. So a pair exists iff some event precedes the latest time, or an event
    and a censoring share the latest time.
    """
    t = np.asarray(times, dtype=np.float64)
    e = np.asarray(events).astype(bool)
    if t.size < 2 or not e.any():
        return False
    t_max = t.max()
    if (e & (t < t_max)).any():
        return True
    at_max = t == t_max
    return bool((e & at_max).any() and (~e & at_max).any())


def c_index(
    times: ArrayLike, events: ArrayLike, risk: ArrayLike, *, meaning: RfsMeaning = "risk"
) -> float:
    """Harrell's C-index of a prediction: with ``meaning="risk"`` a risk score (higher
    risk = earlier event: concordant when the earlier event has the higher value), with
    ``meaning="time"`` a predicted time (concordant when the earlier event has the lower
    predicted time, i.e. the predicted times order the patients as the observed times
    do). Tied predictions count 1/2 either way.

    Raises :class:`ScoringError` when no pair of patients is comparable (e.g. no
    event at all), instead of returning a made-up value, and on invalid input.
    """
    if meaning not in ("risk", "time"):
        raise ValueError(f"meaning must be 'risk' or 'time', not {meaning!r}")
    t, e, r = _validated(times, events, risk)
    if not has_comparable_pair(t, e):
        n_events = int(np.count_nonzero(e))
        raise ScoringError(
            f"the C-index is undefined: no comparable pair of patients among {t.size} "
            f"case(s) with {n_events} event(s); a pair is comparable when the shorter "
            "recurrence-free time ends in an event"
        )
    from lifelines.utils import concordance_index

    # lifelines scores a predicted time: higher predicted = longer observed survival
    predicted_time = r if meaning == "time" else -r
    try:
        value = concordance_index(t, predicted_time, e.astype(np.float64))
    except ZeroDivisionError as exc:  # pragma: no cover - guarded above
        raise ScoringError("the C-index is undefined: no comparable pair of patients") from exc
    return float(value)


def aggregate_task2(
    cases: Sequence[Mapping[str, Any]], *, protocol: Protocol = HECKTOR2025
) -> dict[str, float]:
    """Task 2 metrics from per-case records with keys ``prediction, time, event``."""
    del protocol  # no Task 2 switch yet; kept for a uniform signature
    times, events, risk = _survival_arrays(cases)
    return {"c_index": c_index(times, events, risk)}


def aggregate_rfs(cases: Sequence[Mapping[str, Any]], *, meaning: RfsMeaning) -> dict[str, float]:
    """``rfs_cindex`` from per-case records with keys ``prediction, time, event``; the
    prediction read as ``meaning`` (see :func:`c_index`)."""
    times, events, predicted = _survival_arrays(cases)
    return {"rfs_cindex": c_index(times, events, predicted, meaning=meaning)}


def _survival_arrays(
    cases: Sequence[Mapping[str, Any]],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """``time``, ``event`` and ``prediction`` of Task 2 case records, as arrays."""
    if not cases:
        raise ScoringError("no case to score: the C-index needs at least two cases")
    try:
        times = [float(c["time"]) for c in cases]
        events = [float(c["event"]) for c in cases]
        predicted = [float(c["prediction"]) for c in cases]
    except KeyError as exc:
        raise ScoringError(
            f"Task 2 case records need the keys prediction, time, event; missing {exc}"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise ScoringError(f"Task 2 case records hold a non-numeric value: {exc}") from exc
    return np.asarray(times), np.asarray(events), np.asarray(predicted)
