"""Task 3: AUC and threshold metrics, checked against plain scikit-learn calls."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    balanced_accuracy_score,
    f1_score,
    recall_score,
    roc_auc_score,
)

from evaluator.errors import ScoringError
from evaluator.metrics.classification import aggregate_task3, classification_metrics
from evaluator.protocol import Protocol


def sklearn_reference(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = (scores >= threshold).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the plain calls warn on zero division
        return {
            "auc": roc_auc_score(labels, scores),
            "balanced_accuracy": balanced_accuracy_score(labels, predicted),
            "sensitivity": recall_score(labels, predicted),
            "specificity": recall_score(labels, predicted, pos_label=0),
            "f1_macro": f1_score(labels, predicted, average="macro"),
            "f1_weighted": f1_score(labels, predicted, average="weighted"),
        }


def test_hand_worked_example() -> None:
    # positives score .6 .8 .4, negatives .1 .6
    # AUC over the 3x2 (positive, negative) pairs:
    #   (.6,.1) 1  (.6,.6) 1/2  (.8,.1) 1  (.8,.6) 1  (.4,.1) 1  (.4,.6) 0  -> 4.5/6 = 0.75
    # thresholded at >= .5: predicted 0 1 1 1 0 for labels 0 0 1 1 1
    #   sensitivity 2/3, specificity 1/2, balanced accuracy (2/3 + 1/2)/2 = 7/12
    #   F1(1): TP 2, FP 1, FN 1 -> 4/6 = 2/3;  F1(0): TP 1, FP 1, FN 1 -> 2/4 = 1/2
    #   macro (2/3 + 1/2)/2 = 7/12;  weighted (3*2/3 + 2*1/2)/5 = 3/5
    labels = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.6, 0.6, 0.8, 0.4])
    m = classification_metrics(labels, scores, threshold=0.5)
    assert m["auc"] == pytest.approx(0.75)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2)
    assert m["balanced_accuracy"] == pytest.approx(7 / 12)
    assert m["f1_macro"] == pytest.approx(7 / 12)
    assert m["f1_weighted"] == pytest.approx(3 / 5)
    assert all(type(v) is float for v in m.values())


def test_threshold_is_inclusive() -> None:
    labels = np.array([0, 1])
    m = classification_metrics(labels, np.array([0.49, 0.5]), threshold=0.5)
    assert m["sensitivity"] == 1.0 and m["specificity"] == 1.0
    m = classification_metrics(labels, np.array([0.5, 0.5]), threshold=0.5)
    assert m["sensitivity"] == 1.0 and m["specificity"] == 0.0
    assert m["auc"] == 0.5


def test_threshold_comes_from_the_protocol() -> None:
    cases = [
        {"prediction": 0.3, "label": 0},
        {"prediction": 0.4, "label": 1},
        {"prediction": 0.9, "label": 1},
    ]
    assert aggregate_task3(cases)["sensitivity"] == 0.5
    low = Protocol(hpv_threshold=0.35)
    assert aggregate_task3(cases, protocol=low)["sensitivity"] == 1.0
    assert aggregate_task3(cases, protocol=low)["specificity"] == 1.0


def test_all_predicted_one_class_matches_sklearn_without_warning() -> None:
    labels = np.array([0, 1, 1, 0])
    scores = np.array([0.1, 0.2, 0.3, 0.4])  # all below 0.5: nothing predicted positive
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics(labels, scores, threshold=0.5)
    assert m == pytest.approx(sklearn_reference(labels, scores, 0.5))
    assert m["sensitivity"] == 0.0 and m["specificity"] == 1.0


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0], [1]])
def test_one_class_is_an_error(labels: list[int]) -> None:
    with pytest.raises(ScoringError, match="both classes"):
        classification_metrics(np.array(labels), np.full(len(labels), 0.5), threshold=0.5)


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 1], [0.1, math.nan], "finite"),
        ([0, 1], [0.1], "same length"),
        ([0, 2], [0.1, 0.2], "labels must be 0"),
    ],
)
def test_invalid_input_is_an_error(labels: list[int], scores: list[float], message: str) -> None:
    with pytest.raises(ScoringError, match=message):
        classification_metrics(np.array(labels), np.array(scores), threshold=0.5)


def test_matches_sklearn_on_seeded_data_with_ties() -> None:
    rng = np.random.default_rng(3)
    for _ in range(100):
        n = int(rng.integers(2, 80))
        labels = rng.integers(0, 2, n)
        if labels.min() == labels.max():
            continue
        scores = rng.integers(0, 5, n) / 4.0  # many ties, and exact 0.5 values
        threshold = float(rng.choice([0.25, 0.5, 0.75]))
        got = classification_metrics(labels, scores, threshold=threshold)
        assert got == pytest.approx(sklearn_reference(labels, scores, threshold), abs=1e-12)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])),
        min_size=2,
        max_size=40,
    ).filter(lambda rows: len({label for label, _ in rows}) == 2)
)
def test_matches_sklearn_hypothesis(rows: list[tuple[int, float]]) -> None:
    labels = np.array([label for label, _ in rows])
    scores = np.array([score for _, score in rows])
    got = classification_metrics(labels, scores, threshold=0.5)
    assert got == pytest.approx(sklearn_reference(labels, scores, 0.5), abs=1e-12)
    for v in got.values():
        assert 0.0 <= v <= 1.0
    # a perfect score scores best
    perfect = classification_metrics(labels, labels.astype(float), threshold=0.5)
    assert all(v == 1.0 for v in perfect.values())


def test_aggregate_task3_errors() -> None:
    with pytest.raises(ScoringError, match="no case"):
        aggregate_task3([])
    with pytest.raises(ScoringError, match="missing"):
        aggregate_task3([{"prediction": 0.5}])
