"""The Task 2/3 tables of a synthetic challenge: the targets, and each team's
predictions, strictly ordered perfect > good > mediocre > poor on C-index and AUC.

The teams share one noise vector, scaled per team: a pair a team orders wrongly, every
worse team orders wrongly too, so the C-index and AUC can only fall from team to team;
the noise is redrawn until they fall strictly (which needs a pair that changes between
teams).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from evaluator.synth.cohort import random_stream
from evaluator.synth.geometry import FloatArray
from evaluator.synth.team_presets import TEAM_PRESETS
from evaluator.synth.truth import Case

_MAX_REDRAWS = 200


def _c_index(time: FloatArray, event: NDArray[np.int64], risk: FloatArray) -> float:
    """Harrell's C as docs/scoring.md section 3 defines it (O(n^2), fine for a cohort)."""
    t_i, t_j = time[:, None], time[None, :]
    e_i, e_j = event[:, None] == 1, event[None, :] == 1
    comparable = e_i & ((t_i < t_j) | ((t_i == t_j) & ~e_j))
    r_i, r_j = risk[:, None], risk[None, :]
    score = np.where(r_i > r_j, 1.0, np.where(r_i == r_j, 0.5, 0.0))
    n = int(comparable.sum())
    return float(score[comparable].sum() / n) if n else float("nan")


def _auc(label: NDArray[np.int64], score: FloatArray) -> float:
    from scipy.stats import rankdata

    pos = label == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _floats(texts: list[str]) -> FloatArray:
    return np.array([float(t) for t in texts], dtype=np.float64)


def _strictly_falling(values: list[float]) -> bool:
    return all(a > b for a, b in itertools.pairwise(values))


def _risk_text(x: float, style: str) -> str:
    if style == "sigmoid":
        return f"{1.0 / (1.0 + math.exp(-x)):.6f}"
    if style == "scaled":
        return f"{50.0 + 10.0 * x:.3f}"
    return f"{x:.4f}"


@dataclass(frozen=True)
class ClinicalTables:
    """Per case, in cohort order: the targets (None = unknown) and, per team name,
    the Task 2/3 predictions as text."""

    rfs: list[int | None]
    events: list[int]
    hpv: list[int | None]
    risks: dict[str, list[str]]
    probs: dict[str, list[str]]


_IMPERFECT = [p for p in TEAM_PRESETS if not p.exact]


def clinical_tables(cases: list[Case], *, seed: int) -> ClinicalTables:
    """Ground-truth targets and every preset's Task 2/3 predictions. Makes every
    scorable set scorable (two events, both HPV classes) and writes the changed
    events and labels back into ``cases``."""
    rng = random_stream(seed, 30)
    n = len(cases)
    time = np.array([c.time for c in cases], dtype=np.float64)
    event = np.array([c.event for c in cases], dtype=np.int64)
    hpv = np.array([c.hpv for c in cases], dtype=np.int64)
    unknown_rfs = _unknown(rng, n, 2)
    unknown_hpv = _unknown(rng, n, 3)
    known_rfs = np.array([i not in unknown_rfs for i in range(n)])
    known_hpv = np.array([i not in unknown_hpv for i in range(n)])
    _ensure_events(time, event, known_rfs)
    _ensure_classes(rng, hpv, known_hpv)
    for case, e, h in zip(cases, event, hpv, strict=True):
        case.event, case.hpv = int(e), int(h)
    risks = _risk_predictions(rng, time, event, known_rfs)
    probs = _probability_predictions(rng, hpv, known_hpv)
    return ClinicalTables(
        rfs=[None if i in unknown_rfs else int(time[i]) for i in range(n)],
        events=[int(e) for e in event],
        hpv=[None if i in unknown_hpv else int(hpv[i]) for i in range(n)],
        risks=risks,
        probs=probs,
    )


def _unknown(rng: np.random.Generator, n: int, most: int) -> set[int]:
    """Cases whose target is unknown: up to ``most``, one per ten cases, none below ten."""
    if n < 10:
        return set()
    return set(rng.choice(n, size=min(most, n // 10), replace=False).tolist())


def _ensure_events(time: FloatArray, event: NDArray[np.int64], known: NDArray[np.bool_]) -> None:
    """At least two events among the known cases (comparable pairs for the C-index):
    the shortest censored times become events."""
    need = min(2, int(known.sum()) - 1)
    short_first = [i for i in np.argsort(time, kind="stable") if known[i]]
    while int(event[known].sum()) < need:
        i = next(i for i in short_first if event[i] == 0)
        event[i] = 1


def _ensure_classes(
    rng: np.random.Generator, hpv: NDArray[np.int64], known: NDArray[np.bool_]
) -> None:
    """At least two known cases of each HPV class (both classes for the AUC)."""
    n_known = int(known.sum())
    for cls in (0, 1):
        want = min(2, n_known // 2)
        others = [int(i) for i in rng.permutation(np.flatnonzero(known & (hpv != cls)))]
        while int(np.sum(hpv[known] == cls)) < want:
            hpv[others.pop()] = cls


def _risk_predictions(
    rng: np.random.Generator,
    time: FloatArray,
    event: NDArray[np.int64],
    known: NDArray[np.bool_],
) -> dict[str, list[str]]:
    """Task 2 predictions: the ideal risk for the exact team, the standardised ideal
    rank plus scaled shared noise for the others, in their output style."""
    n = len(time)
    ideal_risk = -time + 0.5 * event  # integer days: events outrank ties, order kept
    rank = np.argsort(np.argsort(ideal_risk, kind="stable"), kind="stable")
    z = (rank - (n - 1) / 2.0) / max(n / 3.5, 1.0)
    risks = {p.name: [_risk_text(float(x), "raw") for x in ideal_risk] for p in TEAM_PRESETS}

    def c_of(texts: list[str]) -> float:
        return _c_index(time[known], event[known], _floats(texts)[known])

    for _attempt in range(_MAX_REDRAWS):
        eps = rng.standard_normal(n)
        for p in _IMPERFECT:
            risks[p.name] = [_risk_text(float(v), p.risk_style) for v in z + p.risk_noise * eps]
        if _strictly_falling([c_of(risks[p.name]) for p in TEAM_PRESETS]):
            break
    return risks


def _probability_predictions(
    rng: np.random.Generator, hpv: NDArray[np.int64], known: NDArray[np.bool_]
) -> dict[str, list[str]]:
    """Task 3 predictions: the label for the exact team, a noisy logistic probability
    for the others."""
    n = len(hpv)
    probs = {p.name: [str(int(y)) for y in hpv] for p in TEAM_PRESETS}
    logit = 1.2 * (2 * hpv - 1)
    for _attempt in range(_MAX_REDRAWS):
        eps = rng.standard_normal(n)
        for p in _IMPERFECT:
            prob = 1.0 / (1.0 + np.exp(-(logit + p.prob_noise * eps)))
            probs[p.name] = [f"{v:.4f}" for v in prob]
        if _strictly_falling(
            [_auc(hpv[known], _floats(probs[p.name])[known]) for p in TEAM_PRESETS]
        ):
            break
    return probs
