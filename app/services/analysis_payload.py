"""The analysis payload of a board, computed from per-case records only (pure: no
database, no image).

For the submissions on a leaderboard, the payload holds: bootstrap intervals of every
leaderboard metric, the stability of the final HECKTOR rank and Kendall's tau
(:func:`evaluator.bootstrap.bootstrap`), the per-centre breakdown
(:func:`evaluator.centers.per_center`) and, for Task 1, the per-case GTVp DSC values
the plots show. It is stored as JSON (the analysis cache, frozen snapshots); the
evaluator's ``from_dict`` methods rebuild its objects from it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import evaluator
from app.db.models import utcnow
from app.formatting import as_finite
from evaluator.bootstrap import bootstrap
from evaluator.bootstrap_result import BootstrapResult
from evaluator.centers import CenterResult, per_center
from evaluator.patients import case_center
from evaluator.protocol import Protocol, ProtocolSummary

log = logging.getLogger(__name__)

ANALYSIS_VERSION = "1"  # bump when the payload or the computation changes
ALPHA = 0.05

__all__ = [
    "ALPHA",
    "ANALYSIS_VERSION",
    "AnalysisPayload",
    "CaseDsc",
    "CenterCount",
    "PayloadTeam",
    "center_counts",
    "compute_payload",
]

#: one centre's result as stored (:meth:`evaluator.centers.CenterResult.to_dict`)
CenterDict = dict[str, Any]


class PayloadTeam(TypedDict):
    team: str
    submission_id: int


class CenterCount(TypedDict):
    """A centre and its number of cases (the largest among the board's submissions)."""

    center: str
    n_cases: int


class CaseDsc(TypedDict):
    """One case of the Task 1 per-case plot; ``gtvp_dsc`` None when both sides are empty."""

    patient_id: str
    center: str
    gtvp_dsc: float | None


class AnalysisPayload(TypedDict):
    """The analysis of one board. ``bootstrap`` is
    :meth:`evaluator.bootstrap_result.BootstrapResult.to_dict` (None without resamples or when
    it failed: ``bootstrap_error``); ``per_center`` maps team -> centre -> result. The
    view a caller may see (:func:`app.access.visible_analysis`) adds the keys below
    ``key``."""

    version: str
    task: int
    n_resamples: int
    seed: int
    alpha: float
    protocol: ProtocolSummary
    evaluator_version: str
    computed_at: str
    teams: list[PayloadTeam]
    bootstrap: dict[str, Any] | None
    bootstrap_error: str | None
    centers: list[CenterCount]
    per_center: dict[str, dict[str, CenterDict]]
    per_case: dict[str, list[CaseDsc]]
    key: NotRequired[str]
    per_case_values: NotRequired[dict[str, list[float | None]]]
    withheld_centers: NotRequired[int]
    note: NotRequired[str | None]
    view: NotRequired[str]


def _case_dsc(rec: Mapping[str, Any]) -> float | None:
    """The case's GTVp DSC for the plot; None when both sides are empty (not shown)."""
    try:
        den = int(rec["gtvp_pred_voxels"]) + int(rec["gtvp_gt_voxels"])
    except (KeyError, TypeError, ValueError):
        return as_finite(rec.get("gtvp_dsc"))
    if den == 0:
        return None
    stored = as_finite(rec.get("gtvp_dsc"))
    return stored if stored is not None else 2.0 * int(rec.get("gtvp_intersection", 0)) / den


def center_counts(per_team: Mapping[str, Mapping[str, CenterResult]]) -> list[CenterCount]:
    """Every centre of the teams' per-centre results with its largest case count,
    sorted by centre."""
    counts: dict[str, int] = {}
    for result in per_team.values():
        for c, r in result.items():
            counts[c] = max(counts.get(c, 0), r.n_cases)
    return [{"center": c, "n_cases": counts[c]} for c in sorted(counts)]


def _bootstrap(
    task: int,
    teams: Mapping[str, Sequence[Mapping[str, Any]]],
    protocol: Protocol,
    *,
    n_resamples: int,
    seed: int,
    alpha: float,
) -> tuple[BootstrapResult | None, str | None]:
    """The bootstrap of the teams' records, or why it could not be computed."""
    if not teams or n_resamples <= 0:
        return None, None
    try:
        boot = bootstrap(
            task, teams, protocol=protocol, n_resamples=n_resamples, seed=seed, alpha=alpha
        )
    except ValueError as exc:  # e.g. teams scored on different case sets
        return None, str(exc)
    return boot, None


def _per_center(
    task: int, teams: Mapping[str, Sequence[Mapping[str, Any]]], protocol: Protocol
) -> dict[str, dict[str, CenterResult]]:
    """Each team's per-centre results (none for a team whose records cannot be split)."""
    out: dict[str, dict[str, CenterResult]] = {}
    for team, recs in teams.items():
        try:
            out[team] = per_center(task, recs, protocol=protocol)
        except ValueError as exc:
            log.warning("per-centre results of team %r: %s", team, exc)
            out[team] = {}
    return out


def _per_case(
    task: int, teams: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[str, list[CaseDsc]]:
    """Task 1: each team's per-case GTVp DSC, by patient id; nothing for other tasks."""
    if task != 1:
        return {}
    return {
        team: [
            {
                "patient_id": str(r.get("patient_id", "")),
                "center": case_center(r),
                "gtvp_dsc": _case_dsc(r),
            }
            for r in sorted(recs, key=lambda r: str(r.get("patient_id", "")))
        ]
        for team, recs in teams.items()
    }


def compute_payload(
    task: int,
    protocol: Protocol,
    members: Sequence[tuple[str, int]],
    cases: Mapping[int, Sequence[Mapping[str, Any]]],
    *,
    n_resamples: int,
    seed: int,
    alpha: float = ALPHA,
) -> AnalysisPayload:
    """The analysis of the board's ``members`` ((team, submission id), in board order)
    from their per-case records."""
    teams = {team: list(cases.get(sid, [])) for team, sid in members}
    boot, boot_error = _bootstrap(
        task, teams, protocol, n_resamples=n_resamples, seed=seed, alpha=alpha
    )
    centres = _per_center(task, teams, protocol)
    return {
        "version": ANALYSIS_VERSION,
        "task": task,
        "n_resamples": n_resamples,
        "seed": seed,
        "alpha": alpha,
        "protocol": protocol.summary(),
        "evaluator_version": evaluator.__version__,
        "computed_at": utcnow().isoformat().replace("+00:00", "Z"),
        "teams": [{"team": t, "submission_id": sid} for t, sid in members],
        "bootstrap": boot.to_dict() if boot is not None else None,
        "bootstrap_error": boot_error,
        "centers": center_counts(centres),
        "per_center": {t: {c: r.to_dict() for c, r in res.items()} for t, res in centres.items()},
        "per_case": _per_case(task, teams),
    }
