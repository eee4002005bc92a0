"""Bootstrap, rank stability and per-centre breakdowns (evaluator.bootstrap, evaluator.centers).

Hand-worked examples with explicit resample weights, the vectorised forms against
slow references on explicitly duplicated case lists (an O(n^2) C-index loop,
scikit-learn's AUC, ``aggregate``), and the bootstrap's invariants.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from lifelines.utils import concordance_index
from scipy.stats import kendalltau
from sklearn.metrics import roc_auc_score

from evaluator.bootstrap import bootstrap, bootstrap_samples, kendall_tau_b, resample_weights
from evaluator.bootstrap_result import BootstrapResult
from evaluator.centers import CenterResult, per_center
from evaluator.errors import ScoringError
from evaluator.metrics.aggregate import aggregate
from evaluator.metrics.weighted import weighted_metrics
from evaluator.patients import case_center
from evaluator.protocol import HECKTOR2025
from evaluator.ranking import rank_matrix, rank_rows
from evaluator.registry import leaderboard_metrics

Record = dict[str, Any]


# --- builders ----------------------------------------------------------------------------


def t1_case(
    pid: str,
    gtvp: tuple[int, int, int],
    gtvn: tuple[int, int, int],
    det: tuple[int, int, int],
    vol: float = 1.0,
) -> Record:
    """gtvp/gtvn = (intersection, pred voxels, gt voxels); det = (TP, FP, FN)."""
    return {
        "patient_id": pid,
        "center": pid.split("-")[0],
        "gtvp_intersection": gtvp[0],
        "gtvp_pred_voxels": gtvp[1],
        "gtvp_gt_voxels": gtvp[2],
        "gtvn_intersection": gtvn[0],
        "gtvn_pred_voxels": gtvn[1],
        "gtvn_gt_voxels": gtvn[2],
        "gtvn_tp": det[0],
        "gtvn_fp": det[1],
        "gtvn_fn": det[2],
        "voxel_volume_mm3": vol,
    }


def t2_case(pid: str, time: float, event: int, risk: float) -> Record:
    return {"patient_id": pid, "center": pid.split("-")[0], "time": time, "event": event,
            "prediction": risk}  # fmt: skip


def t3_case(pid: str, label: int, prob: float) -> Record:
    return {"patient_id": pid, "center": pid.split("-")[0], "label": label, "prediction": prob}


def three_task1_cases() -> list[Record]:
    # A: GTVp DSC 2*30/(40+40) = 0.75; GTVn num 2*10*1 = 20, den (20+20)*1 = 40; 1 TP.
    # B: GTVp empty on both sides (DSC 1.0 by default, excluded under "exclude");
    #    GTVn num 0, den (10+0)*2 = 20 (voxel volume 2); 1 FP.
    # C: GTVp DSC 2*10/(20+30) = 0.4; GTVn num 2*5*0.5 = 5, den (10+10)*0.5 = 10;
    #    1 TP, 1 FP, 2 FN.
    return [
        t1_case("X-A", (30, 40, 40), (10, 20, 20), (1, 0, 0), vol=1.0),
        t1_case("X-B", (0, 0, 0), (0, 10, 0), (0, 1, 0), vol=2.0),
        t1_case("X-C", (10, 20, 30), (5, 10, 10), (1, 1, 2), vol=0.5),
    ]


def four_task2_cases() -> list[Record]:
    # (time, event, risk)   a: 2, 1, .9   b: 5, 0, .5   c: 5, 1, .7   d: 8, 0, .7
    # Comparable pairs (earlier event first) and credit:
    #   a-b 1 (.9 > .5), a-c 1, a-d 1, c-b 1 (equal times, only c has the event; .7 > .5),
    #   c-d 1/2 (tied risk .7). b-d: both censored, not comparable.
    # Full data: 4.5 / 5 = 0.9.
    return [
        t2_case("X-a", 2, 1, 0.9),
        t2_case("X-b", 5, 0, 0.5),
        t2_case("X-c", 5, 1, 0.7),
        t2_case("X-d", 8, 0, 0.7),
    ]


def five_task3_cases() -> list[Record]:
    # labels 1 1 0 0 1, probabilities .9 .4 .4 .2 .6 (p2 and n3 tie at .4)
    return [
        t3_case("X-1", 1, 0.9),
        t3_case("X-2", 1, 0.4),
        t3_case("X-3", 0, 0.4),
        t3_case("X-4", 0, 0.2),
        t3_case("X-5", 1, 0.6),
    ]


def expand(records: list[Record], weights: Any) -> list[Record]:
    """The case list in which record i appears weights[i] times."""
    return [r for r, w in zip(records, weights, strict=True) for _ in range(int(w))]


def ref_c_index(records: list[Record]) -> float:
    """Harrell's C of docs/scoring.md, O(n^2) over every ordered pair of (possibly duplicated) cases."""
    num = den = 0.0
    for i, a in enumerate(records):
        for j, b in enumerate(records):
            if i == j or not a["event"]:
                continue
            if a["time"] < b["time"] or (a["time"] == b["time"] and not b["event"]):
                den += 1
                if a["prediction"] > b["prediction"]:
                    num += 1
                elif a["prediction"] == b["prediction"]:
                    num += 0.5
    return num / den


def random_teams(task: int, n_teams: int, n_cases: int, seed: int) -> dict[str, list[Record]]:
    """Teams of decreasing quality on one common case set."""
    rng = np.random.default_rng(seed)
    ids = [f"{'ABC'[i % 3]}-{i:03d}" for i in range(n_cases)]
    teams: dict[str, list[Record]] = {}
    if task == 1:
        gt_p = rng.integers(0, 500, n_cases) * (rng.random(n_cases) < 0.9)
        gt_n = rng.integers(0, 200, n_cases) * (rng.random(n_cases) < 0.8)
        les = rng.integers(0, 4, n_cases) * (gt_n > 0)
        vol = rng.choice([0.5, 1.0, 3.0], n_cases)
        for t in range(n_teams):
            q = np.clip(0.9 - 0.2 * t + rng.normal(0, 0.1, n_cases), 0, 1)
            ip = (gt_p * q).astype(int)
            inn = (gt_n * q).astype(int)
            tp = rng.binomial(les, q)
            teams[f"team{t}"] = [
                t1_case(ids[i], (ip[i], ip[i] + int(rng.integers(0, 60)) * (gt_p[i] > 0), gt_p[i]),
                        (inn[i], inn[i] + int(rng.integers(0, 30)), gt_n[i]),
                        (tp[i], int(rng.integers(0, 2)), les[i] - tp[i]), float(vol[i]))
                for i in range(n_cases)
            ]  # fmt: skip
    elif task == 2:
        hazard = rng.normal(size=n_cases)
        times = np.round(rng.exponential(np.exp(-hazard)) * 10)  # tied times
        events = (rng.random(n_cases) < 0.4).astype(int)
        for t in range(n_teams):
            risk = np.round((1.0 - 0.3 * t) * hazard + rng.normal(0, 0.5, n_cases), 1)
            teams[f"team{t}"] = [
                t2_case(ids[i], float(times[i]), int(events[i]), float(risk[i]))
                for i in range(n_cases)
            ]
    else:
        labels = (rng.random(n_cases) < 0.6).astype(int)
        labels[:2] = (0, 1)
        for t in range(n_teams):
            logit = (2.0 - 0.6 * t) * (2 * labels - 1) + rng.normal(size=n_cases)
            prob = np.round(1 / (1 + np.exp(-logit)), 2)
            teams[f"team{t}"] = [
                t3_case(ids[i], int(labels[i]), float(prob[i])) for i in range(n_cases)
            ]
    return teams


# --- resampling ---------------------------------------------------------------------------


def test_resample_weights_are_counts_of_n_draws_and_seeded() -> None:
    w = resample_weights(7, 50, seed=3)
    assert w.shape == (50, 7)
    assert w.dtype == np.int64
    assert (w >= 0).all()
    assert (w.sum(axis=1) == 7).all()  # n cases drawn with replacement per resample
    assert np.array_equal(w, resample_weights(7, 50, seed=3))
    assert not np.array_equal(w, resample_weights(7, 50, seed=4))
    assert resample_weights(7, 0).shape == (0, 7)


# --- hand-worked weighted metrics ------------------------------------------------------------


def test_task1_weights_given_explicitly() -> None:
    cases = three_task1_cases()
    w = np.array([[2, 0, 1], [0, 3, 1], [1, 1, 1]])
    m = weighted_metrics(1, cases, w)
    # Row [2, 0, 1]: GTVp (2*.75 + .4) / 3 = 1.9/3; GTVn DSC (2*20 + 5) / (2*40 + 10) = 45/90;
    #   TP 2*1+1 = 3, FP 1, FN 2 -> F1 6 / (6+1+2) = 2/3.
    # Row [0, 3, 1]: GTVp (3*1.0 + .4) / 4 = .85; GTVn DSC 5 / (3*20 + 10) = 5/70;
    #   TP 1, FP 3+1 = 4, FN 2 -> F1 2 / (2+4+2) = .25.
    # Row [1, 1, 1]: GTVp (.75 + 1 + .4) / 3; GTVn DSC (20+0+5) / (40+20+10) = 25/70;
    #   TP 2, FP 2, FN 2 -> F1 4/8.
    np.testing.assert_allclose(m["gtvp_dsc_mean"], [1.9 / 3, 0.85, 2.15 / 3], rtol=0, atol=1e-15)
    np.testing.assert_allclose(m["gtvn_dsc_agg"], [0.5, 5 / 70, 25 / 70], rtol=0, atol=1e-15)
    np.testing.assert_allclose(m["gtvn_f1_agg"], [2 / 3, 0.25, 0.5], rtol=0, atol=1e-15)


def test_task1_protocol_switches_under_weights() -> None:
    cases = three_task1_cases()
    exclude = HECKTOR2025.with_changes(gtvp_both_empty="exclude")
    m = weighted_metrics(1, cases, np.array([[0, 3, 1], [0, 1, 0]]), protocol=exclude)
    # B weighs 0 in the GTVp mean: row 1 -> .4 / 1; row 2 holds only B -> undefined (NaN).
    # Row 2 GTVn: DSC 0 / 20 = 0; TP 0, FP 1, FN 0 -> F1 0 / 1 = 0.
    assert m["gtvp_dsc_mean"][0] == pytest.approx(0.4, abs=1e-15)
    assert math.isnan(m["gtvp_dsc_mean"][1])
    assert m["gtvn_dsc_agg"][1] == 0.0
    assert m["gtvn_f1_agg"][1] == 0.0
    zero = HECKTOR2025.with_changes(gtvp_both_empty="0.0")
    # Both-empty B counts 0: (0 + .4) / 2 on the row [0, 1, 1].
    assert weighted_metrics(1, cases, [0, 1, 1], protocol=zero)["gtvp_dsc_mean"] == 0.2
    voxels = HECKTOR2025.with_changes(dsc_agg_weighting="voxels")
    # Voxel counts, no volume: (20 + 0 + 10) / (40 + 10 + 20) = 3/7.
    assert weighted_metrics(1, cases, [1, 1, 1], protocol=voxels)["gtvn_dsc_agg"] == pytest.approx(
        3 / 7, abs=1e-15
    )
    # GTVn empty everywhere that counts (only A weighs and its GTVn is empty here):
    # aggregated DSC and F1 are 1.0, as for Σ = 0 on the full data.
    empty_n = [t1_case("X-A", (3, 4, 4), (0, 0, 0), (0, 0, 0))]
    m = weighted_metrics(1, empty_n, [2])
    assert m["gtvn_dsc_agg"] == 1.0 and m["gtvn_f1_agg"] == 1.0


def test_task2_weights_given_explicitly() -> None:
    cases = four_task2_cases()
    w = np.array([[1, 1, 1, 1], [1, 2, 1, 3], [0, 1, 0, 1], [0, 0, 3, 0]])
    c = weighted_metrics(2, cases, w)["c_index"]
    # Row 1: 4.5 / 5 = .9 (the full data).
    # Row [1, 2, 1, 3], each pair weighs w_i * w_j:
    #   a-b 1*2 = 2 (credit 1), a-c 1, a-d 3, c-b 2, c-d 1*3 = 3 (credit 1/2)
    #   -> num 2 + 1 + 3 + 2 + 1.5 = 9.5, den 2 + 1 + 3 + 2 + 3 = 11.
    # Row [0, 1, 0, 1]: b and d are both censored -> no comparable pair -> NaN.
    # Row [0, 0, 3, 0]: three copies of c are never compared with each other -> NaN.
    assert c[0] == pytest.approx(0.9, abs=1e-15)
    assert c[1] == pytest.approx(9.5 / 11, abs=1e-15)
    assert math.isnan(c[2]) and math.isnan(c[3])
    for row in w[:2]:
        expanded = expand(cases, row)
        assert c[list(map(tuple, w)).index(tuple(row))] == pytest.approx(
            ref_c_index(expanded), abs=1e-12
        )


def test_task3_weights_given_explicitly() -> None:
    cases = five_task3_cases()
    m = weighted_metrics(3, cases, [1, 2, 1, 3, 0])
    # Positives p1 (.9, w 1), p2 (.4, w 2), p5 (.6, w 0); negatives n3 (.4, w 1), n4 (.2, w 3).
    # AUC pairs: p1-n3 1*1*1, p1-n4 1*1*3, p2-n3 tie 1/2 * 2*1, p2-n4 1*2*3 -> 1 + 3 + 1 + 6 = 11
    #   over (1+2) * (1+3) = 12.
    # Threshold .5: TP 1 (p1), FN 2 (p2 twice), TN 4 (n3, n4 x3), FP 0.
    #   sensitivity 1/3, specificity 1, balanced accuracy 2/3; F1+ 2/(2+0+2) = .5,
    #   F1- 8/(8+2+0) = .8; macro .65; weighted (.5*3 + .8*4) / 7 = 4.7/7.
    expected = {
        "auc": 11 / 12,
        "sensitivity": 1 / 3,
        "specificity": 1.0,
        "balanced_accuracy": 2 / 3,
        "f1_macro": 0.65,
        "f1_weighted": 4.7 / 7,
    }
    for k, v in expected.items():
        assert float(m[k]) == pytest.approx(v, abs=1e-15), k
    # One class only (positives): every metric undefined, as aggregate refuses it.
    one_class = weighted_metrics(3, cases, [1, 1, 0, 0, 1])
    assert all(math.isnan(float(v)) for v in one_class.values())


def test_weights_shape_is_checked() -> None:
    with pytest.raises(ValueError, match="shape"):
        weighted_metrics(2, four_task2_cases(), [1, 1, 1])
    with pytest.raises(ValueError, match=">= 0"):
        weighted_metrics(2, four_task2_cases(), [1, -1, 1, 1])


# --- against references ----------------------------------------------------------------------


@pytest.mark.parametrize("task", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_all_weights_one_equals_aggregate(task: int, seed: int) -> None:
    protocols = [HECKTOR2025]
    if task == 1:
        protocols += [
            HECKTOR2025.with_changes(gtvp_both_empty="exclude", dsc_agg_weighting="voxels"),
            HECKTOR2025.with_changes(gtvp_both_empty="0.0"),
        ]
    if task == 3:
        protocols.append(HECKTOR2025.with_changes(hpv_threshold=0.3))
    for protocol in protocols:
        for records in random_teams(task, 3, 60, seed).values():
            expected = aggregate(task, records, protocol)
            got = weighted_metrics(task, records, np.ones(len(records)), protocol=protocol)
            assert set(got) == set(leaderboard_metrics(task))
            for k, v in got.items():
                assert abs(float(v) - expected[k]) <= 1e-12, (k, protocol)


def test_weighted_c_index_matches_loop_and_lifelines_on_expanded_list() -> None:
    rng = np.random.default_rng(11)
    records = random_teams(2, 1, 25, 5)["team0"]
    w = rng.integers(0, 4, size=(6, len(records)))
    got = weighted_metrics(2, records, w)["c_index"]
    for r, row in enumerate(w):
        expanded = expand(records, row)
        ref = ref_c_index(expanded)
        assert got[r] == pytest.approx(ref, abs=1e-12)
        lif = concordance_index(
            [c["time"] for c in expanded],
            [-c["prediction"] for c in expanded],
            [c["event"] for c in expanded],
        )
        assert got[r] == pytest.approx(lif, abs=1e-12)


def test_weighted_auc_matches_sklearn_on_expanded_list() -> None:
    rng = np.random.default_rng(12)
    records = random_teams(3, 1, 30, 6)["team0"]
    w = rng.integers(0, 4, size=(6, len(records)))
    got = weighted_metrics(3, records, w)["auc"]
    for r, row in enumerate(w):
        expanded = expand(records, row)
        ref = roc_auc_score([c["label"] for c in expanded], [c["prediction"] for c in expanded])
        assert got[r] == pytest.approx(ref, abs=1e-12)


@st.composite
def weighted_records(draw: st.DrawFn, task: int) -> tuple[list[Record], list[int]]:
    n = draw(st.integers(1, 7))
    small = st.integers(0, 6)
    records: list[Record] = []
    for i in range(n):
        pid = f"C{i % 2}-{i}"
        if task == 1:
            gt_p, gt_n = draw(small), draw(small)
            records.append(
                t1_case(pid, (min(draw(small), gt_p), draw(small) + gt_p, gt_p),
                        (min(draw(small), gt_n), draw(small) + gt_n, gt_n),
                        (draw(small), draw(small), draw(small)),
                        draw(st.sampled_from([0.5, 1.0, 2.5])))
            )  # fmt: skip
        elif task == 2:
            records.append(
                t2_case(pid, draw(st.integers(0, 4)), draw(st.integers(0, 1)),
                        draw(st.integers(0, 3)) / 2)
            )  # fmt: skip
        else:
            records.append(t3_case(pid, draw(st.integers(0, 1)), draw(st.integers(0, 4)) / 4))
    weights = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    return records, weights


@pytest.mark.parametrize("task", [1, 2, 3])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_integer_weights_equal_the_expanded_case_list(task: int, data: st.DataObject) -> None:
    records, weights = data.draw(weighted_records(task))
    assume(sum(weights) > 0)
    got = weighted_metrics(task, records, weights)
    expanded = expand(records, weights)
    try:
        expected = aggregate(task, expanded)
    except ScoringError:
        # Undefined on the expanded list (no comparable pair, one class only): NaN.
        assert task in (2, 3)
        assert all(math.isnan(float(v)) for v in got.values())
        return
    for k, v in got.items():
        assert abs(float(v) - expected[k]) <= 1e-12, k


# --- vectorised ranking and Kendall's tau ----------------------------------------------------


@pytest.mark.parametrize("task", [1, 2, 3])
def test_rank_matrix_equals_rank_rows(task: int) -> None:
    rng = np.random.default_rng(task)
    names = {1: ["gtvp_dsc_mean", "gtvn_dsc_agg", "gtvn_f1_agg"], 2: ["c_index"], 3: ["auc"]}[task]
    # Few distinct values (many ties) and some NaN (ranks last).
    values = {k: rng.integers(0, 4, size=(40, 6)) / 4.0 for k in names}
    for k in names:
        values[k][rng.random((40, 6)) < 0.05] = np.nan
    got = rank_matrix(task, values)
    for r in range(40):
        rows = [{k: float(values[k][r, t]) for k in names} for t in range(6)]
        expected = rank_rows(task, rows)
        for key in expected[0]:
            assert list(got[key][r]) == [e[key] for e in expected], (r, key)


def test_kendall_tau_b_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(5)
    ref = np.array([1.0, 2.5, 2.5, 4.0, 5.0, 6.0])
    rows = rng.integers(1, 5, size=(30, 6)).astype(float)
    rows[0] = 3.0  # constant: undefined
    got = kendall_tau_b(ref, rows)
    assert math.isnan(got[0])
    for r in range(1, 30):
        assert got[r] == pytest.approx(kendalltau(ref, rows[r]).statistic, abs=1e-12)


# --- bootstrap --------------------------------------------------------------------------------


def constant_quality_teams() -> dict[str, list[Record]]:
    """Three teams whose every case scores the same, so no resample changes the order.

    good: GTVp 2*8/(10+10) = .8 per case; GTVn num/den = 2*8/(10+10) = .8 per case;
          TP 4, FP 1, FN 1 per case -> F1 8/10 = .8 for any weights.
    fair: .6, .6, (TP 3, FP 2, FN 2) -> F1 .6.  poor: .2, .2, (TP 1, FP 4, FN 4) -> .2.
    """
    teams: dict[str, list[Record]] = {}
    for name, k, det in (("good", 8, (4, 1, 1)), ("fair", 6, (3, 2, 2)), ("poor", 2, (1, 4, 4))):
        teams[name] = [
            t1_case(f"Z-{i}", (k, 10, 10), (k, 10, 10), det, vol=1.0 + i % 3) for i in range(12)
        ]
    return teams


def test_kendall_tau_is_one_when_resamples_keep_the_order() -> None:
    res = bootstrap(1, constant_quality_teams(), n_resamples=50, seed=1)
    assert res.kendall_tau.n == 50
    assert res.kendall_tau.mean == pytest.approx(1.0)
    assert res.kendall_tau.low == pytest.approx(1.0)
    assert res.n_degenerate == 0
    good = res.team("good")
    assert good.rank.counts[res.rank_values.index(1.0)] == 50
    assert good.rank.first_place_share == 1.0
    assert good.metrics["gtvp_dsc_mean"].low == pytest.approx(0.8)
    assert good.metrics["gtvp_dsc_mean"].high == pytest.approx(0.8)
    assert [t.rank.full_rank for t in res.teams] == [1.0, 2.0, 3.0]
    # beats[a][b]: good beats fair and poor in every resample, never itself.
    assert res.beats[0] == (0.0, 1.0, 1.0)


@pytest.mark.parametrize("task", [1, 2, 3])
def test_bootstrap_summaries(task: int) -> None:
    teams = random_teams(task, 4, 80, seed=task)
    res = bootstrap(task, teams, n_resamples=200, seed=7)
    assert res.n_cases == 80 and res.n_resamples == 200
    assert res.metric_names == leaderboard_metrics(task)
    full_rows = [aggregate(task, recs) for recs in teams.values()]
    full_ranks = rank_rows(task, full_rows)
    valid = res.n_resamples - res.n_degenerate
    for t, team in enumerate(res.teams):
        assert team.team == list(teams)[t]
        assert team.rank.full_rank == full_ranks[t]["final"]
        # The rank distribution covers every non-degenerate resample.
        assert sum(team.rank.counts) == valid
        assert 1 <= team.rank.low <= team.rank.median <= team.rank.high <= 4
        for name, mi in team.metrics.items():
            # The full-data value is the leaderboard's, and a 95% interval of a typical
            # (smooth, 80-case) statistic contains it.
            assert mi.estimate == full_rows[t][name]
            assert mi.low <= mi.estimate <= mi.high, (team.team, name)
    assert -1.0 <= res.kendall_tau.low <= res.kendall_tau.median <= res.kendall_tau.high <= 1.0
    text = json.dumps(res.to_dict(), allow_nan=False)  # JSON-serialisable, no NaN
    assert json.loads(text)["teams"][0]["team"] == "team0"


def test_bootstrap_result_and_center_results_round_trip_through_json() -> None:
    teams = random_teams(1, 3, 30, seed=5)
    res = bootstrap(1, teams, n_resamples=50, seed=3)
    assert BootstrapResult.from_dict(json.loads(json.dumps(res.to_dict()))) == res
    centres = per_center(1, next(iter(teams.values())))
    stored = json.loads(json.dumps({c: r.to_dict() for c, r in centres.items()}))
    assert {c: CenterResult.from_dict(v) for c, v in stored.items()} == centres


def test_bootstrap_is_deterministic_and_independent_of_record_order() -> None:
    teams = random_teams(2, 3, 40, seed=9)
    a = bootstrap(2, teams, n_resamples=100, seed=5)
    shuffled = {k: list(reversed(v)) for k, v in teams.items()}
    assert bootstrap(2, shuffled, n_resamples=100, seed=5).to_dict() == a.to_dict()
    assert bootstrap(2, teams, n_resamples=100, seed=6).to_dict() != a.to_dict()


def test_bootstrap_samples_use_the_same_resamples_for_every_team() -> None:
    teams = random_teams(3, 3, 30, seed=2)
    s = bootstrap_samples(3, teams, n_resamples=40, seed=1)
    for t, recs in enumerate(teams.values()):
        by_id = {r["patient_id"]: r for r in recs}
        aligned = [by_id[c] for c in s.case_ids]
        own = weighted_metrics(3, aligned, s.weights)
        np.testing.assert_array_equal(own["auc"], s.metrics["auc"][:, t])


def test_degenerate_resamples_are_counted_and_skipped() -> None:
    # Six cases, two negatives: some resamples draw no negative (one class only).
    cases = [
        t3_case(f"X-{i}", int(i >= 2), p) for i, p in enumerate([0.1, 0.5, 0.4, 0.7, 0.8, 0.9])
    ]
    teams = {"a": cases, "b": [dict(c, prediction=1 - c["prediction"]) for c in cases]}
    s = bootstrap_samples(3, teams, n_resamples=300, seed=0)
    one_class = (s.weights[:, :2].sum(axis=1) == 0) | (s.weights[:, 2:].sum(axis=1) == 0)
    assert one_class.sum() > 0
    res = bootstrap(3, teams, n_resamples=300, seed=0)
    assert res.n_degenerate == int(one_class.sum())
    assert res.team("a").metrics["auc"].n_degenerate == int(one_class.sum())
    assert sum(res.team("a").rank.counts) == 300 - int(one_class.sum())
    assert res.team("a").metrics["auc"].low is not None


def test_no_resample_gives_the_full_data_only() -> None:
    teams = random_teams(1, 2, 10, seed=3)
    res = bootstrap(1, teams, n_resamples=0)
    mi = res.team("team0").metrics["gtvn_f1_agg"]
    assert mi.estimate == aggregate(1, teams["team0"])["gtvn_f1_agg"]
    assert mi.low is None and mi.high is None and mi.n_degenerate == 0
    assert res.team("team0").rank.counts == () and res.kendall_tau.n == 0
    json.dumps(res.to_dict(), allow_nan=False)


def test_teams_on_different_cases_are_refused_by_name() -> None:
    teams = random_teams(2, 3, 6, seed=1)
    teams["team2"] = teams["team2"][:-1]
    with pytest.raises(
        ValueError, match=r"team 'team2' is not scored on the same cases.*lacks 1 case.*C-005"
    ):
        bootstrap(2, teams, n_resamples=5)
    teams = random_teams(2, 2, 6, seed=1)
    teams["team1"] = [*teams["team1"], teams["team1"][0]]
    with pytest.raises(ValueError, match=r"team 'team1': case 'A-000' appears more than once"):
        bootstrap(2, teams, n_resamples=5)
    teams = random_teams(3, 2, 6, seed=1)
    teams["team1"][0] = dict(teams["team1"][0], label=1 - teams["team1"][0]["label"])
    with pytest.raises(ValueError, match=r"team 'team1', case 'A-000': label"):
        bootstrap(3, teams, n_resamples=5)


# --- per centre -------------------------------------------------------------------------------


def test_per_center_uses_aggregate_and_explains_undefined_metrics() -> None:
    # Centre P: labels 1, 0, 1 -> AUC by aggregate. Centre Q: both positive -> undefined.
    cases = [
        t3_case("P-1", 1, 0.8),
        t3_case("P-2", 0, 0.3),
        t3_case("P-3", 1, 0.2),
        t3_case("Q-1", 1, 0.9),
        t3_case("Q-2", 1, 0.6),
    ]
    res = per_center(3, cases, protocol=HECKTOR2025)
    assert list(res) == ["P", "Q"]
    assert res["P"].n_cases == 3
    # P: positives .8, .2 vs negative .3 -> 1 of 2 pairs concordant -> AUC .5.
    assert res["P"].metrics["auc"] == 0.5
    assert res["P"].metrics == aggregate(3, cases[:3])
    assert res["P"].undefined == {}
    assert res["Q"].metrics["auc"] is None
    assert "HPV positive" in res["Q"].undefined["auc"]
    assert set(res["Q"].undefined) == set(leaderboard_metrics(3))
    json.dumps({c: r.to_dict() for c, r in res.items()}, allow_nan=False)


def test_per_center_keeps_defined_task1_metrics() -> None:
    # Centre "X" (from the PatientID prefix): only case B, empty GTVp on both sides;
    # under "exclude" the GTVp mean is undefined but GTVn DSC 0/20 = 0 and F1 0/1 = 0 stand.
    cases = [{k: v for k, v in c.items() if k != "center"} for c in three_task1_cases()]
    cases[0]["center"] = "Y"
    cases[2]["center"] = "Y"
    exclude = HECKTOR2025.with_changes(gtvp_both_empty="exclude")
    res = per_center(1, cases, protocol=exclude)
    assert case_center(cases[1]) == "X"
    assert res["X"].metrics == {"gtvp_dsc_mean": None, "gtvn_dsc_agg": 0.0, "gtvn_f1_agg": 0.0}
    assert set(res["X"].undefined) == {"gtvp_dsc_mean"}
    assert res["Y"].metrics["gtvp_dsc_mean"] == pytest.approx((0.75 + 0.4) / 2)
    assert res["Y"].metrics["gtvn_tp"] == 2
