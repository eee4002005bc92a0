"""Ranking analysis over stored per-case records: bootstrap intervals, rank stability
and per-centre breakdowns. Pure: numpy and scipy only, no image is read.

Bootstrap over cases
--------------------
A resample draws ``n`` cases with replacement. It is represented by its **count
vector** ``w`` (how many times each case was drawn), so ``R`` resamples are an
``R x n`` integer matrix ``W`` and every metric of every resample is a few matrix
products; no case list is ever materialised. Every team is evaluated on the *same*
rows of ``W``, so the ranks of one resample are comparable.

With ``w`` the counts, the metrics of SPEC section 3 become:

- ``gtvp_dsc_mean`` = Σ w_i·d_i / Σ w_i over the cases that count (a case excluded by
  ``gtvp_both_empty = "exclude"`` weighs 0);
- ``gtvn_dsc_agg`` = Σ w_i·num_i / Σ w_i·den_i (Σ = 0 -> 1.0, as in the full data);
- ``gtvn_f1_agg`` from the weighted TP, FP, FN sums;
- ``c_index``: with ``A_ij`` = 1 when (i, j) is comparable with i the earlier event and
  ``K_ij`` = ``A_ij`` x (1 if r_i > r_j, 1/2 if r_i = r_j, else 0),
  num = Σ w_i w_j K_ij and den = Σ w_i w_j A_ij, i.e. ``((W @ K) * W).sum(1)``.
  ``A_ii`` = 0, so two copies of one case are never compared with each other, exactly
  as in the explicitly duplicated case list;
- ``auc`` likewise over (positive, negative) pairs, / (Σ w_pos)(Σ w_neg); the threshold
  metrics from the weighted confusion counts.

With all weights 1 these are the full-data metrics of :func:`evaluator.scoring.aggregate`
(to rounding; the tests check 1e-12). A resample where a metric is undefined (no
comparable pair, one class only, every GTVp case excluded) gives NaN for it; intervals
use ``nanpercentile`` and the counts of such resamples are reported. Rank statistics
use only the resamples where every ranked metric of every team is defined.

The HECKTOR final rank (SPEC section 4, :mod:`evaluator.ranking`) is computed for all
resamples at once with ``scipy.stats.rankdata(axis=1, method="average")``, directions
from :mod:`evaluator.registry`. Kendall's tau-b between the full-data final ranking and
each resample's is computed over all team pairs at once (it equals
``scipy.stats.kendalltau``).

Memory: the C-index needs an ``n x n`` matrix per team and the AUC an
``n_pos x n_neg`` one; both fine for challenge test sets (hundreds to a few thousand
cases).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

from evaluator.errors import ScoringError
from evaluator.protocol import HECKTOR2025, Protocol
from evaluator.ranking import TASK1_GTVN, TASK1_GTVP, rank_rows
from evaluator.registry import BY_NAME, metrics_of, ranked_metrics

__all__ = [
    "BootstrapResult",
    "BootstrapSamples",
    "CenterResult",
    "KendallSummary",
    "MetricInterval",
    "RankStability",
    "TeamBootstrap",
    "bootstrap",
    "bootstrap_samples",
    "case_center",
    "kendall_tau_b",
    "leaderboard_metrics",
    "per_center",
    "rank_matrix",
    "resample_weights",
    "weighted_metrics",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# The case fields that come from the ground truth: every team must agree on them.
TRUTH_FIELDS: dict[int, tuple[str, ...]] = {
    1: ("gtvp_gt_voxels", "gtvn_gt_voxels", "voxel_volume_mm3"),
    2: ("time", "event"),
    3: ("label",),
}


def _check_task(task: int) -> None:
    if task not in (1, 2, 3):
        raise ValueError(f"task must be 1, 2 or 3, not {task!r}")


def leaderboard_metrics(task: int) -> tuple[str, ...]:
    """The metrics a leaderboard shows for ``task`` (registry order): the scores, not
    the counts."""
    _check_task(task)
    return tuple(m.name for m in metrics_of(task) if m.kind == "score")


# --- resampling ------------------------------------------------------------------------


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


# --- weighted metrics ------------------------------------------------------------------


def _column(records: Sequence[Mapping[str, Any]], key: str) -> FloatArray:
    try:
        return np.asarray([float(r[key]) for r in records], dtype=np.float64)
    except KeyError as exc:
        raise ValueError(f"a case record lacks the field {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a case record holds a non-numeric {key!r}: {exc}") from exc


def _ratio(num: FloatArray, den: FloatArray, *, if_zero: float) -> FloatArray:
    """num / den elementwise, ``if_zero`` where den == 0 (NaN for "undefined")."""
    out = np.full(np.broadcast(num, den).shape, if_zero, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _pair_sum(w: FloatArray, m: FloatArray, v: FloatArray | None = None) -> FloatArray:
    """Σ_ij w_ri m_ij v_rj for every row r (v defaults to w)."""
    return np.asarray(np.einsum("rj,rj->r", w @ m, w if v is None else v), dtype=np.float64)


def _task1(
    records: Sequence[Mapping[str, Any]], w: FloatArray, protocol: Protocol
) -> dict[str, FloatArray]:
    p_int = _column(records, "gtvp_intersection")
    p_den = _column(records, "gtvp_pred_voxels") + _column(records, "gtvp_gt_voxels")
    both_empty = protocol.both_empty_value
    counted = np.ones_like(p_den) if both_empty is not None else (p_den != 0).astype(np.float64)
    dsc = _ratio(2.0 * p_int, p_den, if_zero=0.0 if both_empty is None else both_empty)
    gtvp = _ratio(w @ (dsc * counted), w @ counted, if_zero=math.nan)

    vol = (
        _column(records, "voxel_volume_mm3")
        if protocol.dsc_agg_weighting == "physical"
        else np.ones(len(records))
    )
    n_num = 2.0 * _column(records, "gtvn_intersection") * vol
    n_den = (_column(records, "gtvn_pred_voxels") + _column(records, "gtvn_gt_voxels")) * vol
    dsc_agg = _ratio(w @ n_num, w @ n_den, if_zero=1.0)

    tp = w @ _column(records, "gtvn_tp")
    fp = w @ _column(records, "gtvn_fp")
    fn = w @ _column(records, "gtvn_fn")
    f1 = _ratio(2.0 * tp, 2.0 * tp + fp + fn, if_zero=1.0)
    return {"gtvp_dsc_mean": gtvp, "gtvn_dsc_agg": dsc_agg, "gtvn_f1_agg": f1}


def concordance_matrices(
    times: FloatArray, events: FloatArray, risk: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """``(A, K)`` of the module docstring: ``A_ij`` = 1 when (i, j) is a comparable
    pair with i the earlier event (t_i < t_j and i has the event; equal times when only
    i has the event), ``K_ij`` = ``A_ij`` x concordance credit (1, 1/2 on tied risk, 0).
    Each comparable unordered pair appears exactly once; the diagonal is 0."""
    e = events.astype(bool)
    earlier = times[:, None] < times[None, :]
    same = (times[:, None] == times[None, :]) & ~e[None, :]
    a = ((earlier | same) & e[:, None]).astype(np.float64)
    credit = (risk[:, None] > risk[None, :]) + 0.5 * (risk[:, None] == risk[None, :])
    return a, a * credit


def _task2(records: Sequence[Mapping[str, Any]], w: FloatArray) -> dict[str, FloatArray]:
    a, k = concordance_matrices(
        _column(records, "time"), _column(records, "event"), _column(records, "prediction")
    )
    return {"c_index": _ratio(_pair_sum(w, k), _pair_sum(w, a), if_zero=math.nan)}


def _task3(
    records: Sequence[Mapping[str, Any]], w: FloatArray, protocol: Protocol
) -> dict[str, FloatArray]:
    y = _column(records, "label").astype(bool)
    s = _column(records, "prediction")
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    s_pn = s[pos][:, None] - s[neg][None, :]
    credit = (s_pn > 0) + 0.5 * (s_pn == 0)
    w_pos, w_neg = w[:, pos], w[:, neg]
    n_pos, n_neg = w_pos.sum(axis=1), w_neg.sum(axis=1)
    defined = (n_pos > 0) & (n_neg > 0)
    nan = math.nan
    auc = _ratio(_pair_sum(w_pos, credit.astype(np.float64), w_neg), n_pos * n_neg, if_zero=nan)

    predicted = s >= float(protocol.hpv_threshold)
    tp = w @ (y & predicted).astype(np.float64)
    fn = w @ (y & ~predicted).astype(np.float64)
    tn = w @ (~y & ~predicted).astype(np.float64)
    fp = w @ (~y & predicted).astype(np.float64)
    sens = _ratio(tp, tp + fn, if_zero=0.0)
    spec = _ratio(tn, tn + fp, if_zero=0.0)
    f1_pos = _ratio(2.0 * tp, 2.0 * tp + fp + fn, if_zero=0.0)
    f1_neg = _ratio(2.0 * tn, 2.0 * tn + fn + fp, if_zero=0.0)
    out = {
        "auc": auc,
        "balanced_accuracy": (sens + spec) / 2.0,
        "sensitivity": sens,
        "specificity": spec,
        "f1_macro": (f1_pos + f1_neg) / 2.0,
        "f1_weighted": _ratio(f1_pos * n_pos + f1_neg * n_neg, n_pos + n_neg, if_zero=nan),
    }
    # As in the full data, a resample holding one class only scores nothing.
    return {k: np.where(defined, v, nan) for k, v in out.items()}


def weighted_metrics(
    task: int,
    records: Sequence[Mapping[str, Any]],
    weights: npt.ArrayLike,
    *,
    protocol: Protocol = HECKTOR2025,
) -> dict[str, FloatArray]:
    """Every leaderboard metric of one team's ``records`` under case multiplicities.

    ``weights`` is a vector of ``n`` non-negative counts (one per record) or an
    ``R x n`` matrix of them (one row per resample). The result maps each name of
    :func:`leaderboard_metrics` to a float array of shape ``()`` or ``(R,)``; NaN where
    the metric is undefined for that weighting. Integer weights give exactly the
    metrics of the case list in which case i appears ``w_i`` times.
    """
    _check_task(task)
    w = np.asarray(weights, dtype=np.float64)
    single = w.ndim == 1
    w2 = np.atleast_2d(w)
    if w2.ndim != 2 or w2.shape[1] != len(records):
        raise ValueError(
            f"weights must have shape (n,) or (R, n) with n = {len(records)} records, "
            f"found {w.shape}"
        )
    if not np.isfinite(w2).all() or (w2 < 0).any():
        raise ValueError("weights must be finite and >= 0")
    if task == 1:
        out = _task1(records, w2, protocol)
    elif task == 2:
        out = _task2(records, w2)
    else:
        out = _task3(records, w2, protocol)
    missing = set(leaderboard_metrics(task)) - set(out)
    if missing:  # pragma: no cover - guards a registry change
        raise ValueError(f"no weighted form for the registered metric(s) {sorted(missing)}")
    return {k: (v[0] if single else v) for k, v in out.items()}


# --- vectorised ranking ----------------------------------------------------------------


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
    _check_task(task)

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
    return _ratio(s_rk @ s_ref, den, if_zero=math.nan)


# --- results ---------------------------------------------------------------------------


def _num(x: Any) -> float | None:
    """A JSON-safe float: None for NaN/inf/None."""
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class MetricInterval:
    """One team's metric: the full-data value and its bootstrap distribution."""

    estimate: float | None  # full data, as on the leaderboard (None: undefined)
    low: float | None  # percentile interval, (alpha/2, 1 - alpha/2)
    high: float | None
    mean: float | None  # mean over the defined resamples
    std: float | None  # bootstrap standard error
    n_degenerate: int  # resamples where this metric is undefined

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "mean": self.mean,
            "std": self.std,
            "n_degenerate": self.n_degenerate,
        }


@dataclass(frozen=True)
class RankStability:
    """One team's final HECKTOR rank across the (non-degenerate) resamples."""

    full_rank: float  # rank on the full data (as on the leaderboard)
    median: float | None
    low: float | None
    high: float | None
    counts: tuple[int, ...]  # aligned with BootstrapResult.rank_values
    first_place_share: float | None  # share of resamples where it is (tied) first

    def to_dict(self) -> dict[str, Any]:
        return {
            "full_rank": self.full_rank,
            "median": self.median,
            "low": self.low,
            "high": self.high,
            "counts": list(self.counts),
            "first_place_share": self.first_place_share,
        }


@dataclass(frozen=True)
class TeamBootstrap:
    team: str
    metrics: dict[str, MetricInterval]
    rank: RankStability

    def to_dict(self) -> dict[str, Any]:
        return {
            "team": self.team,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "rank": self.rank.to_dict(),
        }


@dataclass(frozen=True)
class KendallSummary:
    """Kendall's tau-b between the full-data final ranking and each resample's."""

    mean: float | None
    median: float | None
    low: float | None
    high: float | None
    n: int  # resamples where it is defined

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "median": self.median,
            "low": self.low,
            "high": self.high,
            "n": self.n,
        }


@dataclass(frozen=True)
class BootstrapResult:
    task: int
    n_cases: int
    n_resamples: int
    seed: int
    alpha: float
    protocol: dict[str, str]  # name, version, sha256
    metric_names: tuple[str, ...]
    teams: tuple[TeamBootstrap, ...]  # in the order given
    rank_values: tuple[float, ...]  # the distinct final ranks seen, ascending
    n_degenerate: int  # resamples left out of the rank statistics
    kendall_tau: KendallSummary
    # beats[a][b]: share of rank resamples where team a ranks strictly better than b
    # (None without any rank resample)
    beats: tuple[tuple[float | None, ...], ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def team_names(self) -> tuple[str, ...]:
        return tuple(t.team for t in self.teams)

    def team(self, name: str) -> TeamBootstrap:
        for t in self.teams:
            if t.team == name:
                return t
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "n_cases": self.n_cases,
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "alpha": self.alpha,
            "protocol": dict(self.protocol),
            "metric_names": list(self.metric_names),
            "teams": [t.to_dict() for t in self.teams],
            "rank_values": list(self.rank_values),
            "n_degenerate": self.n_degenerate,
            "kendall_tau": self.kendall_tau.to_dict(),
            "beats": [list(row) for row in self.beats],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
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


# --- bootstrap -------------------------------------------------------------------------


def _aligned(
    task: int, teams: Mapping[str, Sequence[Mapping[str, Any]]]
) -> tuple[tuple[str, ...], dict[str, list[Mapping[str, Any]]]]:
    """Every team's records in one common case order (sorted patient ids), after
    checking that all teams hold the same cases with the same ground truth."""
    if not teams:
        raise ValueError("bootstrap needs at least one team")
    reference: dict[str, Mapping[str, Any]] | None = None
    ref_team = ""
    by_team: dict[str, dict[str, Mapping[str, Any]]] = {}
    for team, records in teams.items():
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
        if reference is None:
            reference, ref_team = ids, team
        elif ids.keys() != reference.keys():
            missing = sorted(reference.keys() - ids.keys())
            extra = sorted(ids.keys() - reference.keys())
            parts = []
            if missing:
                parts.append(
                    f"lacks {len(missing)} case(s) of {ref_team!r} ({', '.join(missing[:5])})"
                )
            if extra:
                parts.append(
                    f"has {len(extra)} case(s) {ref_team!r} lacks ({', '.join(extra[:5])})"
                )
            raise ValueError(
                f"team {team!r} is not scored on the same cases as team {ref_team!r}: "
                + "; ".join(parts)
                + "; a bootstrap compares teams on one common case set"
            )
        else:
            for pid, rec in ids.items():
                ref = reference[pid]
                for key in TRUTH_FIELDS[task]:
                    if key in rec and key in ref and float(rec[key]) != float(ref[key]):
                        raise ValueError(
                            f"team {team!r}, case {pid!r}: {key} = {rec[key]!r} differs from "
                            f"team {ref_team!r}'s {ref[key]!r}; the teams were not scored "
                            "against the same ground truth"
                        )
        by_team[team] = ids
    case_ids = tuple(sorted(by_team[ref_team]))
    return case_ids, {t: [ids[c] for c in case_ids] for t, ids in by_team.items()}


def _full_data(
    task: int, records: Sequence[Mapping[str, Any]], protocol: Protocol, names: Sequence[str]
) -> tuple[dict[str, float], str | None]:
    """The leaderboard's values (``aggregate``); where it refuses, the metrics that are
    still defined on the full data (weights 1), NaN for the others, and the reason."""
    from evaluator.scoring import aggregate

    try:
        agg = aggregate(task, records, protocol)
        return {n: float(agg[n]) for n in names}, None
    except ScoringError as exc:
        ones = weighted_metrics(task, records, np.ones(len(records)), protocol=protocol)
        return {n: float(ones[n]) for n in names}, str(exc)


def bootstrap_samples(
    task: int,
    teams: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    protocol: Protocol = HECKTOR2025,
    n_resamples: int = 1000,
    seed: int = 0,
) -> BootstrapSamples:
    """The resample arrays of :func:`bootstrap` (see there)."""
    _check_task(task)
    case_ids, aligned = _aligned(task, teams)
    names = leaderboard_metrics(task)
    team_names = tuple(aligned)
    n = len(case_ids)
    w = resample_weights(n, n_resamples, seed=seed)
    wf = w.astype(np.float64)

    notes: list[str] = []
    full: dict[str, list[float]] = {k: [] for k in names}
    per_team: dict[str, list[FloatArray]] = {k: [] for k in names}
    for team in team_names:
        values, reason = _full_data(task, aligned[team], protocol, names)
        if reason is not None:
            notes.append(f"team {team!r}: on the full data, {reason}")
        for k in names:
            full[k].append(values[k])
        sampled = weighted_metrics(task, aligned[team], wf, protocol=protocol)
        for k in names:
            per_team[k].append(sampled[k])

    metrics = {
        k: np.stack(v, axis=1).reshape(n_resamples, len(team_names)) for k, v in per_team.items()
    }
    full_metrics = {k: np.asarray(v, dtype=np.float64) for k, v in full.items()}
    ranked = [m.name for m in ranked_metrics(task)]
    full_rows = [{k: full_metrics[k][t] for k in ranked} for t in range(len(team_names))]
    full_ranks = np.asarray([r["final"] for r in rank_rows(task, full_rows)], dtype=np.float64)
    ranks = rank_matrix(task, {k: metrics[k] for k in ranked})
    valid = np.all([np.isfinite(metrics[k]).all(axis=1) for k in ranked], axis=0).reshape(
        n_resamples
    )
    tau = kendall_tau_b(full_ranks, ranks["final"]) if n_resamples else np.zeros(0)
    tau = np.where(valid, tau, math.nan)
    return BootstrapSamples(
        teams=team_names,
        case_ids=case_ids,
        weights=w,
        metrics=metrics,
        ranks=ranks,
        valid=valid,
        full_metrics=full_metrics,
        full_ranks=full_ranks,
        kendall_tau=tau,
        notes=tuple(notes),
    )


def _percentiles(x: FloatArray, qs: Sequence[float]) -> list[float | None]:
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return [None for _ in qs]
    return [_num(v) for v in np.percentile(finite, list(qs))]


def bootstrap(
    task: int,
    teams: Mapping[str, Sequence[Mapping[str, Any]]],
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
    n_teams = len(s.teams)

    final = s.ranks["final"][s.valid]  # V x T
    rank_values, inverse = np.unique(final, return_inverse=True)
    inverse = inverse.reshape(final.shape)
    best = final.min(axis=1, keepdims=True) if final.size else final

    team_results = []
    for t, team in enumerate(s.teams):
        intervals = {}
        for k in leaderboard_metrics(task):
            x = s.metrics[k][:, t]
            finite = x[np.isfinite(x)]
            low, high = _percentiles(x, qs)
            intervals[k] = MetricInterval(
                estimate=_num(s.full_metrics[k][t]),
                low=low,
                high=high,
                mean=_num(finite.mean()) if finite.size else None,
                std=_num(finite.std(ddof=1)) if finite.size > 1 else None,
                n_degenerate=int(x.size - finite.size),
            )
        r = final[:, t]
        med, low, high = _percentiles(r, (50.0, *qs))
        counts: list[int] = (
            np.bincount(inverse[:, t], minlength=rank_values.size).tolist() if r.size else []
        )
        team_results.append(
            TeamBootstrap(
                team=team,
                metrics=intervals,
                rank=RankStability(
                    full_rank=float(s.full_ranks[t]),
                    median=med,
                    low=low,
                    high=high,
                    counts=tuple(int(c) for c in counts),
                    first_place_share=_num(np.mean(r == best[:, 0])) if r.size else None,
                ),
            )
        )

    # beats[a, b]: share of the rank resamples where a ranks strictly better than b
    beats = (
        (final[:, :, None] < final[:, None, :]).mean(axis=0)
        if final.shape[0]
        else np.full((n_teams, n_teams), math.nan)
    )
    tau = s.kendall_tau[np.isfinite(s.kendall_tau)]
    t_med, t_low, t_high = _percentiles(tau, (50.0, *qs))
    notes = list(s.notes)
    if n_teams < 2:
        notes.append("Kendall's tau needs at least two teams")
    return BootstrapResult(
        task=task,
        n_cases=len(s.case_ids),
        n_resamples=n_resamples,
        seed=seed,
        alpha=alpha,
        protocol=protocol.summary(),
        metric_names=leaderboard_metrics(task),
        teams=tuple(team_results),
        rank_values=tuple(float(v) for v in rank_values),
        n_degenerate=int(n_resamples - int(s.valid.sum())),
        kendall_tau=KendallSummary(
            mean=_num(tau.mean()) if tau.size else None,
            median=t_med,
            low=t_low,
            high=t_high,
            n=int(tau.size),
        ),
        beats=tuple(tuple(_num(v) for v in row) for row in beats),
        notes=tuple(notes),
    )


# --- per centre ------------------------------------------------------------------------


def case_center(record: Mapping[str, Any]) -> str:
    """The record's ``center``, else the PatientID prefix before the first ``-``."""
    center = record.get("center")
    if center not in (None, ""):
        return str(center)
    return str(record.get("patient_id", "")).split("-", 1)[0]


@dataclass(frozen=True)
class CenterResult:
    """The metrics of one centre's cases; ``None`` where undefined, with the reason."""

    center: str
    n_cases: int
    metrics: dict[str, float | int | None]
    undefined: dict[str, str]  # metric -> why it is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "center": self.center,
            "n_cases": self.n_cases,
            "metrics": {
                k: (_num(v) if isinstance(v, float) else v) for k, v in self.metrics.items()
            },
            "undefined": dict(self.undefined),
        }


def per_center(
    task: int, cases: Sequence[Mapping[str, Any]], *, protocol: Protocol = HECKTOR2025
) -> dict[str, CenterResult]:
    """Every metric of ``task`` on each centre's subset of ``cases`` (sorted by centre).

    Values come from :func:`evaluator.scoring.aggregate`. When it refuses a centre
    (e.g. one HPV class only, or no comparable pair), each metric that is still defined
    on that subset is reported and every other one is ``None`` with the reason.
    """
    _check_task(task)
    from evaluator.scoring import aggregate

    groups: dict[str, list[Mapping[str, Any]]] = {}
    for rec in cases:
        groups.setdefault(case_center(rec), []).append(rec)
    out: dict[str, CenterResult] = {}
    for center in sorted(groups):
        subset = groups[center]
        try:
            agg = aggregate(task, subset, protocol)
        except ScoringError as exc:
            ones = weighted_metrics(task, subset, np.ones(len(subset)), protocol=protocol)
            metrics: dict[str, float | int | None] = {}
            undefined: dict[str, str] = {}
            for k in leaderboard_metrics(task):
                v = _num(ones[k])
                metrics[k] = v
                if v is None:
                    undefined[k] = str(exc)
            out[center] = CenterResult(center, len(subset), metrics, undefined)
            continue
        metrics = {k: v for k, v in agg.items() if k != "n_cases"}
        out[center] = CenterResult(center, len(subset), metrics, {})
    return out
