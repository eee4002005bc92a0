"""HECKTOR ranking rules (SPEC section 4), as a pure function over metric rows.

Ties get the average rank (``scipy.stats.rankdata(method="average")``), rank 1 is
best. Directions come from :mod:`evaluator.registry`, never from this module.

- Task 1: ``r_p`` = rank by ``gtvp_dsc_mean``; ``r_n`` = rank of (rank by
  ``gtvn_dsc_agg`` + rank by ``gtvn_f1_agg``), lower sum first; final = rank of
  (``r_p`` + ``r_n``).
- Task 2: rank by ``c_index``. Task 3: rank by ``auc``.

A missing or non-finite metric value ranks last (all such rows tie at the bottom):
it never beats a real score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

from evaluator.registry import BY_NAME, ranked_metrics

TASK1_GTVP = ("gtvp_dsc_mean",)
TASK1_GTVN = ("gtvn_dsc_agg", "gtvn_f1_agg")


def _as_float(value: object) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def rank_values(values: Sequence[float], *, higher_is_better: bool) -> np.ndarray:
    """Average ranks, 1 = best. Non-finite values rank last, tied among themselves."""
    x = np.asarray([_as_float(v) for v in values], dtype=float)
    if x.size == 0:
        return np.zeros(0, dtype=float)
    key = -x if higher_is_better else x.copy()
    key[~np.isfinite(x)] = np.inf
    return np.asarray(rankdata(key, method="average"), dtype=float)


def rank_metric(rows: Sequence[Mapping[str, float]], name: str) -> np.ndarray:
    """Ranks of ``rows`` by one registered metric, in its registered direction."""
    metric = BY_NAME[name]
    return rank_values([r.get(name) for r in rows], higher_is_better=metric.higher_is_better)  # type: ignore[misc]


def _rank_sums(sums: np.ndarray) -> np.ndarray:
    """Rank of a sum of ranks: the lower sum is better."""
    return rank_values(list(sums), higher_is_better=False)


def rank_rows(task: int, rows: Sequence[Mapping[str, float]]) -> list[dict[str, float]]:
    """Per-row ranks for ``task``. Each dict has one entry per ranked metric and ``final``.

    Task 1 rows also carry ``gtvn`` (the GTVn rank ``r_n``).
    """
    if task not in (1, 2, 3):
        raise ValueError(f"task must be 1, 2 or 3, not {task!r}")
    n = len(rows)
    if n == 0:
        return []
    names = [m.name for m in ranked_metrics(task)]
    if task == 1:
        expected = set(TASK1_GTVP + TASK1_GTVN)
        if set(names) != expected:
            raise ValueError(
                f"the registry's ranked Task 1 metrics {sorted(names)} differ from the "
                f"HECKTOR rule's {sorted(expected)}"
            )
        r_p = rank_metric(rows, "gtvp_dsc_mean")
        r_dsc = rank_metric(rows, "gtvn_dsc_agg")
        r_f1 = rank_metric(rows, "gtvn_f1_agg")
        r_n = _rank_sums(r_dsc + r_f1)
        final = _rank_sums(r_p + r_n)
        return [
            {
                "gtvp_dsc_mean": float(r_p[i]),
                "gtvn_dsc_agg": float(r_dsc[i]),
                "gtvn_f1_agg": float(r_f1[i]),
                "gtvn": float(r_n[i]),
                "final": float(final[i]),
            }
            for i in range(n)
        ]
    if len(names) != 1:
        raise ValueError(f"Task {task} must have exactly one ranked metric, found {names}")
    (name,) = names
    r = rank_metric(rows, name)
    return [{name: float(r[i]), "final": float(r[i])} for i in range(n)]
