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
import numpy.typing as npt
from scipy.stats import rankdata

from evaluator.registry import BY_NAME, ranked_metrics

FloatArray = npt.NDArray[np.float64]

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


# --- many rankings at once ------------------------------------------------------------


def _rank_rows_axis(values: FloatArray, *, higher_is_better: bool) -> FloatArray:
    """Average ranks along axis 1, 1 = best; non-finite values rank last, tied."""
    key = -values if higher_is_better else values.copy()
    key[~np.isfinite(values)] = np.inf
    return np.asarray(rankdata(key, axis=1, method="average"), dtype=np.float64)


def rank_matrix(task: int, values: Mapping[str, npt.ArrayLike]) -> dict[str, FloatArray]:
    """:func:`evaluator.ranking.rank_rows` for many rankings at once.

    ``values[name]`` is an ``R x T`` array (R rankings of T teams) for every ranked
    metric of ``task``. Returns ``R x T`` arrays of ranks per ranked metric and
    ``final`` (and ``gtvn`` for Task 1), with the same rules: average ranks on ties,
    non-finite values last, directions from the registry.
    """
    if task not in (1, 2, 3):
        raise ValueError(f"task must be 1, 2 or 3, not {task!r}")

    def ranks(name: str) -> FloatArray:
        x = np.atleast_2d(np.asarray(values[name], dtype=np.float64))
        return _rank_rows_axis(x, higher_is_better=BY_NAME[name].higher_is_better)

    names = [m.name for m in ranked_metrics(task)]
    if task == 1:
        if set(names) != set(TASK1_GTVP + TASK1_GTVN):  # pragma: no cover - registry guard
            raise ValueError(f"the registry's ranked Task 1 metrics {names} differ from HECKTOR's")
        r_p = ranks("gtvp_dsc_mean")
        r_dsc = ranks("gtvn_dsc_agg")
        r_f1 = ranks("gtvn_f1_agg")
        r_n = _rank_rows_axis(r_dsc + r_f1, higher_is_better=False)
        final = _rank_rows_axis(r_p + r_n, higher_is_better=False)
        return {
            "gtvp_dsc_mean": r_p,
            "gtvn_dsc_agg": r_dsc,
            "gtvn_f1_agg": r_f1,
            "gtvn": r_n,
            "final": final,
        }
    (name,) = names
    r = ranks(name)
    return {name: r, "final": r}
