"""Every cell of the degenerate-case table, in the aggregate and under weights, and the
registry's keyword-only metrics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from evaluator.edge_cases import EDGE_CASES, edge_value
from evaluator.errors import ScoringError
from evaluator.metrics.aggregate import aggregate
from evaluator.metrics.weighted import weighted_metrics
from evaluator.protocol import Protocol
from evaluator.registry import Metric


def _task1_case(pid: str, **stats: float) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "patient_id": pid,
        "gtvp_intersection": 0,
        "gtvp_pred_voxels": 0,
        "gtvp_gt_voxels": 0,
        "gtvn_intersection": 0,
        "gtvn_pred_voxels": 0,
        "gtvn_gt_voxels": 0,
        "gtvn_tp": 0,
        "gtvn_fp": 0,
        "gtvn_fn": 0,
        "voxel_volume_mm3": 1.0,
    }
    rec.update(stats)
    return rec


def _both(task: int, cases: list[dict[str, Any]], protocol: Protocol = Protocol()) -> Any:
    """The aggregate and the weights-1 form of the same cases."""
    ones = weighted_metrics(task, cases, np.ones(len(cases)), protocol=protocol)
    return aggregate(task, cases, protocol), ones


@pytest.mark.parametrize(("switch", "value"), [("1.0", 1.0), ("0.0", 0.0)])
def test_gtvp_both_empty_counts_as_the_protocol_says(switch: str, value: float) -> None:
    protocol = Protocol(gtvp_both_empty=switch)  # type: ignore[arg-type]
    assert edge_value("gtvp_dsc", protocol) == value
    # one empty case (0 voxels on both sides) and one perfect case (DSC 1)
    cases = [_task1_case("A-1"), _task1_case("A-2", gtvp_intersection=5, gtvp_pred_voxels=5)]
    cases[1]["gtvp_gt_voxels"] = 5
    agg, ones = _both(1, cases, protocol)
    assert agg["gtvp_dsc_mean"] == pytest.approx((value + 1.0) / 2)
    assert float(ones["gtvp_dsc_mean"]) == pytest.approx((value + 1.0) / 2)


def test_gtvp_both_empty_excluded_leaves_the_other_cases() -> None:
    protocol = Protocol(gtvp_both_empty="exclude")
    assert edge_value("gtvp_dsc", protocol) is None
    cases = [_task1_case("A-1"), _task1_case("A-2", gtvp_intersection=1, gtvp_pred_voxels=3)]
    cases[1]["gtvp_gt_voxels"] = 1
    agg, ones = _both(1, cases, protocol)
    assert agg["gtvp_dsc_mean"] == pytest.approx(0.5)  # 2 * 1 / (3 + 1), the empty case left out
    assert float(ones["gtvp_dsc_mean"]) == pytest.approx(0.5)


def test_gtvp_mean_undefined_when_every_case_is_excluded() -> None:
    protocol = Protocol(gtvp_both_empty="exclude")
    assert edge_value("gtvp_dsc_mean") is None
    cases = [_task1_case("A-1"), _task1_case("A-2")]
    with pytest.raises(ScoringError, match="GTVp mean DSC is undefined"):
        aggregate(1, cases, protocol)
    ones = weighted_metrics(1, cases, np.ones(2), protocol=protocol)
    assert math.isnan(float(ones["gtvp_dsc_mean"]))


def test_gtvn_aggregates_on_empty_data() -> None:
    assert edge_value("gtvn_dsc_agg") == 1.0 and edge_value("gtvn_f1_agg") == 1.0
    agg, ones = _both(1, [_task1_case("A-1"), _task1_case("A-2")])
    assert agg["gtvn_dsc_agg"] == 1.0 and float(ones["gtvn_dsc_agg"]) == 1.0
    assert agg["gtvn_f1_agg"] == 1.0 and float(ones["gtvn_f1_agg"]) == 1.0


def test_c_index_undefined_without_a_comparable_pair() -> None:
    assert edge_value("c_index") is None
    cases = [  # every patient censored: no pair is comparable
        {"patient_id": "A-1", "prediction": 0.2, "time": 3.0, "event": 0},
        {"patient_id": "A-2", "prediction": 0.7, "time": 5.0, "event": 0},
    ]
    with pytest.raises(ScoringError, match="comparable"):
        aggregate(2, cases)
    assert math.isnan(float(weighted_metrics(2, cases, np.ones(2))["c_index"]))


def test_auc_undefined_with_one_class() -> None:
    assert edge_value("auc") is None
    cases = [
        {"patient_id": "A-1", "prediction": 0.2, "label": 1},
        {"patient_id": "A-2", "prediction": 0.7, "label": 1},
    ]
    with pytest.raises(ScoringError, match="both classes"):
        aggregate(3, cases)
    assert math.isnan(float(weighted_metrics(3, cases, np.ones(2))["auc"]))


CELL_TESTS = {
    "gtvp_dsc": (
        "test_gtvp_both_empty_counts_as_the_protocol_says",
        "test_gtvp_both_empty_excluded_leaves_the_other_cases",
    ),
    "gtvp_dsc_mean": ("test_gtvp_mean_undefined_when_every_case_is_excluded",),
    "gtvn_dsc_agg": ("test_gtvn_aggregates_on_empty_data",),
    "gtvn_f1_agg": ("test_gtvn_aggregates_on_empty_data",),
    "c_index": ("test_c_index_undefined_without_a_comparable_pair",),
    "auc": ("test_auc_undefined_with_one_class",),
}


def test_every_cell_has_a_test() -> None:
    assert {c.metric for c in EDGE_CASES} == set(CELL_TESTS)
    assert all(callable(globals()[name]) for names in CELL_TESTS.values() for name in names)


def test_metrics_are_registered_by_keyword_only() -> None:
    with pytest.raises(TypeError):
        Metric("x", 1, True, True)  # type: ignore[misc]
    m = Metric(name="x", task=1, higher_is_better=True, ranked=False)
    assert (m.kind, m.label) == ("score", "")
