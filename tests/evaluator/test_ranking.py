"""HECKTOR ranking (docs/scoring.md section 4) on hand-worked examples, including ties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator.ranking import rank_metric, rank_rows, rank_values


def test_task1_worked_example_with_ties() -> None:
    rows = [
        {"gtvp_dsc_mean": 0.80, "gtvn_dsc_agg": 0.70, "gtvn_f1_agg": 0.60},  # A
        {"gtvp_dsc_mean": 0.75, "gtvn_dsc_agg": 0.72, "gtvn_f1_agg": 0.65},  # B
        {"gtvp_dsc_mean": 0.80, "gtvn_dsc_agg": 0.60, "gtvn_f1_agg": 0.50},  # C
        {"gtvp_dsc_mean": 0.50, "gtvn_dsc_agg": 0.72, "gtvn_f1_agg": 0.70},  # D
    ]
    # r_p by GTVp DSC (higher first): A .80 and C .80 tie for places 1-2 -> 1.5 each;
    #   B .75 -> 3; D .50 -> 4.
    # GTVn DSC agg: B .72 and D .72 tie for 1-2 -> 1.5 each; A .70 -> 3; C .60 -> 4.
    # GTVn F1 agg: D .70 -> 1, B .65 -> 2, A .60 -> 3, C .50 -> 4.
    # GTVn sums: A 3+3=6, B 1.5+2=3.5, C 4+4=8, D 1.5+1=2.5 -> r_n: D 1, B 2, A 3, C 4.
    # Final sums r_p + r_n: A 1.5+3=4.5, B 3+2=5, C 1.5+4=5.5, D 4+1=5
    #   -> final: A 1, B and D tie for 2-3 -> 2.5 each, C 4.
    ranks = rank_rows(1, rows)
    assert [r["gtvp_dsc_mean"] for r in ranks] == [1.5, 3.0, 1.5, 4.0]
    assert [r["gtvn_dsc_agg"] for r in ranks] == [3.0, 1.5, 4.0, 1.5]
    assert [r["gtvn_f1_agg"] for r in ranks] == [3.0, 2.0, 4.0, 1.0]
    assert [r["gtvn"] for r in ranks] == [3.0, 2.0, 4.0, 1.0]
    assert [r["final"] for r in ranks] == [1.0, 2.5, 4.0, 2.5]


def test_task1_gtvn_is_ranked_on_the_sum_not_on_each_metric() -> None:
    rows = [
        {"gtvp_dsc_mean": 0.5, "gtvn_dsc_agg": 0.9, "gtvn_f1_agg": 0.1},  # X
        {"gtvp_dsc_mean": 0.5, "gtvn_dsc_agg": 0.5, "gtvn_f1_agg": 0.5},  # Y
        {"gtvp_dsc_mean": 0.5, "gtvn_dsc_agg": 0.1, "gtvn_f1_agg": 0.9},  # Z
    ]
    # r_p: all tie -> 2, 2, 2.
    # DSC ranks X1 Y2 Z3, F1 ranks X3 Y2 Z1 -> sums 4, 4, 4 -> r_n 2, 2, 2.
    # Final sums 4, 4, 4 -> everyone 2 (average of places 1-3).
    assert [r["final"] for r in rank_rows(1, rows)] == [2.0, 2.0, 2.0]


def test_task2_ranks_by_c_index_with_average_ties() -> None:
    rows = [{"c_index": 0.7}, {"c_index": 0.6}, {"c_index": 0.7}, {"c_index": 0.5}]
    # 0.7 and 0.7 share places 1-2 -> 1.5; 0.6 -> 3; 0.5 -> 4.
    ranks = rank_rows(2, rows)
    assert [r["final"] for r in ranks] == [1.5, 3.0, 1.5, 4.0]
    assert [r["c_index"] for r in ranks] == [1.5, 3.0, 1.5, 4.0]


def test_task3_ranks_by_auc_and_ignores_other_metrics() -> None:
    rows = [
        {"auc": 0.8, "balanced_accuracy": 0.1},
        {"auc": 0.9, "balanced_accuracy": 0.0},
        {"auc": 0.7, "balanced_accuracy": 1.0},
    ]
    # 0.9 -> 1, 0.8 -> 2, 0.7 -> 3; balanced accuracy plays no part.
    assert [r["final"] for r in rank_rows(3, rows)] == [2.0, 1.0, 3.0]
    assert set(rank_rows(3, rows)[0]) == {"auc", "final"}


def test_missing_or_nan_values_rank_last_and_tie_among_themselves() -> None:
    rows = [{"auc": math.nan}, {"auc": 0.5}, {}, {"auc": 0.6}]
    # 0.6 -> 1, 0.5 -> 2; the two missing ones share places 3-4 -> 3.5.
    assert [r["final"] for r in rank_rows(3, rows)] == [3.5, 2.0, 3.5, 1.0]


def test_direction_comes_from_the_registry() -> None:
    # gtvn_fp is registered lower-is-better: 1 FP ranks first.
    assert list(rank_metric([{"gtvn_fp": 3}, {"gtvn_fp": 1}, {"gtvn_fp": 2}], "gtvn_fp")) == [
        3.0,
        1.0,
        2.0,
    ]
    assert list(rank_values([1.0, 3.0], higher_is_better=True)) == [2.0, 1.0]


def test_edge_cases() -> None:
    assert rank_rows(2, []) == []
    assert (
        rank_rows(1, [{"gtvp_dsc_mean": 0, "gtvn_dsc_agg": 0, "gtvn_f1_agg": 0}])[0]["final"] == 1.0
    )
    with pytest.raises(ValueError, match="task"):
        rank_rows(4, [{"auc": 1.0}])


unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
task1_row = st.fixed_dictionaries(
    {"gtvp_dsc_mean": unit, "gtvn_dsc_agg": unit, "gtvn_f1_agg": unit}
)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(task1_row, min_size=1, max_size=8), data=st.data())
def test_task1_ranks_follow_the_rows_under_permutation(
    rows: list[dict], data: st.DataObject
) -> None:
    perm = data.draw(st.permutations(range(len(rows))))
    ranks = rank_rows(1, rows)
    permuted = rank_rows(1, [rows[i] for i in perm])
    assert permuted == [ranks[i] for i in perm]
    # Average ranks always sum to n(n+1)/2.
    n = len(rows)
    assert sum(r["final"] for r in ranks) == pytest.approx(n * (n + 1) / 2)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(task1_row, min_size=1, max_size=8))
def test_a_strictly_dominant_row_ranks_first(rows: list[dict]) -> None:
    best = {"gtvp_dsc_mean": 1.5, "gtvn_dsc_agg": 1.5, "gtvn_f1_agg": 1.5}
    assert rank_rows(1, [*rows, best])[-1]["final"] == 1.0


@pytest.mark.parametrize("seed", range(20))
def test_average_ranks_equal_scipy_rankdata_with_ties(seed: int) -> None:
    import numpy as np
    from scipy.stats import rankdata

    from evaluator.ranking import average_ranks

    rng = np.random.default_rng(seed)
    rows, cols = int(rng.integers(1, 40)), int(rng.integers(1, 12))
    # few distinct values: many ties, infinities among them (as missing metrics rank)
    values = rng.choice([0.1, 0.5, 0.5, 0.9, np.inf, -np.inf, 3.0], size=(rows, cols))
    assert np.array_equal(average_ranks(values), rankdata(values, axis=1, method="average"))
    flat = values[0]
    assert np.array_equal(average_ranks(flat), rankdata(flat, method="average"))
    continuous = rng.normal(size=(rows, cols))
    assert np.array_equal(average_ranks(continuous), rankdata(continuous, axis=-1))


def test_average_ranks_worked_example_and_empty() -> None:
    import numpy as np

    from evaluator.ranking import average_ranks

    # sorted: 1.0 (rank 1), 2.0 x3 (ranks 2,3,4 -> 3), 5.0 (rank 5)
    assert average_ranks([2.0, 1.0, 2.0, 5.0, 2.0]).tolist() == [3.0, 1.0, 3.0, 5.0, 3.0]
    assert average_ranks([]).shape == (0,)
    assert average_ranks(np.zeros((3, 0))).shape == (3, 0)


def test_ranking_does_not_import_scipy_stats() -> None:
    import subprocess
    import sys

    code = "import sys, evaluator.ranking; print('scipy.stats' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
