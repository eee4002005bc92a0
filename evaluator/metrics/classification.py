"""Task 3: HPV status, scored by ROC AUC and threshold metrics.

The prediction is the probability of HPV positive (class 1). ``auc`` ranks the scores
(ties count 1/2); the other metrics threshold the scores at ``score >= threshold``
(``hpv_threshold``, default 0.5). Every value is computed by scikit-learn, so it
equals ``roc_auc_score``, ``balanced_accuracy_score``, ``recall_score`` (positive
class 1 for sensitivity, class 0 for specificity) and
``f1_score(average="macro" | "weighted")``. scikit-learn is imported inside the
functions to keep ``import evaluator`` light.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from evaluator.errors import ScoringError
from evaluator.protocol import HECKTOR2025, Protocol

__all__ = ["CLASSIFICATION_METRICS", "aggregate_task3", "classification_metrics"]

CLASSIFICATION_METRICS = (
    "auc",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "f1_macro",
    "f1_weighted",
)


def _validated(
    labels: ArrayLike, scores: ArrayLike
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    try:
        y = np.asarray(labels, dtype=np.float64)
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ScoringError(f"labels and scores must be numbers: {exc}") from exc
    if y.ndim != 1 or s.ndim != 1:
        raise ScoringError(
            f"labels and scores must be one-dimensional, found shapes {y.shape}, {s.shape}"
        )
    if y.shape != s.shape:
        raise ScoringError(
            f"labels and scores must have the same length, found {y.size} and {s.size}"
        )
    if not np.isin(y, (0.0, 1.0)).all():
        raise ScoringError("labels must be 0 (HPV negative) or 1 (HPV positive)")
    if not np.isfinite(s).all():
        raise ScoringError("scores must be finite numbers")
    n_pos = int(np.count_nonzero(y == 1))
    if n_pos == 0 or n_pos == y.size:
        only = "positive" if n_pos else "negative"
        raise ScoringError(
            f"the AUC is undefined: all {y.size} case(s) are HPV {only}; "
            "scoring needs both classes in the ground truth"
        )
    return y.astype(np.int64), s


def classification_metrics(
    labels: ArrayLike, scores: ArrayLike, *, threshold: float = 0.5
) -> dict[str, float]:
    """AUC and threshold metrics of probability scores against 0/1 labels.

    Raises :class:`ScoringError` when the truth holds only one class or on invalid
    input.
    """
    y, s = _validated(labels, scores)
    from sklearn.metrics import (
        balanced_accuracy_score,
        f1_score,
        recall_score,
        roc_auc_score,
    )

    predicted = (s >= threshold).astype(np.int64)
    # zero_division=0 is scikit-learn's default value, without its warning: a class
    # that is never predicted has precision 0 and so F1 0.
    return {
        "auc": float(roc_auc_score(y, s)),
        "balanced_accuracy": float(balanced_accuracy_score(y, predicted)),
        "sensitivity": float(recall_score(y, predicted, pos_label=1, zero_division=0)),
        "specificity": float(recall_score(y, predicted, pos_label=0, zero_division=0)),
        "f1_macro": float(f1_score(y, predicted, labels=[0, 1], average="macro", zero_division=0)),
        "f1_weighted": float(
            f1_score(y, predicted, labels=[0, 1], average="weighted", zero_division=0)
        ),
    }


def aggregate_task3(
    cases: Sequence[Mapping[str, Any]], *, protocol: Protocol = HECKTOR2025
) -> dict[str, float]:
    """Task 3 metrics from per-case records with keys ``prediction, label``."""
    if not cases:
        raise ScoringError("no case to score: the AUC needs cases of both classes")
    try:
        labels = [float(c["label"]) for c in cases]
        scores = [float(c["prediction"]) for c in cases]
    except KeyError as exc:
        raise ScoringError(
            f"Task 3 case records need the keys prediction, label; missing {exc}"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise ScoringError(f"Task 3 case records hold a non-numeric value: {exc}") from exc
    return classification_metrics(
        np.asarray(labels), np.asarray(scores), threshold=float(protocol.hpv_threshold)
    )
