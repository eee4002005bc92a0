"""Every leaderboard metric under case multiplicities: the metrics of a case list in
which case i appears ``w_i`` times, for many weight vectors at once.

With ``w`` the counts, the metrics of docs/scoring.md section 3 become:

- ``gtvp_dsc_mean`` = Σ w_i·d_i / Σ w_i over the cases that count (a case excluded by
  ``gtvp_both_empty = "exclude"`` weighs 0);
- ``gtvn_dsc_agg`` = Σ w_i·num_i / Σ w_i·den_i (its value on empty data from
  :mod:`evaluator.edge_cases`, as in the full data);
- ``gtvn_f1_agg`` from the weighted TP, FP, FN sums;
- ``c_index``: with ``A_ij`` = 1 when (i, j) is comparable with i the earlier event and
  ``K_ij`` = ``A_ij`` x (1 if r_i > r_j, 1/2 if r_i = r_j, else 0),
  num = Σ w_i w_j K_ij and den = Σ w_i w_j A_ij, i.e. ``((W @ K) * W).sum(1)``.
  ``A_ii`` = 0, so two copies of one case are never compared with each other, exactly
  as in the explicitly duplicated case list;
- ``auc`` likewise over (positive, negative) pairs, / (Σ w_pos)(Σ w_neg); the threshold
  metrics from the weighted confusion counts.

With all weights 1 these are the metrics of :func:`evaluator.metrics.aggregate.aggregate`
(to rounding; the tests check 1e-12). Where a metric is undefined for a weighting (no
comparable pair, one class only, every GTVp case excluded) it is NaN.

Memory: the C-index needs an ``n x n`` matrix per team and the AUC an
``n_pos x n_neg`` one; both fine for challenge test sets (hundreds to a few thousand
cases).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from evaluator.edge_cases import edge_value
from evaluator.metrics.aggregate import kind_of
from evaluator.protocol import HECKTOR2025, Hecktor2026Protocol, Protocol
from evaluator.registry import leaderboard_metrics

__all__ = [
    "FloatArray",
    "concordance_matrices",
    "finite_or_none",
    "safe_ratio",
    "weighted_metrics",
]

FloatArray = npt.NDArray[np.float64]


def finite_or_none(x: Any) -> float | None:
    """A JSON-safe float: None for NaN/inf/None (an undefined metric value)."""
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def _if_empty(metric: str, protocol: Protocol = HECKTOR2025) -> float:
    value = edge_value(metric, protocol)
    return math.nan if value is None else value


def _column(records: Sequence[Mapping[str, Any]], key: str) -> FloatArray:
    try:
        return np.asarray([float(r[key]) for r in records], dtype=np.float64)
    except KeyError as exc:
        raise ValueError(f"a case record lacks the field {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a case record holds a non-numeric {key!r}: {exc}") from exc


def safe_ratio(num: FloatArray, den: FloatArray, *, if_zero: float) -> FloatArray:
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
    both_empty = edge_value("gtvp_dsc", protocol)
    counted = np.ones_like(p_den) if both_empty is not None else (p_den != 0).astype(np.float64)
    dsc = safe_ratio(2.0 * p_int, p_den, if_zero=0.0 if both_empty is None else both_empty)
    gtvp = safe_ratio(w @ (dsc * counted), w @ counted, if_zero=math.nan)

    vol = (
        _column(records, "voxel_volume_mm3")
        if protocol.dsc_agg_weighting == "physical"
        else np.ones(len(records))
    )
    n_num = 2.0 * _column(records, "gtvn_intersection") * vol
    n_den = (_column(records, "gtvn_pred_voxels") + _column(records, "gtvn_gt_voxels")) * vol
    dsc_agg = safe_ratio(w @ n_num, w @ n_den, if_zero=_if_empty("gtvn_dsc_agg"))

    tp = w @ _column(records, "gtvn_tp")
    fp = w @ _column(records, "gtvn_fp")
    fn = w @ _column(records, "gtvn_fn")
    f1 = safe_ratio(2.0 * tp, 2.0 * tp + fp + fn, if_zero=_if_empty("gtvn_f1_agg"))
    return {"gtvp_dsc_mean": gtvp, "gtvn_dsc_agg": dsc_agg, "gtvn_f1_agg": f1}


def concordance_matrices(
    times: FloatArray, events: FloatArray, risk: FloatArray, *, meaning: str = "risk"
) -> tuple[FloatArray, FloatArray]:
    """``(A, K)`` of the module docstring: ``A_ij`` = 1 when (i, j) is a comparable
    pair with i the earlier event (t_i < t_j and i has the event; equal times when only
    i has the event), ``K_ij`` = ``A_ij`` x concordance credit (1, 1/2 on tied
    predictions, 0). The credit is 1 when the earlier event has the higher risk, or
    with ``meaning="time"`` the lower predicted time. Each comparable unordered pair
    appears exactly once; the diagonal is 0."""
    e = events.astype(bool)
    earlier = times[:, None] < times[None, :]
    same = (times[:, None] == times[None, :]) & ~e[None, :]
    a = ((earlier | same) & e[:, None]).astype(np.float64)
    first, second = risk[:, None], risk[None, :]
    right = (first < second) if meaning == "time" else (first > second)
    credit = right + 0.5 * (first == second)
    return a, a * credit


def _task2(records: Sequence[Mapping[str, Any]], w: FloatArray) -> dict[str, FloatArray]:
    a, k = concordance_matrices(
        _column(records, "time"), _column(records, "event"), _column(records, "prediction")
    )
    return {"c_index": safe_ratio(_pair_sum(w, k), _pair_sum(w, a), if_zero=math.nan)}


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
    auc = safe_ratio(_pair_sum(w_pos, credit.astype(np.float64), w_neg), n_pos * n_neg, if_zero=nan)

    predicted = s >= float(protocol.hpv_threshold)
    tp = w @ (y & predicted).astype(np.float64)
    fn = w @ (y & ~predicted).astype(np.float64)
    tn = w @ (~y & ~predicted).astype(np.float64)
    fp = w @ (~y & predicted).astype(np.float64)
    sens = safe_ratio(tp, tp + fn, if_zero=0.0)
    spec = safe_ratio(tn, tn + fp, if_zero=0.0)
    f1_pos = safe_ratio(2.0 * tp, 2.0 * tp + fp + fn, if_zero=0.0)
    f1_neg = safe_ratio(2.0 * tn, 2.0 * tn + fn + fp, if_zero=0.0)
    out = {
        "auc": auc,
        "balanced_accuracy": (sens + spec) / 2.0,
        "sensitivity": sens,
        "specificity": spec,
        "f1_macro": (f1_pos + f1_neg) / 2.0,
        "f1_weighted": safe_ratio(f1_pos * n_pos + f1_neg * n_neg, n_pos + n_neg, if_zero=nan),
    }
    # As in the full data, a resample holding one class only scores nothing.
    return {k: np.where(defined, v, nan) for k, v in out.items()}


def _two_label(
    records: Sequence[Mapping[str, Any]], w: FloatArray, protocol: Hecktor2026Protocol
) -> dict[str, FloatArray]:
    physical = protocol.dsc_agg_weighting == "physical"
    vol = _column(records, "voxel_volume_mm3") if physical else np.ones(len(records))
    out: dict[str, FloatArray] = {}
    for label in ("gtvp", "gtvn"):
        inter = _column(records, f"{label}_intersection")
        den = _column(records, f"{label}_pred_voxels") + _column(records, f"{label}_gt_voxels")
        if protocol.dsc_mode == "aggregated":
            out[f"seg_{label}_dsc"] = safe_ratio(
                w @ (2.0 * inter * vol),
                w @ (den * vol),
                if_zero=_if_empty(f"seg_{label}_dsc", protocol),
            )
            continue
        both_empty = edge_value(f"{label}_dsc", protocol)
        counted = np.ones_like(den) if both_empty is not None else (den != 0).astype(np.float64)
        dsc = safe_ratio(2.0 * inter, den, if_zero=0.0 if both_empty is None else both_empty)
        out[f"seg_{label}_dsc"] = safe_ratio(w @ (dsc * counted), w @ counted, if_zero=math.nan)
    out["seg_dsc"] = (out["seg_gtvp_dsc"] + out["seg_gtvn_dsc"]) / 2.0
    return out


def _rfs(
    records: Sequence[Mapping[str, Any]], w: FloatArray, protocol: Hecktor2026Protocol
) -> dict[str, FloatArray]:
    a, k = concordance_matrices(
        _column(records, "time"),
        _column(records, "event"),
        _column(records, "prediction"),
        meaning=protocol.rfs_meaning,
    )
    return {"rfs_cindex": safe_ratio(_pair_sum(w, k), _pair_sum(w, a), if_zero=math.nan)}


def _staging_axis(
    records: Sequence[Mapping[str, Any]], w: FloatArray, axis: str, stages: Sequence[str]
) -> dict[str, FloatArray]:
    truth = np.asarray([str(r[f"{axis}_stage"]) for r in records], dtype=object)
    pred = np.asarray([str(r[f"{axis}_prediction"]) for r in records], dtype=object)
    recalls = []
    out: dict[str, FloatArray] = {}
    for stage in stages:
        is_true = (truth == stage).astype(np.float64)
        hit = ((truth == stage) & (pred == stage)).astype(np.float64)
        recall = safe_ratio(w @ hit, w @ is_true, if_zero=math.nan)
        out[f"{axis}_recall_{stage.lower()}"] = recall
        recalls.append(recall)
    stacked = np.stack(recalls)  # stages x R
    present = np.isfinite(stacked)
    n_present = present.sum(axis=0)
    total = np.where(present, stacked, 0.0).sum(axis=0)
    out[f"{axis}_bacc"] = safe_ratio(total, n_present.astype(np.float64), if_zero=math.nan)
    return out


def _staging(
    records: Sequence[Mapping[str, Any]], w: FloatArray, protocol: Hecktor2026Protocol
) -> dict[str, FloatArray]:
    out = _staging_axis(records, w, "t", protocol.t_stages)
    out.update(_staging_axis(records, w, "n", protocol.n_stages))
    out["staging_bacc"] = (out["t_bacc"] + out["n_bacc"]) / 2.0
    return out


def _weighted(
    task: int, records: Sequence[Mapping[str, Any]], w: FloatArray, protocol: Protocol
) -> dict[str, FloatArray]:
    """The weighted form of ``task``'s scoring component under ``protocol``."""
    kind = kind_of(task, protocol)
    if kind == "segmentation_hecktor2025":
        return _task1(records, w, protocol)
    if kind == "survival_risk":
        return _task2(records, w)
    if kind == "hpv_status":
        return _task3(records, w, protocol)
    if not isinstance(protocol, Hecktor2026Protocol):
        raise TypeError(f"the scoring component {kind!r} reads switches of hecktor2026")
    if kind == "segmentation_two_label":
        return _two_label(records, w, protocol)
    if kind == "survival_rfs":
        return _rfs(records, w, protocol)
    if kind == "staging":
        return _staging(records, w, protocol)
    raise ValueError(f"no weighted form for the scoring component {kind!r}")


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
    if task not in (1, 2, 3):
        raise ValueError(f"task must be 1, 2 or 3, not {task!r}")
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
    out = _weighted(task, records, w2, protocol)
    missing = set(leaderboard_metrics(task, protocol)) - set(out)
    if missing:  # pragma: no cover - guards a registry change
        raise ValueError(f"no weighted form for the registered metric(s) {sorted(missing)}")
    return {k: (v[0] if single else v) for k, v in out.items()}
