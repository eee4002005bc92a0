"""Who may see what: leaderboards, scores, per-case and per-centre results.

* **leaderboards and scores** (:func:`check_leaderboard_visible`,
  :func:`check_scores_visible`, :func:`check_submission_scores_visible`): organizers
  always; others a phase's board when it is public and the phase is not hidden, and
  never the scores of a hidden phase.

The judges store full per-case records (with the ground truth each score was computed
from: true voxel and lesion counts for Task 1, time and event for Task 2, the HPV label
for Task 3); the analysis and the per-centre results are computed from them on the
server. What of them leaves the server for anyone but an organizer goes through this
module:

* **per-case rows** (:func:`visible_cases`): a team sees the rows of its own
  submissions only, and only the fields of :data:`TEAM_CASE_FIELDS` (an allow-list, so
  that a field added to the records later stays hidden until it is listed here):
  Task 1 the per-case DSC of each structure and the team's own predicted volumes,
  Tasks 2 and 3 the team's own prediction. A phase with ``case_rows = "none"``
  (recommended for test phases) shows teams no per-case row at all;
* **per-centre results** (:func:`visible_centers`): centres with fewer than the
  phase's ``min_center_cases`` cases are withheld, the reason a metric is undefined
  on a centre ("all 2 case(s) are HPV positive") becomes :data:`GENERIC_UNDEFINED`,
  and only score metrics are shown (not the GTVn TP/FP/FN counts, whose TP + FN is the
  centre's true lesion count);
* **the leaderboard analysis** (:func:`visible_analysis`): per-centre results as
  above; per-case values of other teams never by patient: a team gets its own rows,
  everyone the per-case GTVp DSC of each board submission as a sorted list (the
  distribution the plot draws), and nothing per case when ``case_rows = "none"``.

Organizers see everything. Nothing here reads the database.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.db.models import (
    CASE_ROWS,
    CASE_ROWS_NONE,
    CASE_ROWS_SCORES,
    Phase,
    Submission,
)
from app.errors import Forbidden, Unauthorized
from app.formatting import as_finite
from app.security import Principal
from evaluator.registry import BY_NAME, ProtocolRef, metrics_of

log = logging.getLogger(__name__)

__all__ = [
    "CASE_FIELDS_NOTE",
    "GENERIC_UNDEFINED",
    "GROUND_TRUTH_FIELDS",
    "TEAM_CASE_FIELDS",
    "aggregate_only_message",
    "can_see_leaderboard",
    "case_rows_policy",
    "center_metric_names",
    "check_leaderboard_visible",
    "check_scores_visible",
    "check_submission_scores_visible",
    "is_organizer",
    "scores_hidden",
    "team_case_record",
    "visible_analysis",
    "visible_board_centers",
    "visible_cases",
    "visible_center",
    "visible_centers",
    "withheld_note",
]

#: the per-case fields a team may read of its own submissions, per task
TEAM_CASE_FIELDS: dict[int, tuple[str, ...]] = {
    1: (
        "patient_id",
        "center",
        "gtvp_dsc",
        "gtvn_dsc",
        "gtvp_pred_voxels",
        "gtvn_pred_voxels",
        "gtvn_pred_lesions",
        "voxel_volume_mm3",
    ),
    2: ("patient_id", "center", "prediction"),
    # HPV status (2025): the prediction; staging (2026): the predicted stages
    3: ("patient_id", "center", "prediction", "t_prediction", "n_prediction"),
}

#: fields of the stored records that carry (or, with the shown ones, reveal) the ground
#: truth; documentation and tests: the allow-list above is what is enforced
GROUND_TRUTH_FIELDS: dict[int, tuple[str, ...]] = {
    1: (
        "gtvp_gt_voxels",
        "gtvn_gt_voxels",
        "gtvp_intersection",
        "gtvn_intersection",
        "gtvn_tp",
        "gtvn_fp",
        "gtvn_fn",
    ),
    2: ("time", "event"),
    3: ("label", "t_stage", "n_stage"),
}

GENERIC_UNDEFINED = "undefined on this centre's cases"

CASE_FIELDS_NOTE = (
    "per-case rows show the team's own predictions and per-case scores; ground-truth "
    "values (true volumes and lesion counts, times, events, labels) are never shown"
)


def is_organizer(principal: Principal | None) -> bool:
    return principal is not None and principal.is_organizer


def case_rows_policy(phase: Phase) -> str:
    """The phase's ``case_rows`` setting (an unknown stored value counts as ``none``)."""
    value = phase.case_rows or CASE_ROWS_SCORES
    return value if value in CASE_ROWS else CASE_ROWS_NONE


def aggregate_only_message(phase: Phase) -> str:
    return (
        f"phase {phase.name!r} shows aggregate scores only: its per-case rows are for the "
        "organizers (case_rows 'none'); the submission's metrics and per-centre results "
        "are on its page and in GET /api/v1/submissions/<id> and <id>/centers"
    )


# -- per-case rows ---------------------------------------------------------------------------
def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _gtvn_dsc(record: Mapping[str, Any]) -> float | None:
    """GTVn DSC of one case from its counts; None when both sides are empty."""
    inter = _int(record.get("gtvn_intersection"))
    pred = _int(record.get("gtvn_pred_voxels"))
    gt = _int(record.get("gtvn_gt_voxels"))
    if inter is None or pred is None or gt is None or pred + gt == 0:
        return None
    return 2.0 * inter / (pred + gt)


def team_case_record(task: int, record: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of :data:`TEAM_CASE_FIELDS` of one stored record (Task 1: with the
    per-case GTVn DSC computed from the counts when the record does not hold it)."""
    allowed = TEAM_CASE_FIELDS.get(task, ("patient_id", "center"))
    source = dict(record)
    if task == 1 and "gtvn_dsc" not in source and "gtvn_intersection" in source:
        source["gtvn_dsc"] = _gtvn_dsc(source)
    return {k: source[k] for k in allowed if k in source}


def visible_cases(
    task: int,
    phase: Phase,
    principal: Principal | None,
    records: Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]] | None:
    """The per-case rows of one submission the caller may read (the caller may read
    the submission: its team or an organizer). None: the phase shows teams none."""
    if is_organizer(principal):
        return [dict(r) for r in records]
    if principal is None or case_rows_policy(phase) == CASE_ROWS_NONE:
        return None
    return [team_case_record(task, r) for r in records]


# -- per-centre results ----------------------------------------------------------------------
def _score_metric(name: str) -> bool:
    m = BY_NAME.get(name)
    return m is not None and m.kind == "score"


def center_metric_names(
    task: int, principal: Principal | None, protocol: ProtocolRef | None = None
) -> list[str]:
    """The metric columns of per-centre results the caller may see (the metrics of
    ``protocol``'s edition, by default the 2025 one)."""
    names = [m.name for m in metrics_of(task, protocol)]
    return names if is_organizer(principal) else [n for n in names if _score_metric(n)]


def visible_center(result: Mapping[str, Any], principal: Principal | None) -> dict[str, Any]:
    """One centre's result (:meth:`CenterResult.to_dict`); for anyone but an organizer
    the score metrics only, and every reason a metric is undefined is the generic one
    (the detailed reasons say how many cases of each class or how many events the
    centre has)."""
    out = dict(result)
    if not is_organizer(principal):
        out["metrics"] = {
            k: v for k, v in (result.get("metrics") or {}).items() if _score_metric(k)
        }
        out["undefined"] = {
            k: GENERIC_UNDEFINED for k in (result.get("undefined") or {}) if _score_metric(k)
        }
    return out


def _shown(phase: Phase, principal: Principal | None, n_cases: Any) -> bool:
    if is_organizer(principal):
        return True
    n = _int(n_cases)
    return n is not None and n >= max(0, int(phase.min_center_cases or 0))


def visible_centers(
    phase: Phase, principal: Principal | None, centers: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """Per-centre results (each with ``center`` and ``n_cases``) the caller may see, and
    how many were withheld (centres under ``min_center_cases``, for non-organizers)."""
    shown = [
        visible_center(c, principal) for c in centers if _shown(phase, principal, c["n_cases"])
    ]
    return shown, len(centers) - len(shown)


def withheld_note(phase: Phase, n_withheld: int) -> str | None:
    if n_withheld <= 0:
        return None
    return (
        f"{n_withheld} centre(s) with fewer than {phase.min_center_cases} cases withheld: "
        "their results are shown to the organizers only"
    )


def _small_centres(
    phase: Phase, principal: Principal | None, counts: Mapping[str, Any]
) -> set[str]:
    return {c for c, n in counts.items() if not _shown(phase, principal, n)}


def visible_board_centers(
    phase: Phase,
    principal: Principal | None,
    counts: Sequence[Mapping[str, Any]],
    per_team: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> tuple[list[dict[str, Any]], dict[str, dict[str, dict[str, Any]]], int]:
    """A board's centre list (``[{center, n_cases}]``) and its team -> centre -> result
    map as the caller may see them, and the number of centres withheld."""
    small = _small_centres(phase, principal, {c["center"]: c["n_cases"] for c in counts})
    shown_counts = [dict(c) for c in counts if c["center"] not in small]
    shown = {
        team: {c: visible_center(r, principal) for c, r in centres.items() if c not in small}
        for team, centres in per_team.items()
    }
    return shown_counts, shown, len(small)


# -- the leaderboard analysis ----------------------------------------------------------------
def _sorted_values(rows: Iterable[Mapping[str, Any]]) -> list[float | None]:
    vals: list[float] = []
    n_none = 0
    for r in rows:
        f = as_finite(r.get("gtvp_dsc"))
        if f is None:
            n_none += 1
        else:
            vals.append(f)
    return [*sorted(vals), *([None] * n_none)]


def visible_analysis(
    payload: Mapping[str, Any], phase: Phase, principal: Principal | None
) -> dict[str, Any]:
    """The analysis payload (:func:`app.services.analysis_payload.compute_payload`) as
    the caller may see it. Organizers: unchanged. Others: per-centre results of centres with at least
    ``min_center_cases`` cases, with generic reasons; ``per_case`` holds the caller's own
    team's rows only; ``per_case_values`` each team's per-case GTVp DSC sorted by value
    (no patient, no centre), unless the phase shows no per-case rows."""
    out = dict(payload)
    if is_organizer(principal):
        return out
    counts, per_team, n_withheld = visible_board_centers(
        phase, principal, payload.get("centers") or [], payload.get("per_center") or {}
    )
    out["centers"], out["per_center"] = counts, per_team
    out["withheld_centers"] = n_withheld
    out["note"] = withheld_note(phase, n_withheld)
    policy = case_rows_policy(phase)
    per_case = payload.get("per_case") or {}
    own = principal.team_name if principal is not None else None
    out["per_case"] = (
        {own: [dict(r) for r in per_case[own]]}
        if policy == CASE_ROWS_SCORES and own is not None and own in per_case
        else {}
    )
    out["per_case_values"] = (
        {team: _sorted_values(rows) for team, rows in per_case.items()}
        if policy == CASE_ROWS_SCORES and per_case
        else {}
    )
    out["view"] = f"restricted:{policy}:{phase.min_center_cases}"
    return out


# -- a submission's scores -------------------------------------------------------------------
def scores_hidden(sub: Submission, principal: Principal) -> bool:
    return sub.phase.hidden and not principal.is_organizer


def check_submission_scores_visible(sub: Submission, principal: Principal) -> None:
    """A submission's scores (per case, per centre) are for organizers only in a hidden
    phase: 403 for its team."""
    if scores_hidden(sub, principal):
        raise Forbidden(f"scores of phase {sub.phase.name!r} are hidden from teams")


# -- leaderboards ----------------------------------------------------------------------
def can_see_leaderboard(phase: Phase, principal: Principal | None) -> bool:
    """Organizers always; others when the leaderboard is public and the phase is not
    hidden (a hidden phase never shows scores to teams, whatever its board setting)."""
    if principal is not None and principal.is_organizer:
        return True
    return phase.leaderboard_public and not phase.hidden


def check_leaderboard_visible(phase: Phase, principal: Principal | None) -> None:
    """401 (no token) or 403 unless the caller may see the phase's leaderboard
    (:func:`can_see_leaderboard`)."""
    if not can_see_leaderboard(phase, principal):
        if principal is None:
            raise Unauthorized(f"the leaderboard of phase {phase.name!r} is for organizers only")
        raise Forbidden(f"the leaderboard of phase {phase.name!r} is for organizers only")


def check_scores_visible(phase: Phase, principal: Principal | None) -> None:
    """Analyses reveal scores: the leaderboard must be visible to the caller
    (:func:`check_leaderboard_visible`), and a hidden phase shows them to organizers
    only."""
    check_leaderboard_visible(phase, principal)
    if phase.hidden and not is_organizer(principal):
        if principal is None:
            raise Unauthorized(f"the scores of phase {phase.name!r} are hidden")
        raise Forbidden(f"the scores of phase {phase.name!r} are hidden from teams")
