"""Inverted predictions are warned about, never re-scored: a C-index or AUC whose
bootstrap upper bound is under 0.5 gets a warning in the result document (and in a
dry run's), with what the number means and the fix; the score is what the rules say.

Expected values come from lifelines and scikit-learn, the bootstrap bound from
lifelines run on the explicitly repeated case lists of the same resamples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lifelines.utils import concordance_index
from sklearn.metrics import roc_auc_score

from evaluator.metrics import orientation
from evaluator.protocol import HECKTOR2025, HECKTOR2026, Protocol
from evaluator.scoring import load_ground_truth, score_submission


def _write_task2(tmp: Path, times: list[float], events: list[int], preds: list[float]) -> Path:
    ids = [f"CHUM-{i + 1:03d}" for i in range(len(times))]
    gt = "PatientID,RFS,Relapse\n" + "".join(
        f"{pid},{t},{e}\n" for pid, t, e in zip(ids, times, events, strict=True)
    )
    (tmp / "gt.csv").write_text(gt, encoding="utf-8")
    pred = "PatientID,Prediction\n" + "".join(
        f"{pid},{p!r}\n" for pid, p in zip(ids, preds, strict=True)
    )
    (tmp / "pred.csv").write_text(pred, encoding="utf-8")
    return tmp


def _write_task3(tmp: Path, labels: list[int], probs: list[float]) -> Path:
    ids = [f"CHUM-{i + 1:03d}" for i in range(len(labels))]
    gt = "PatientID,HPV Status\n" + "".join(
        f"{pid},{y}\n" for pid, y in zip(ids, labels, strict=True)
    )
    (tmp / "gt.csv").write_text(gt, encoding="utf-8")
    pred = "PatientID,Prediction\n" + "".join(
        f"{pid},{p!r}\n" for pid, p in zip(ids, probs, strict=True)
    )
    (tmp / "pred.csv").write_text(pred, encoding="utf-8")
    return tmp


def _score(task: int, tmp: Path, protocol: Protocol = HECKTOR2025, *, dry_run: bool = False):  # type: ignore[no-untyped-def]
    gt = load_ground_truth(task, tmp / "gt.csv", protocol=protocol)
    return score_submission(task, gt, tmp / "pred.csv", protocol=protocol, dry_run=dry_run)


def _resample_counts(n: int) -> np.ndarray:
    """The resamples the warning uses, as count vectors (same seed, same draw)."""
    rng = np.random.default_rng(orientation.SEED)
    idx = rng.integers(0, n, size=(orientation.RESAMPLES, n), dtype=np.int64)
    return np.stack([np.bincount(row, minlength=n) for row in idx])


RISK_FIX = (
    ". A prediction is a risk score (higher = earlier recurrence); the predictions look "
    "like RFS times, not risks: negate them (Prediction = -time) and submit again. The "
    "score stands as computed."
)


def test_rfs_times_submitted_as_risks_warn_with_the_fix(tmp_path: Path) -> None:
    # every patient has the event and the predictions are the observed times: every
    # comparable pair is discordant, C-index 0 on the full data and on every resample
    times = [float(t) for t in range(5, 45)]
    _write_task2(tmp_path, times, [1] * 40, times)
    doc = _score(2, tmp_path)
    assert doc["status"] == "scored"
    assert doc["metrics"]["c_index"] == concordance_index(times, [-t for t in times], [1] * 40)
    assert doc["metrics"]["c_index"] == 0.0  # the score stays what the rules say
    assert doc["warnings"] == [
        {
            "kind": "inverted_predictions",
            "metric": "c_index",
            "message": "the C-index is 0.000 (upper bound of its 95% bootstrap interval "
            "0.000, below 0.5): the predictions order the patients mostly opposite to "
            "their observed recurrence, worse than random predictions (0.5)" + RISK_FIX,
        }
    ]


def test_noisy_inverted_predictions_bound_matches_lifelines(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 30
    times = [float(t) for t in rng.uniform(1, 60, n).round(2)]
    events = [int(e) for e in rng.random(n) < 0.7]
    preds = [float(t + rng.normal(0, 12)) for t in times]  # times with noise, as risks
    _write_task2(tmp_path, times, events, preds)
    doc = _score(2, tmp_path)
    full = concordance_index(times, [-p for p in preds], events)
    t, e, p = np.array(times), np.array(events), np.array(preds)
    values = []
    for w in _resample_counts(n):
        rt, re_, rp = np.repeat(t, w), np.repeat(e, w), np.repeat(p, w)
        values.append(concordance_index(rt, -rp, re_))
    upper = float(np.percentile(values, 97.5))
    assert upper < 0.5
    assert doc["metrics"]["c_index"] == pytest.approx(full, abs=1e-12)
    assert doc["warnings"][0]["message"].startswith(
        f"the C-index is {full:.3f} (upper bound of its 95% bootstrap interval {upper:.3f}, "
    )


def test_a_c_index_below_half_by_chance_is_not_warned(tmp_path: Path) -> None:
    # 8 patients, C-index below 0.5 but the interval reaches well above it
    times = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0]
    preds = [3.0, 8.0, 1.0, 5.0, 2.0, 7.0, 4.0, 6.0]
    _write_task2(tmp_path, times, [1] * 8, preds)
    doc = _score(2, tmp_path)
    c = concordance_index(times, [-x for x in preds], [1] * 8)
    assert c < 0.5
    assert doc["metrics"]["c_index"] == pytest.approx(c, abs=1e-12)
    assert "warnings" not in doc


def test_right_orientation_has_no_warning(tmp_path: Path) -> None:
    times = [float(t) for t in range(5, 45)]
    _write_task2(tmp_path, times, [1] * 40, [-t for t in times])
    doc = _score(2, tmp_path)
    assert doc["metrics"]["c_index"] == 1.0
    assert "warnings" not in doc


def test_2026_time_meaning_warns_about_risks(tmp_path: Path) -> None:
    times = [float(t) for t in range(5, 45)]
    protocol = HECKTOR2026.with_changes(rfs_meaning="time")
    _write_task2(tmp_path, times, [1] * 40, [-t for t in times])  # risks, not times
    doc = _score(2, tmp_path, protocol)
    assert doc["metrics"]["rfs_cindex"] == 0.0
    assert doc["warnings"] == [
        {
            "kind": "inverted_predictions",
            "metric": "rfs_cindex",
            "message": "the RFS C-index is 0.000 (upper bound of its 95% bootstrap interval "
            "0.000, below 0.5): the predictions order the patients mostly opposite to "
            "their observed recurrence, worse than random predictions (0.5). Under these "
            "rules a prediction is a predicted RFS time (higher = later recurrence); the "
            "predictions look like risks, not RFS times: negate them (or submit the "
            "predicted times) and submit again. The score stands as computed.",
        }
    ]


def test_inverted_probabilities_warn_with_one_minus_p(tmp_path: Path) -> None:
    labels = [1, 0] * 15
    probs = [0.05 + 0.01 * i if y else 0.95 - 0.01 * i for i, y in enumerate(labels)]
    _write_task3(tmp_path, labels, probs)
    doc = _score(3, tmp_path)
    assert doc["metrics"]["auc"] == roc_auc_score(labels, probs) == 0.0
    assert doc["warnings"] == [
        {
            "kind": "inverted_predictions",
            "metric": "auc",
            "message": "the AUC is 0.000 (upper bound of its 95% bootstrap interval 0.000, "
            "below 0.5): the predictions rank HPV-negative cases above HPV-positive ones, "
            "worse than random predictions (0.5). A prediction is the probability of HPV "
            "positive; the probabilities look inverted: use 1 - p and submit again. The "
            "score stands as computed.",
        }
    ]
    _write_task3(tmp_path, labels, [1 - p for p in probs])
    assert "warnings" not in _score(3, tmp_path)


def test_dry_run_warns_without_scoring(tmp_path: Path) -> None:
    times = [float(t) for t in range(5, 45)]
    _write_task2(tmp_path, times, [1] * 40, times)
    doc = _score(2, tmp_path, dry_run=True)
    assert doc["status"] == "valid"
    assert "metrics" not in doc
    assert [w["metric"] for w in doc["warnings"]] == ["c_index"]
    _write_task2(tmp_path, times, [1] * 40, [-t for t in times])
    assert _score(2, tmp_path, dry_run=True) == {"status": "valid", "task": 2, "n_cases": 40}


def test_cli_prints_the_warning_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from evaluator.cli import main

    times = [float(t) for t in range(5, 45)]
    _write_task2(tmp_path, times, [1] * 40, times)
    argv = ["score", "--task", "2", "--ground-truth", str(tmp_path / "gt.csv")]
    assert main([*argv, "--predictions", str(tmp_path / "pred.csv"), "-q"]) == 0
    out, err = capsys.readouterr()
    assert '"warnings"' in out
    assert err.startswith("warning: the C-index is 0.000 (upper bound")
    assert err.endswith(RISK_FIX + "\n")
    assert main([*argv, "--predictions", str(tmp_path / "pred.csv"), "-q", "--dry-run"]) == 0
    assert capsys.readouterr().err.startswith("warning: the C-index is 0.000")


def test_probabilities_with_a_chance_c_index_may_be_a_task3_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    n = 40
    times = [float(t) for t in rng.uniform(1, 60, n).round(1)]
    events = [int(e) for e in rng.random(n) < 0.6]
    probs = [float(p) for p in rng.random(n).round(3)]  # HPV probabilities, unrelated to RFS
    _write_task2(tmp_path, times, events, probs)
    doc = _score(2, tmp_path)
    full = concordance_index(times, [-p for p in probs], events)
    t, e, p = np.array(times), np.array(events), np.array(probs)
    values = [
        concordance_index(np.repeat(t, w), -np.repeat(p, w), np.repeat(e, w))
        for w in _resample_counts(n)
    ]
    low, high = np.percentile(values, [2.5, 97.5])
    assert low <= 0.5 <= high
    assert doc["metrics"]["c_index"] == pytest.approx(full, abs=1e-12)
    assert doc["warnings"] == [
        {
            "kind": "other_task",
            "metric": "c_index",
            "message": "every prediction lies between 0 and 1, as Task 3's HPV probabilities "
            f"do, and the C-index ({full:.3f}, 95% bootstrap interval {low:.3f} to "
            f"{high:.3f}) is no better than chance: if this is your Task 3 (HPV status) "
            "table, upload it to Task 3. Task 2 takes risk scores (risks between 0 and 1 "
            "are fine if that is what they are).",
        }
    ]
    # informative risks between 0 and 1 are not flagged
    risks = [float(1 - x / 100) for x in times]
    _write_task2(tmp_path, times, events, risks)
    assert "warnings" not in _score(2, tmp_path)
