"""Bootstrap over cases of stored per-case records: intervals of every leaderboard
metric, stability of the final HECKTOR rank and Kendall's tau. Pure: numpy and scipy
only, no image is read.

A resample draws ``n`` cases with replacement. It is represented by its **count
vector** ``w`` (how many times each case was drawn), so ``R`` resamples are an
``R x n`` integer matrix ``W`` and every metric of every resample is a few matrix
products (:mod:`evaluator.metrics.weighted`); no case list is ever materialised. Every
team is evaluated on the *same* rows of ``W``, so the ranks of one resample are
comparable.

A resample where a metric is undefined (no comparable pair, one class only, every
GTVp case excluded) gives NaN for it; intervals use only the resamples where it is
defined and the counts of the others are reported. Rank statistics use only the
resamples where every ranked metric of every team is defined.

The HECKTOR final rank (docs/scoring.md section 4) is computed for all resamples at once
(:func:`evaluator.ranking.rank_matrix`). Kendall's tau-b between the full-data final
ranking and each resample's is computed over all team pairs at once (it equals
``scipy.stats.kendalltau``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from evaluator.bootstrap_result import (
    BootstrapResult,
    KendallSummary,
    MetricInterval,
    RankStability,
    TeamBootstrap,
)
from evaluator.errors import ScoringError
from evaluator.metrics.aggregate import aggregate
from evaluator.metrics.weighted import FloatArray, finite_or_none, safe_ratio, weighted_metrics
from evaluator.protocol import HECKTOR2025, Protocol
from evaluator.ranking import rank_matrix, rank_rows
from evaluator.registry import leaderboard_metrics, ranked_metrics

__all__ = [
    "BootstrapSamples",
    "bootstrap",
    "bootstrap_samples",
    "kendall_tau_b",
    "resample_weights",
]

IntArray = npt.NDArray[np.int64]
Records = Sequence[Mapping[str, Any]]

# The case fields that come from the ground truth: every team must agree on them.
TRUTH_FIELDS: dict[int, tuple[str, ...]] = {
    1: ("gtvp_gt_voxels", "gtvn_gt_voxels", "voxel_volume_mm3"),
    2: ("time", "event"),
    3: ("label", "t_stage", "n_stage"),
}


def _differ(a: object, b: object) -> bool:
    """Whether two ground-truth values differ (numbers as numbers, stages as text)."""
    if isinstance(a, str) or isinstance(b, str):
        return str(a) != str(b)
    return float(a) != float(b)  # type: ignore[arg-type]


def resample_weights(n_cases: int, n_resamples: int, *, seed: int = 0) -> IntArray:
    """``n_resamples x n_cases`` multiplicities: row r counts how often each case is
    drawn when ``n_cases`` cases are drawn uniformly with replacement (each row sums to
    ``n_cases``). Deterministic for a given seed."""
    if n_cases < 1:
        raise ValueError(f"n_cases must be >= 1, not {n_cases}")
    if n_resamples < 0:
        raise ValueError(f"n_resamples must be >= 0, not {n_resamples}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_cases, size=(n_resamples, n_cases), dtype=np.int64)
    idx += (np.arange(n_resamples, dtype=np.int64) * n_cases)[:, None]
    counts = np.bincount(idx.ravel(), minlength=n_resamples * n_cases)
    return counts.reshape(n_resamples, n_cases).astype(np.int64)


def kendall_tau_b(reference: npt.ArrayLike, rankings: npt.ArrayLike) -> FloatArray:
    """Kendall's tau-b between one ranking (``T``) and each row of ``rankings``
    (``R x T``), over all T(T-1)/2 pairs at once; NaN where either side is constant.
    Equals ``scipy.stats.kendalltau(reference, row).statistic``."""
    ref = np.asarray(reference, dtype=np.float64)
    rk = np.atleast_2d(np.asarray(rankings, dtype=np.float64))
    i, j = np.triu_indices(ref.size, k=1)
    s_ref = np.sign(ref[i] - ref[j])
    s_rk = np.sign(rk[:, i] - rk[:, j])
    den = np.sqrt(float(np.sum(s_ref * s_ref)) * np.sum(s_rk * s_rk, axis=1))
    return safe_ratio(s_rk @ s_ref, den, if_zero=math.nan)


@dataclass(frozen=True, kw_only=True)
class BootstrapSamples:
    """The raw resample arrays behind a :class:`BootstrapResult` (not serialised)."""

    teams: tuple[str, ...]
    case_ids: tuple[str, ...]  # the common case order of the weight columns
    weights: IntArray  # R x n
    metrics: dict[str, FloatArray]  # name -> R x T
    ranks: dict[str, FloatArray]  # R x T, every row (degenerate rows included)
    valid: npt.NDArray[np.bool_]  # R: every ranked metric defined for every team
    full_metrics: dict[str, FloatArray]  # name -> T, the full-data values (NaN: undefined)
    full_ranks: FloatArray  # T, final rank on the full data
    kendall_tau: FloatArray  # R (NaN on degenerate rows)
    notes: tuple[str, ...]


def _by_patient(team: str, records: Records) -> dict[str, Mapping[str, Any]]:
    """One team's records by patient id; each case exactly once."""
    ids: dict[str, Mapping[str, Any]] = {}
    for rec in records:
        if "patient_id" not in rec:
            raise ValueError(f"team {team!r}: a case record lacks 'patient_id'")
        pid = str(rec["patient_id"])
        if pid in ids:
            raise ValueError(f"team {team!r}: case {pid!r} appears more than once")
        ids[pid] = rec
    if not ids:
        raise ValueError(f"team {team!r} has no case records")
    return ids


def _check_same_cases(
    team: str, ids: Mapping[str, Any], ref_team: str, reference: Mapping[str, Any]
) -> None:
    if ids.keys() == reference.keys():
        return
    missing = sorted(reference.keys() - ids.keys())
    extra = sorted(ids.keys() - reference.keys())
    parts = []
    if missing:
        parts.append(f"lacks {len(missing)} case(s) of {ref_team!r} ({', '.join(missing[:5])})")
    if extra:
        parts.append(f"has {len(extra)} case(s) {ref_team!r} lacks ({', '.join(extra[:5])})")
    raise ValueError(
        f"team {team!r} is not scored on the same cases as team {ref_team!r}: "
        + "; ".join(parts)
        + "; a bootstrap compares teams on one common case set"
    )


def _check_same_truth(
    task: int,
    team: str,
    ids: Mapping[str, Mapping[str, Any]],
    ref_team: str,
    reference: Mapping[str, Mapping[str, Any]],
) -> None:
    for pid, rec in ids.items():
        ref = reference[pid]
        for key in TRUTH_FIELDS[task]:
            if key in rec and key in ref and _differ(rec[key], ref[key]):
                raise ValueError(
                    f"team {team!r}, case {pid!r}: {key} = {rec[key]!r} differs from "
                    f"team {ref_team!r}'s {ref[key]!r}; the teams were not scored "
                    "against the same ground truth"
                )


def _aligned(
    task: int, teams: Mapping[str, Records]
) -> tuple[tuple[str, ...], dict[str, list[Mapping[str, Any]]]]:
    """Every team's records in one common case order (sorted patient ids), after
    checking that all teams hold the same cases with the same ground truth."""
    if not teams:
        raise ValueError("bootstrap needs at least one team")
    by_team = {team: _by_patient(team, records) for team, records in teams.items()}
    ref_team, reference = next(iter(by_team.items()))
    for team, ids in by_team.items():
        if team != ref_team:
            _check_same_cases(team, ids, ref_team, reference)
            _check_same_truth(task, team, ids, ref_team, reference)
    case_ids = tuple(sorted(reference))
    return case_ids, {t: [ids[c] for c in case_ids] for t, ids in by_team.items()}


def _full_data(
    task: int, records: Records, protocol: Protocol, names: Sequence[str]
) -> tuple[dict[str, float], str | None]:
    """The leaderboard's values (``aggregate``); where it refuses, the metrics that are
    still defined on the full data (weights 1), NaN for the others, and the reason."""
    try:
        agg = aggregate(task, records, protocol)
        return {n: float(agg.get(n, math.nan)) for n in names}, None
    except ScoringError as exc:
        ones = weighted_metrics(task, records, np.ones(len(records)), protocol=protocol)
        return {n: float(ones[n]) for n in names}, str(exc)


def _team_metrics(
    task: int,
    aligned: Mapping[str, Records],
    weights: FloatArray,
    protocol: Protocol,
) -> tuple[dict[str, FloatArray], dict[str, FloatArray], list[str]]:
    """Per leaderboard metric, the ``R x T`` resampled values and the ``T`` full-data
    values of every team, and a note per team whose full data the leaderboard refuses."""
    names = leaderboard_metrics(task, protocol)
    notes: list[str] = []
    full: dict[str, list[float]] = {k: [] for k in names}
    per_team: dict[str, list[FloatArray]] = {k: [] for k in names}
    for team, records in aligned.items():
        values, reason = _full_data(task, records, protocol, names)
        if reason is not None:
            notes.append(f"team {team!r}: on the full data, {reason}")
        sampled = weighted_metrics(task, records, weights, protocol=protocol)
        for k in names:
            full[k].append(values[k])
            per_team[k].append(sampled[k])
    shape = (weights.shape[0], len(aligned))
    metrics = {k: np.stack(v, axis=1).reshape(shape) for k, v in per_team.items()}
    full_metrics = {k: np.asarray(v, dtype=np.float64) for k, v in full.items()}
    return metrics, full_metrics, notes


def bootstrap_samples(
    task: int,
    teams: Mapping[str, Records],
    *,
    protocol: Protocol = HECKTOR2025,
    n_resamples: int = 1000,
    seed: int = 0,
) -> BootstrapSamples:
    """The resample arrays of :func:`bootstrap` (see there)."""
    leaderboard_metrics(task, protocol)  # a ValueError for an unknown task
    case_ids, aligned = _aligned(task, teams)
    w = resample_weights(len(case_ids), n_resamples, seed=seed)
    metrics, full_metrics, notes = _team_metrics(task, aligned, w.astype(np.float64), protocol)
    ranked = [m.name for m in ranked_metrics(task, protocol)]
    full_rows = [{k: float(full_metrics[k][t]) for k in ranked} for t in range(len(aligned))]
    full_ranks = np.asarray(
        [r["final"] for r in rank_rows(task, full_rows, protocol)], dtype=np.float64
    )
    ranks = rank_matrix(task, {k: metrics[k] for k in ranked}, protocol)
    valid = np.all([np.isfinite(metrics[k]).all(axis=1) for k in ranked], axis=0).reshape(
        n_resamples
    )
    tau = kendall_tau_b(full_ranks, ranks["final"]) if n_resamples else np.zeros(0)
    return BootstrapSamples(
        teams=tuple(aligned),
        case_ids=case_ids,
        weights=w,
        metrics=metrics,
        ranks=ranks,
        valid=valid,
        full_metrics=full_metrics,
        full_ranks=full_ranks,
        kendall_tau=np.where(valid, tau, math.nan),
        notes=tuple(notes),
    )


def _percentiles(x: FloatArray, qs: Sequence[float]) -> list[float | None]:
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return [None for _ in qs]
    return [finite_or_none(v) for v in np.percentile(finite, list(qs))]


def _interval(estimate: float, x: FloatArray, qs: Sequence[float]) -> MetricInterval:
    """One team's metric: its full-data value and its distribution over resamples."""
    finite = x[np.isfinite(x)]
    low, high = _percentiles(x, qs)
    return MetricInterval(
        estimate=finite_or_none(estimate),
        low=low,
        high=high,
        mean=finite_or_none(finite.mean()) if finite.size else None,
        std=finite_or_none(finite.std(ddof=1)) if finite.size > 1 else None,
        n_degenerate=int(x.size - finite.size),
    )


@dataclass(frozen=True)
class _Ranks:
    """The final ranks of the rank resamples (``V x T``) and what is counted of them."""

    final: FloatArray
    values: FloatArray  # the distinct ranks seen, ascending
    inverse: IntArray  # V x T: index of each rank in ``values``
    best: FloatArray  # V: the best rank of each resample

    @classmethod
    def of(cls, s: BootstrapSamples) -> _Ranks:
        final = s.ranks["final"][s.valid]
        values, inverse = np.unique(final, return_inverse=True)
        best = final.min(axis=1) if final.size else np.zeros(0)
        return cls(final, values, inverse.reshape(final.shape), best)

    def stability(self, t: int, full_rank: float, qs: Sequence[float]) -> RankStability:
        r = self.final[:, t]
        med, low, high = _percentiles(r, (50.0, *qs))
        counts: list[int] = (
            np.bincount(self.inverse[:, t], minlength=self.values.size).tolist() if r.size else []
        )
        return RankStability(
            full_rank=full_rank,
            median=med,
            low=low,
            high=high,
            counts=tuple(int(c) for c in counts),
            first_place_share=finite_or_none(np.mean(r == self.best)) if r.size else None,
        )

    def beats(self, n_teams: int) -> tuple[tuple[float | None, ...], ...]:
        """beats[a][b]: share of the rank resamples where a ranks strictly better than b."""
        share = (
            (self.final[:, :, None] < self.final[:, None, :]).mean(axis=0)
            if self.final.shape[0]
            else np.full((n_teams, n_teams), math.nan)
        )
        return tuple(tuple(finite_or_none(v) for v in row) for row in share)


def _kendall_summary(tau_all: FloatArray, qs: Sequence[float]) -> KendallSummary:
    tau = tau_all[np.isfinite(tau_all)]
    median, low, high = _percentiles(tau, (50.0, *qs))
    return KendallSummary(
        mean=finite_or_none(tau.mean()) if tau.size else None,
        median=median,
        low=low,
        high=high,
        n=int(tau.size),
    )


def bootstrap(
    task: int,
    teams: Mapping[str, Records],
    *,
    protocol: Protocol = HECKTOR2025,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> BootstrapResult:
    """Bootstrap over cases of every leaderboard metric and of the final HECKTOR rank.

    ``teams`` maps each team to its per-case records (the ``cases`` of its result
    document); every team must hold the same cases (by ``patient_id``) with the same
    ground truth, else ``ValueError`` naming the team. The cases are put in sorted
    ``patient_id`` order, so the result depends only on the case set, the records and
    ``seed``. Every team is scored on the same ``n_resamples`` resamples.

    Per team and metric: the full-data value and the ``(alpha/2, 1 - alpha/2)``
    percentile interval over the resamples where the metric is defined. Per team: the
    distribution of its final rank (median, percentile interval, counts per rank
    value, share of first places) and, over all teams, Kendall's tau-b between the
    full-data final ranking and each resample's. Resamples where a ranked metric is
    undefined for some team are left out of the rank statistics and counted in
    ``n_degenerate``.
    """
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1), not {alpha!r}")
    s = bootstrap_samples(task, teams, protocol=protocol, n_resamples=n_resamples, seed=seed)
    qs = (100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0))
    names = leaderboard_metrics(task, protocol)
    ranks = _Ranks.of(s)
    team_results = tuple(
        TeamBootstrap(
            team=team,
            metrics={k: _interval(s.full_metrics[k][t], s.metrics[k][:, t], qs) for k in names},
            rank=ranks.stability(t, float(s.full_ranks[t]), qs),
        )
        for t, team in enumerate(s.teams)
    )
    notes = list(s.notes)
    if len(s.teams) < 2:
        notes.append("Kendall's tau needs at least two teams")
    return BootstrapResult(
        task=task,
        n_cases=len(s.case_ids),
        n_resamples=n_resamples,
        seed=seed,
        alpha=alpha,
        protocol=protocol.summary(),
        metric_names=names,
        teams=team_results,
        rank_values=tuple(float(v) for v in ranks.values),
        n_degenerate=int(n_resamples - int(s.valid.sum())),
        kendall_tau=_kendall_summary(s.kendall_tau, qs),
        beats=ranks.beats(len(s.teams)),
        notes=tuple(notes),
    )
