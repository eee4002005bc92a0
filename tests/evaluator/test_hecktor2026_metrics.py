"""HECKTOR 2026 metrics on hand-worked examples and against scikit-learn and lifelines:
two-label DSC (per patient, aggregated), the RFS C-index read as a risk or as a time,
T/N staging balanced accuracy and per-stage recall; the weighted forms; the ranking."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines.utils import concordance_index
from sklearn.metrics import balanced_accuracy_score, recall_score

from evaluator.edge_cases import edge_value
from evaluator.errors import ScoringError
from evaluator.metrics.aggregate import aggregate
from evaluator.metrics.survival import c_index
from evaluator.metrics.weighted import weighted_metrics
from evaluator.protocol import HECKTOR2026
from evaluator.ranking import combined_task_ranks, overall_ranks, rank_matrix, rank_rows
from evaluator.registry import leaderboard_metrics

AGG = HECKTOR2026.with_changes(dsc_mode="aggregated")


def seg(
    pid: str,
    p: tuple[int, int, int],
    n: tuple[int, int, int],
    vol: float = 1.0,
) -> dict[str, Any]:
    """A Task 1 record from (intersection, predicted, true) voxel counts per label."""
    return {
        "patient_id": pid,
        "center": pid.split("-")[0],
        "gtvp_intersection": p[0],
        "gtvp_pred_voxels": p[1],
        "gtvp_gt_voxels": p[2],
        "gtvn_intersection": n[0],
        "gtvn_pred_voxels": n[1],
        "gtvn_gt_voxels": n[2],
        "voxel_volume_mm3": vol,
    }


# A: GTVp 2*30/(40+50) = 2/3, GTVn 2*10/(20+20) = 1/2
# B: GTVp 2*8/(10+10) = 4/5, GTVn empty on both sides (N0, predicted N0)
# C: GTVp 2*0/(5+5) = 0, GTVn 2*0/(4+0) = 0 (a missed node)
CASES = [
    seg("A-1", (30, 40, 50), (10, 20, 20), vol=2.0),
    seg("B-1", (8, 10, 10), (0, 0, 0)),
    seg("C-1", (0, 5, 5), (0, 0, 4)),
]


def test_per_patient_dsc_hand_worked() -> None:
    got = aggregate(1, CASES, HECKTOR2026)
    # GTVp mean (2/3 + 4/5 + 0) / 3 = 22/45; GTVn mean (1/2 + 1.0 + 0) / 3 = 1/2
    assert got["seg_gtvp_dsc"] == pytest.approx(22 / 45)
    assert got["seg_gtvn_dsc"] == pytest.approx(1 / 2)
    assert got["seg_dsc"] == pytest.approx((22 / 45 + 1 / 2) / 2)


def test_per_patient_both_empty_switches() -> None:
    zero = aggregate(1, CASES, HECKTOR2026.with_changes(gtvn_both_empty="0.0"))
    assert zero["seg_gtvn_dsc"] == pytest.approx((1 / 2 + 0 + 0) / 3)
    excl = aggregate(1, CASES, HECKTOR2026.with_changes(gtvn_both_empty="exclude"))
    assert excl["seg_gtvn_dsc"] == pytest.approx((1 / 2 + 0) / 2)  # B left out
    with pytest.raises(ScoringError, match="GTVN DSC is undefined"):
        aggregate(1, [CASES[1]], HECKTOR2026.with_changes(gtvn_both_empty="exclude"))


def test_aggregated_dsc_hand_worked() -> None:
    got = aggregate(1, CASES, AGG)
    # physical weights (A's voxels are 2 mm^3): GTVp 2*(60+8+0) / (180+20+10) = 136/210
    # GTVn 2*(20+0+0) / (80+0+4) = 40/84
    assert got["seg_gtvp_dsc"] == pytest.approx(136 / 210)
    assert got["seg_gtvn_dsc"] == pytest.approx(40 / 84)
    voxels = aggregate(1, CASES, AGG.with_changes(dsc_agg_weighting="voxels"))
    assert voxels["seg_gtvp_dsc"] == pytest.approx(2 * 38 / (90 + 20 + 10))
    # no GTVn voxel anywhere: the declared value 1.0
    none = aggregate(1, [CASES[1]], AGG)
    assert none["seg_gtvn_dsc"] == edge_value("seg_gtvn_dsc", AGG) == 1.0


@pytest.mark.parametrize(
    "protocol", [HECKTOR2026, AGG, HECKTOR2026.with_changes(gtvn_both_empty="exclude")]
)
def test_weighted_two_label_equals_the_aggregate_and_duplication(protocol: Any) -> None:
    full = aggregate(1, CASES, protocol)
    ones = weighted_metrics(1, CASES, np.ones(3), protocol=protocol)
    for k in leaderboard_metrics(1, protocol):
        assert float(ones[k]) == pytest.approx(full[k], abs=1e-12)
    dup = aggregate(1, [CASES[0], CASES[0], CASES[2]], protocol)
    w = weighted_metrics(1, CASES, np.array([2.0, 0.0, 1.0]), protocol=protocol)
    for k in leaderboard_metrics(1, protocol):
        assert float(w[k]) == pytest.approx(dup[k], abs=1e-12)


# --- Task 2 -----------------------------------------------------------------------------
TIMES = [5.0, 10.0, 15.0, 20.0]
EVENTS = [1, 1, 0, 1]


def _rfs(preds: list[float]) -> list[dict[str, Any]]:
    return [
        {"patient_id": f"X-{i}", "prediction": p, "time": t, "event": e}
        for i, (p, t, e) in enumerate(zip(preds, TIMES, EVENTS, strict=True))
    ]


def test_rfs_risk_and_time_hand_worked() -> None:
    # comparable pairs (earlier event first): (5,10) (5,15) (5,20) (10,15) (10,20): 5 pairs
    # (15 is censored, so (15,20) is not comparable)
    risk = [0.9, 0.5, 0.7, 0.1]
    # risk: concordant when the earlier has the higher risk:
    # (.9,.5) yes (.9,.7) yes (.9,.1) yes (.5,.7) no (.5,.1) yes -> 4/5
    assert aggregate(2, _rfs(risk), HECKTOR2026)["rfs_cindex"] == pytest.approx(4 / 5)
    assert c_index(TIMES, EVENTS, risk) == pytest.approx(
        concordance_index(TIMES, [-r for r in risk], EVENTS)
    )
    # predicted times in days: concordant when the earlier event has the shorter time
    days = [300.0, 900.0, 400.0, 1200.0]
    # (300,900) yes (300,400) yes (300,1200) yes (900,400) no (900,1200) yes -> 4/5
    time_p = HECKTOR2026.with_changes(rfs_meaning="time")
    assert aggregate(2, _rfs(days), time_p)["rfs_cindex"] == pytest.approx(4 / 5)
    assert aggregate(2, _rfs(days), time_p)["rfs_cindex"] == pytest.approx(
        concordance_index(TIMES, days, EVENTS)
    )
    # the same numbers read as a risk are the mirror image: 1/5
    assert aggregate(2, _rfs(days), HECKTOR2026)["rfs_cindex"] == pytest.approx(1 / 5)
    # tied predictions count 1/2 either way
    tied = [1.0, 1.0, 1.0, 1.0]
    assert aggregate(2, _rfs(tied), time_p)["rfs_cindex"] == pytest.approx(0.5)


@pytest.mark.parametrize("meaning", ["risk", "time"])
def test_weighted_rfs_equals_lifelines(meaning: str) -> None:
    rng = np.random.default_rng(3)
    t = rng.integers(1, 30, 25).astype(float)
    e = rng.integers(0, 2, 25)
    p = rng.normal(size=25).round(1)
    recs = [
        {"patient_id": f"P-{i}", "prediction": float(p[i]), "time": float(t[i]), "event": int(e[i])}
        for i in range(25)
    ]
    proto = HECKTOR2026.with_changes(rfs_meaning=meaning)
    expected = concordance_index(t, p if meaning == "time" else -p, e)
    assert aggregate(2, recs, proto)["rfs_cindex"] == pytest.approx(expected, abs=1e-12)
    ones = weighted_metrics(2, recs, np.ones(25), protocol=proto)
    assert float(ones["rfs_cindex"]) == pytest.approx(expected, abs=1e-12)


def test_rfs_meaning_is_recorded_in_the_result() -> None:
    assert HECKTOR2026.result_notes(2)["rfs_meaning"] == "risk"
    assert HECKTOR2026.with_changes(rfs_meaning="time").result_notes(2)["rfs_meaning"] == "time"
    assert HECKTOR2026.result_notes(1) == {}


# --- Task 3 -----------------------------------------------------------------------------
def _stage(pid: str, t: str, n: str, tp: str, np_: str) -> dict[str, Any]:
    return {
        "patient_id": pid,
        "center": "C",
        "t_stage": t,
        "n_stage": n,
        "t_prediction": tp,
        "n_prediction": np_,
    }


# T truth T1 T2 T2 T3 T3 T3, predicted T1 T2 T3 T3 T3 T1: recall T1 1/1, T2 1/2, T3 2/3,
#   T4 absent (no value) -> T bacc (1 + 1/2 + 2/3) / 3 = 13/18
# N truth N0 N0 N0 N1 N2 N2, predicted N0 N1 N0 N1 N2 N0: recall N0 2/3, N1 1/1, N2 1/2
#   -> N bacc (2/3 + 1 + 1/2) / 3 = 13/18
STAGES = [
    _stage("C-1", "T1", "N0", "T1", "N0"),
    _stage("C-2", "T2", "N0", "T2", "N1"),
    _stage("C-3", "T2", "N0", "T3", "N0"),
    _stage("C-4", "T3", "N1", "T3", "N1"),
    _stage("C-5", "T3", "N2", "T3", "N2"),
    _stage("C-6", "T3", "N2", "T1", "N0"),
]


def test_staging_hand_worked_and_sklearn() -> None:
    got = aggregate(3, STAGES, HECKTOR2026)
    assert got["t_bacc"] == pytest.approx(13 / 18)
    assert got["n_bacc"] == pytest.approx(13 / 18)
    assert got["staging_bacc"] == pytest.approx(13 / 18)
    for axis in ("t", "n"):
        y = [c[f"{axis}_stage"] for c in STAGES]
        p = [c[f"{axis}_prediction"] for c in STAGES]
        assert got[f"{axis}_bacc"] == pytest.approx(balanced_accuracy_score(y, p))
        for stage in sorted(set(y)):
            r = recall_score(y, p, labels=[stage], average="macro", zero_division=0)
            assert got[f"{axis}_recall_{stage.lower()}"] == pytest.approx(r)
    assert got["t_recall_t1"] == 1.0 and got["t_recall_t2"] == 0.5
    # stages absent from the truth have no recall (not 0)
    assert "t_recall_t4" not in got and "n_recall_n3" not in got


def test_staging_weighted_equals_the_aggregate_and_absent_is_nan() -> None:
    full = aggregate(3, STAGES, HECKTOR2026)
    ones = weighted_metrics(3, STAGES, np.ones(6), protocol=HECKTOR2026)
    for k in leaderboard_metrics(3, HECKTOR2026):
        if k in full:
            assert float(ones[k]) == pytest.approx(full[k], abs=1e-12)
        else:
            assert math.isnan(float(ones[k]))
    w = np.array([3.0, 0.0, 1.0, 2.0, 0.0, 1.0])
    dup = [STAGES[i] for i, k in enumerate(w) for _ in range(int(k))]
    got = weighted_metrics(3, STAGES, w, protocol=HECKTOR2026)
    assert float(got["staging_bacc"]) == pytest.approx(
        aggregate(3, dup, HECKTOR2026)["staging_bacc"]
    )


def test_staging_rejects_stages_outside_the_protocol() -> None:
    bad = [_stage("C-1", "T5", "N0", "T1", "N0")]
    with pytest.raises(ScoringError, match=r"T truth holds stage\(s\) \['T5'\]"):
        aggregate(3, bad, HECKTOR2026)


# --- ranking ----------------------------------------------------------------------------
def test_2026_task_ranks_and_overall_rank_hand_worked() -> None:
    rows1 = [{"seg_dsc": 0.7}, {"seg_dsc": 0.8}, {"seg_dsc": 0.6}]  # A B C
    rows2 = [{"rfs_cindex": 0.70}, {"rfs_cindex": 0.60}, {"rfs_cindex": 0.70}]
    rows3 = [{"staging_bacc": 0.5}, {"staging_bacc": 0.4}, {"staging_bacc": 0.3}]
    r1 = [r["final"] for r in rank_rows(1, rows1, HECKTOR2026)]
    r2 = [r["final"] for r in rank_rows(2, rows2, "hecktor2026")]
    r3 = [r["final"] for r in rank_rows(3, rows3, HECKTOR2026)]
    assert (r1, r2, r3) == ([2.0, 1.0, 3.0], [1.5, 3.0, 1.5], [1.0, 2.0, 3.0])
    assert set(rank_rows(1, rows1, HECKTOR2026)[0]) == {"seg_dsc", "final"}
    teams = ["A", "B", "C"]
    by_task = {t: dict(zip(teams, r, strict=True)) for t, r in ((1, r1), (2, r2), (3, r3))}
    # equal weights: A (2+1.5+1)/3 = 1.5, B (1+3+2)/3 = 2, C (3+1.5+3)/3 = 2.5
    assert overall_ranks(by_task, weights={1: 1, 2: 1, 3: 1}) == {"A": 1.0, "B": 2.0, "C": 3.0}
    # weights 0.25/0.35/0.40: A .5+.525+.4 = 1.425, B .25+1.05+.8 = 2.1, C .75+.525+1.2 = 2.475
    assert HECKTOR2026.overall_weights() == {1: 1.0, 2: 1.0, 3: 1.0}
    w = HECKTOR2026.with_changes(task_weights=(0.25, 0.35, 0.40)).overall_weights()
    assert combined_task_ranks(by_task, weights=w)["A"] == pytest.approx(1.425)
    assert overall_ranks(by_task, weights=w) == {"A": 1.0, "B": 2.0, "C": 3.0}
    # only Task 1 counts: the Task 1 order; a team missing a weighted task ranks last
    assert overall_ranks(by_task, weights={1: 1, 2: 0, 3: 0}) == {"A": 2.0, "B": 1.0, "C": 3.0}
    partial = {1: {"A": 1.0, "B": 2.0}, 2: {"A": 2.0}, 3: {"A": 1.0, "B": 1.0}}
    assert overall_ranks(partial, weights={1: 1, 2: 1, 3: 1}) == {"A": 1.0, "B": 2.0}
    with pytest.raises(ValueError, match="at least one task"):
        overall_ranks(by_task, weights={1: 0})
    m = rank_matrix(2, {"rfs_cindex": [[0.7, 0.6, 0.7], [0.5, 0.6, 0.7]]}, HECKTOR2026)
    assert m["final"].tolist() == [[1.5, 3.0, 1.5], [3.0, 2.0, 1.0]]


@pytest.mark.parametrize("task", [1, 2, 3])
def test_bootstrap_and_per_centre_under_2026(task: int) -> None:
    from evaluator.bootstrap import bootstrap
    from evaluator.centers import per_center

    base = {1: CASES, 2: _rfs([0.9, 0.5, 0.7, 0.1]), 3: STAGES}[task]
    records = [dict(r, center="C" if i % 2 else "D") for i, r in enumerate(base)]
    worse = [dict(r) for r in records]
    if task == 3:
        worse[0]["t_prediction"] = "T2"
    elif task == 2:
        worse[0]["prediction"] = 0.0
    else:
        worse[0]["gtvp_intersection"] = 0
    result = bootstrap(task, {"a": records, "b": worse}, protocol=HECKTOR2026, n_resamples=40)
    assert result.metric_names == leaderboard_metrics(task, HECKTOR2026)
    a = result.team("a").metrics[RANKED_2026[task]]
    assert a.estimate == pytest.approx(aggregate(task, records, HECKTOR2026)[RANKED_2026[task]])
    centres = per_center(task, records, protocol=HECKTOR2026)
    assert set(centres) == {"C", "D"}
    if task == 3:
        # centre D holds C-1, C-3, C-5: T1, T2, T3 once each -> no T4 and no T recall of it
        d = centres["D"].metrics
        assert "t_recall_t4" not in d and d["t_recall_t1"] == 1.0


RANKED_2026 = {1: "seg_dsc", 2: "rfs_cindex", 3: "staging_bacc"}


stage_pairs = st.lists(
    st.tuples(st.sampled_from(("T1", "T2", "T3", "T4")), st.sampled_from(("T1", "T2", "T3", "T4"))),
    min_size=1,
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(t=stage_pairs, n=st.data())
@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.filterwarnings("ignore:A single label was found")
def test_staging_equals_sklearn_on_random_stages(
    t: list[tuple[str, str]], n: st.DataObject
) -> None:
    n_pairs = n.draw(
        st.lists(
            st.tuples(
                st.sampled_from(("N0", "N1", "N2", "N3")), st.sampled_from(("N0", "N1", "N2", "N3"))
            ),
            min_size=len(t),
            max_size=len(t),
        )
    )
    recs = [
        _stage(f"C-{i}", ty, ny, tp, np_)
        for i, ((ty, tp), (ny, np_)) in enumerate(zip(t, n_pairs, strict=True))
    ]
    got = aggregate(3, recs, HECKTOR2026)
    t_bacc = balanced_accuracy_score([a for a, _ in t], [b for _, b in t])
    n_bacc = balanced_accuracy_score([a for a, _ in n_pairs], [b for _, b in n_pairs])
    assert got["t_bacc"] == pytest.approx(t_bacc, abs=1e-12)
    assert got["staging_bacc"] == pytest.approx((t_bacc + n_bacc) / 2, abs=1e-12)
    ones = weighted_metrics(3, recs, np.ones(len(recs)), protocol=HECKTOR2026)
    assert float(ones["staging_bacc"]) == pytest.approx(got["staging_bacc"], abs=1e-12)
    perfect = [dict(r, t_prediction=r["t_stage"], n_prediction=r["n_stage"]) for r in recs]
    assert aggregate(3, perfect, HECKTOR2026)["staging_bacc"] == 1.0
