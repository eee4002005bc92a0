"""Ranking rules as pure functions over metric rows.

Each edition declares its per-task rule (``Protocol.TASKS[task].ranking``, see
:mod:`evaluator.editions.base`): rank by one metric (:class:`RankBy`), or rank the sum
of several ranks, the lower sum first (:class:`RankOfSum`). The HECKTOR 2025 rules:

- Task 1: ``r_p`` = rank by ``gtvp_dsc_mean``; ``r_n`` = rank of (rank by
  ``gtvn_dsc_agg`` + rank by ``gtvn_f1_agg``), lower sum first; final = rank of
  (``r_p`` + ``r_n``).
- Task 2: rank by ``c_index``. Task 3: rank by ``auc``.

HECKTOR 2026 ranks Task 1 by ``seg_dsc``, Task 2 by ``rfs_cindex``, Task 3 by
``staging_bacc``, and combines the three into an overall rank by
:func:`overall_ranks` (a weighted mean of the task ranks, ``task_weights``).

Ties get the average rank (as ``scipy.stats.rankdata(method="average")``, computed by
:func:`average_ranks` without importing scipy.stats), rank 1 is
best. Directions come from :mod:`evaluator.registry`, never from this module. A
missing or non-finite metric value ranks last (all such rows tie at the bottom): it
never beats a real score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from evaluator.editions.base import RankBy, RankOfSum, RankRule
from evaluator.protocol import HECKTOR2025
from evaluator.registry import BY_NAME, ProtocolRef, protocol_of, ranked_metrics

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "average_ranks",
    "combined_task_ranks",
    "overall_ranks",
    "rank_matrix",
    "rank_metric",
    "rank_rows",
    "rank_values",
    "ranking_rule",
]


def _as_float(value: object) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def average_ranks(values: npt.ArrayLike) -> FloatArray:
    """Ranks along the last axis, 1 for the smallest, ties sharing the mean of the
    ranks they span (``scipy.stats.rankdata(values, axis=-1, method="average")`` for
    values without NaN; infinities tie with each other)."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 0:
        return np.ones((), dtype=np.float64)
    n = a.shape[-1]
    if n == 0:
        return np.zeros(a.shape, dtype=np.float64)
    order = np.argsort(a, axis=-1, kind="stable")
    s = np.take_along_axis(a, order, axis=-1)
    idx = np.broadcast_to(np.arange(n), a.shape)
    starts = np.ones(a.shape, dtype=bool)  # first position of each run of equal values
    starts[..., 1:] = s[..., 1:] != s[..., :-1]
    ends = np.ones(a.shape, dtype=bool)  # last position of each run
    ends[..., :-1] = starts[..., 1:]
    first = np.maximum.accumulate(np.where(starts, idx, 0), axis=-1)
    last = np.flip(
        np.minimum.accumulate(np.flip(np.where(ends, idx, n - 1), axis=-1), axis=-1), axis=-1
    )
    ranks = np.empty(a.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=-1)
    return ranks


def rank_values(values: Sequence[float], *, higher_is_better: bool) -> np.ndarray:
    """Average ranks, 1 = best. Non-finite values rank last, tied among themselves."""
    x = np.asarray([_as_float(v) for v in values], dtype=float)
    if x.size == 0:
        return np.zeros(0, dtype=float)
    key = -x if higher_is_better else x.copy()
    key[~np.isfinite(x)] = np.inf
    return average_ranks(key)


def rank_metric(rows: Sequence[Mapping[str, float]], name: str) -> np.ndarray:
    """Ranks of ``rows`` by one registered metric, in its registered direction."""
    metric = BY_NAME[name]
    return rank_values([r.get(name) for r in rows], higher_is_better=metric.higher_is_better)  # type: ignore[misc]


def ranking_rule(task: int, protocol: ProtocolRef | None = HECKTOR2025) -> RankRule:
    """The ranking rule ``protocol``'s edition declares for ``task``."""
    if task not in (1, 2, 3):
        raise ValueError(f"task must be 1, 2 or 3, not {task!r}")
    p = protocol_of(protocol)
    rule = p.TASKS[task].ranking
    ranked = {m.name for m in ranked_metrics(task, p)}
    if set(_leaves(rule)) != ranked:  # pragma: no cover - guarded when an edition loads
        raise ValueError(
            f"the ranked Task {task} metrics {sorted(ranked)} differ from the rule's "
            f"{sorted(_leaves(rule))}"
        )
    return rule


def _leaves(rule: RankRule) -> list[str]:
    if isinstance(rule, RankBy):
        return [rule.metric]
    return [name for part in rule.parts for name in _leaves(part)]


def _rank_rows_axis(values: FloatArray, *, higher_is_better: bool) -> FloatArray:
    """Average ranks along axis 1, 1 = best; non-finite values rank last, tied."""
    key = -values if higher_is_better else values.copy()
    key[~np.isfinite(values)] = np.inf
    return average_ranks(key)


def _apply(
    rule: RankRule, values: Mapping[str, FloatArray], out: dict[str, FloatArray]
) -> FloatArray:
    """The ranks ``rule`` gives (R x T), each named rank stored in ``out`` on the way
    (leaves first, in the rule's order, then the sums that hold them)."""
    if isinstance(rule, RankBy):
        r = _rank_rows_axis(
            values[rule.metric], higher_is_better=BY_NAME[rule.metric].higher_is_better
        )
        out[rule.metric] = r
        return r
    assert isinstance(rule, RankOfSum)
    parts = [_apply(part, values, out) for part in rule.parts]
    total = np.sum(np.stack(parts), axis=0)
    r = _rank_rows_axis(total, higher_is_better=False)
    out[rule.name] = r
    return r


def rank_matrix(
    task: int, values: Mapping[str, npt.ArrayLike], protocol: ProtocolRef | None = HECKTOR2025
) -> dict[str, FloatArray]:
    """:func:`rank_rows` for many rankings at once.

    ``values[name]`` is an ``R x T`` array (R rankings of T teams) for every ranked
    metric of ``task``. Returns ``R x T`` arrays of ranks per ranked metric, per named
    group of the rule (``gtvn`` for the 2025 Task 1) and ``final``, with the same
    rules: average ranks on ties, non-finite values last, directions from the registry.
    """
    rule = ranking_rule(task, protocol)
    arrays = {
        name: np.atleast_2d(np.asarray(values[name], dtype=np.float64)) for name in _leaves(rule)
    }
    out: dict[str, FloatArray] = {}
    out["final"] = _apply(rule, arrays, out)
    return out


def rank_rows(
    task: int, rows: Sequence[Mapping[str, float]], protocol: ProtocolRef | None = HECKTOR2025
) -> list[dict[str, float]]:
    """Per-row ranks for ``task``. Each dict has one entry per ranked metric, one per
    named group of the rule (the 2025 Task 1 rows carry ``gtvn``, the rank ``r_n``) and
    ``final``."""
    rule = ranking_rule(task, protocol)
    if not rows:
        return []
    values = {
        name: np.asarray([[_as_float(r.get(name)) for r in rows]], dtype=np.float64)
        for name in _leaves(rule)
    }
    ranks = rank_matrix(task, values, protocol)
    final = ranks.pop("final")
    keys = [*ranks, "final"]
    ranks["final"] = final
    return [{k: float(ranks[k][0, i]) for k in keys} for i in range(len(rows))]


def combined_task_ranks(
    task_ranks: Mapping[int, Mapping[str, float]],
    *,
    weights: Mapping[int, float],
) -> dict[str, float]:
    """Each team's weighted mean task rank, ``Σ w_t r_t / Σ w_t`` over the tasks of
    ``weights`` with a weight > 0 (``task_ranks[task][team]``: the team's final rank on
    that task's board); NaN for a team missing from one of those tasks."""
    used = [t for t, w in weights.items() if float(w) > 0]
    if not used:
        raise ValueError("an overall rank needs at least one task with a weight > 0")
    teams = sorted({team for t in used for team in task_ranks.get(t, {})})
    total = math.fsum(float(weights[t]) for t in used)
    out: dict[str, float] = {}
    for team in teams:
        if all(team in task_ranks.get(t, {}) for t in used):
            out[team] = math.fsum(float(weights[t]) * task_ranks[t][team] for t in used) / total
        else:
            out[team] = math.nan
    return out


def overall_ranks(
    task_ranks: Mapping[int, Mapping[str, float]],
    *,
    weights: Mapping[int, float],
) -> dict[str, float]:
    """The overall rank of each team: the average rank of its
    :func:`combined_task_ranks` value, the lower first. A team missing from a weighted
    task has no combined value and ranks after every team that has one (those tie
    among themselves)."""
    combined = combined_task_ranks(task_ranks, weights=weights)
    ranks = rank_values(list(combined.values()), higher_is_better=False)
    return {team: float(r) for team, r in zip(combined, ranks, strict=True)}
