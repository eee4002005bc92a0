"""Task 2: Harrell's C-index, checked against a slow reference written from docs/scoring.md."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator.errors import ScoringError
from evaluator.metrics.survival import aggregate_task2, c_index, has_comparable_pair


def naive_c_index(times: list[float], events: list[int], risk: list[float]) -> float:
    """Harrell's C from the definition (docs/scoring.md section 3), O(n^2).

    A pair is comparable when the shorter time has an event; with equal times only
    when exactly one of the two has the event (the censored one outlived). Concordant
    when the earlier event has the higher risk; tied risks count 1/2.
    """
    num = 0.0
    den = 0
    n = len(times)
    for i in range(n):
        for j in range(i + 1, n):
            # order the pair so that `a` is the one that had the event first
            if times[i] < times[j]:
                a, b = i, j
            elif times[j] < times[i]:
                a, b = j, i
            elif events[i] != events[j]:
                a, b = (i, j) if events[i] else (j, i)
            else:
                continue
            if not events[a]:
                continue
            den += 1
            if risk[a] > risk[b]:
                num += 1.0
            elif risk[a] == risk[b]:
                num += 0.5
    if den == 0:
        raise ZeroDivisionError
    return num / den


def naive_pair_count(times: list[float], events: list[int]) -> int:
    try:
        naive_c_index(times, events, [0.0] * len(times))
    except ZeroDivisionError:
        return 0
    return 1


def test_hand_worked_example() -> None:
    # A(2, event, .9)  B(4, event, .5)  C(4, censored, .5)  D(6, event, .7)  E(8, censored, .1)
    # comparable pairs and their value:
    #   A-B 1, A-C 1, A-D 1, A-E 1     (A has the earliest event and the highest risk)
    #   B-C 0.5  (equal times, only B has the event: comparable; tied risks)
    #   B-D 0    (B's event is earlier but its risk .5 < .7)
    #   B-E 1, D-E 1
    #   C-D, C-E: not comparable (C is censored before the other's time)
    # C = (1 + 1 + 1 + 1 + 0.5 + 0 + 1 + 1) / 8 = 6.5 / 8 = 0.8125
    times = [2, 4, 4, 6, 8]
    events = [1, 1, 0, 1, 0]
    risk = [0.9, 0.5, 0.5, 0.7, 0.1]
    assert c_index(np.array(times), np.array(events), np.array(risk)) == 0.8125
    assert naive_c_index(times, events, risk) == 0.8125


def test_equal_times_both_events_are_not_comparable() -> None:
    # (3, e) and (3, e): not comparable; (3, e) vs (5, c): comparable -> 2 pairs.
    # risks 0.2 and 0.8 at time 3 vs 0.5 at time 5: one concordant, one discordant -> 1/2
    assert c_index(np.array([3, 3, 5]), np.array([1, 1, 0]), np.array([0.2, 0.8, 0.5])) == 0.5


def test_perfect_and_reversed_risk() -> None:
    times = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    events = np.array([1, 1, 0, 1, 1])
    risk = -times  # earlier event = higher risk
    assert c_index(times, events, risk) == 1.0
    assert c_index(times, events, times) == 0.0
    assert c_index(times, events, np.zeros(5)) == 0.5


def test_risk_is_not_survival_time() -> None:
    """The prediction is a risk: a survival-time-like score is anti-concordant."""
    times = np.array([10.0, 20.0, 30.0])
    events = np.array([1, 1, 1])
    assert c_index(times, events, np.array([3.0, 2.0, 1.0])) == 1.0
    assert c_index(times, events, np.array([10.0, 20.0, 30.0])) == 0.0


@pytest.mark.parametrize(
    ("times", "events"),
    [
        ([1.0, 2.0, 3.0], [0, 0, 0]),  # all censored
        ([4.0], [1]),  # one case
        ([2.0, 2.0, 2.0], [1, 1, 1]),  # every event at the same time
        ([1.0, 2.0], [0, 1]),  # the only event is at the latest time
        ([], []),
    ],
)
def test_no_comparable_pair_is_an_error(times: list[float], events: list[int]) -> None:
    with pytest.raises(ScoringError, match="no comparable pair"):
        c_index(np.array(times), np.array(events), np.zeros(len(times)))


def test_event_and_censoring_at_the_latest_time_are_comparable() -> None:
    # (2, e) vs (2, c): the censored one outlived; risk .9 > .1 -> concordant
    assert c_index(np.array([2.0, 2.0]), np.array([1, 0]), np.array([0.9, 0.1])) == 1.0


@pytest.mark.parametrize(
    ("times", "events", "risk", "message"),
    [
        ([1.0, 2.0], [1, 0], [0.1, math.nan], "non-finite"),
        ([1.0, 2.0], [1, 0], [0.1, math.inf], "non-finite"),
        ([1.0, 2.0], [1, 0], [0.1], "same length"),
        ([1.0, 2.0], [1, 2], [0.1, 0.2], "events must be 0"),
        ([-1.0, 2.0], [1, 0], [0.1, 0.2], "times must be >= 0"),
    ],
)
def test_invalid_input_is_an_error(
    times: list[float], events: list[int], risk: list[float], message: str
) -> None:
    with pytest.raises(ScoringError, match=message):
        c_index(np.array(times), np.array(events), np.array(risk))


def test_matches_reference_on_seeded_data_with_many_ties() -> None:
    rng = np.random.default_rng(20250)
    for _ in range(200):
        n = int(rng.integers(2, 60))
        times = rng.integers(0, 8, n).astype(float)  # many tied times
        events = (rng.random(n) < rng.uniform(0.1, 0.9)).astype(int)
        risk = rng.integers(0, 5, n) / 4.0  # many tied risks
        try:
            expected = naive_c_index(times.tolist(), events.tolist(), risk.tolist())
        except ZeroDivisionError:
            with pytest.raises(ScoringError):
                c_index(times, events, risk)
            continue
        assert c_index(times, events, risk) == pytest.approx(expected, abs=1e-12)


def test_matches_reference_on_continuous_data() -> None:
    rng = np.random.default_rng(7)
    times = rng.exponential(30.0, 400)
    events = (rng.random(400) < 0.2).astype(int)
    risk = rng.normal(size=400) - 0.01 * times
    expected = naive_c_index(times.tolist(), events.tolist(), risk.tolist())
    assert c_index(times, events, risk) == pytest.approx(expected, abs=1e-12)


survival_data = st.integers(min_value=1, max_value=25).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 6), min_size=n, max_size=n),
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(st.integers(-3, 3), min_size=n, max_size=n),
    )
)


@settings(max_examples=300, deadline=None)
@given(survival_data)
def test_matches_reference_hypothesis(data: tuple[list[int], list[int], list[int]]) -> None:
    times, events, risk = data
    t = [float(x) for x in times]
    r = [x / 2 for x in risk]
    assert has_comparable_pair(np.array(t), np.array(events)) == bool(naive_pair_count(t, events))
    try:
        expected = naive_c_index(t, events, r)
    except ZeroDivisionError:
        with pytest.raises(ScoringError):
            c_index(np.array(t), np.array(events), np.array(r))
        return
    got = c_index(np.array(t), np.array(events), np.array(r))
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0.0 <= got <= 1.0
    # a strictly increasing transform of the risk changes nothing
    assert c_index(np.array(t), np.array(events), np.exp(np.array(r))) == pytest.approx(got)
    # negating the risk mirrors the value around 1/2
    assert c_index(np.array(t), np.array(events), -np.array(r)) == pytest.approx(1 - got)


def test_aggregate_task2_from_case_records() -> None:
    cases = [
        {"patient_id": "A-1", "prediction": 0.9, "time": 2.0, "event": 1},
        {"patient_id": "A-2", "prediction": 0.5, "time": 4.0, "event": 1},
        {"patient_id": "A-3", "prediction": 0.5, "time": 4.0, "event": 0},
        {"patient_id": "B-4", "prediction": 0.7, "time": 6.0, "event": 1},
        {"patient_id": "B-5", "prediction": 0.1, "time": 8.0, "event": 0},
    ]
    assert aggregate_task2(cases) == {"c_index": 0.8125}
    with pytest.raises(ScoringError, match="no case"):
        aggregate_task2([])
    with pytest.raises(ScoringError, match="missing"):
        aggregate_task2([{"prediction": 1.0, "time": 1.0}])


def test_c_index_returns_a_python_float() -> None:
    value = c_index(np.array([1.0, 2.0]), np.array([1, 1]), np.array([2.0, 1.0]))
    assert type(value) is float
