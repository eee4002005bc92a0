"""One self-contained HTML report of a phase: per task the leaderboard with
bootstrap intervals, rank stability (table and plot), per-centre results (table and
heat map) and, for Task 1, the per-case DSC plot.

Inline CSS and inline SVG only: no script, no external stylesheet, font or image, so
the file can be mailed, archived or attached to a paper as it is. Everything shown
comes from :class:`TaskReportData`, which holds stored rows only (no database
access here); :func:`build_task_report` derives the analysis parts from per-case
records with :mod:`evaluator.bootstrap` and :mod:`evaluator.centers`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from app.formatting import format_number, format_rank, metric_label, task_title
from app.report.plots import center_heatmap_svg, per_case_dsc_svg, rank_stability_svg
from app.report.template import CSS, TEMPLATE
from evaluator.bootstrap import bootstrap
from evaluator.bootstrap_result import BootstrapResult
from evaluator.centers import CenterResult, per_center
from evaluator.patients import case_center
from evaluator.protocol import HECKTOR2025, Protocol
from evaluator.ranking import rank_rows
from evaluator.registry import leaderboard_metrics, metrics_of, ranked_metrics

__all__ = [
    "TASK_TITLES",
    "TaskReportData",
    "TeamRow",
    "build_task_report",
    "render_report",
    "task_sections",
]

#: the titles under the 2025 rules; a task of another edition takes its protocol's
TASK_TITLES: dict[int, str] = {t: task_title(t, sep=" — ", long=True) for t in (1, 2, 3)}


@dataclass(frozen=True)
class TeamRow:
    """One leaderboard row: a team's scored submission, its metrics and ranks."""

    team: str
    metrics: Mapping[str, float | int | None]
    ranks: Mapping[str, float]  # at least "final"; as from evaluator.ranking.rank_rows
    submission_id: str | None = None
    submission_sha256: str | None = None


@dataclass(frozen=True)
class TaskReportData:
    """Everything the report shows of one task of a phase.

    ``cases`` maps each team to its per-case records (the ``cases`` of its result
    document); ``per_center`` maps each team to :func:`evaluator.centers.per_center`'s
    result; ``provenance`` holds free key/value facts (protocol hash, ground-truth
    hash, evaluator version, freeze time...) shown under the task title.
    """

    task: int
    rows: Sequence[TeamRow]
    cases: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    bootstrap: BootstrapResult | None = None
    per_center: Mapping[str, Mapping[str, CenterResult]] = field(default_factory=dict)
    provenance: Mapping[str, str] = field(default_factory=dict)
    protocol: str | None = None  # the name of the rules (None: hecktor2025)

    def sorted_rows(self) -> list[TeamRow]:
        """Rows by final rank, then team name."""
        return sorted(self.rows, key=lambda r: (_final(r), r.team))


def _final(row: TeamRow) -> float:
    v = row.ranks.get("final")
    return float(v) if v is not None and math.isfinite(float(v)) else math.inf


def build_task_report(
    task: int,
    cases: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    protocol: Protocol = HECKTOR2025,
    metrics: Mapping[str, Mapping[str, float | int | None]] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    provenance: Mapping[str, str] | None = None,
    submission_ids: Mapping[str, str] | None = None,
) -> TaskReportData:
    """Everything of :class:`TaskReportData` from the teams' per-case records.

    ``metrics`` (team -> stored leaderboard metrics) is used as given when present,
    else computed with :func:`evaluator.metrics.aggregate.aggregate`; ranks always follow
    :func:`evaluator.ranking.rank_rows`. Runs the bootstrap (skipped when
    ``n_resamples`` is 0 or there is no team) and the per-centre breakdown.
    """
    from evaluator.metrics.aggregate import aggregate

    teams = list(cases)
    values: dict[str, Mapping[str, float | int | None]] = {}
    for team in teams:
        if metrics is not None and team in metrics:
            values[team] = metrics[team]
        else:
            values[team] = aggregate(task, cases[team], protocol)
    ranks = rank_rows(task, [values[t] for t in teams], protocol)  # type: ignore[misc]
    rows = [
        TeamRow(
            team=t,
            metrics=dict(values[t]),
            ranks=ranks[i],
            submission_id=(submission_ids or {}).get(t),
        )
        for i, t in enumerate(teams)
    ]
    boot = (
        bootstrap(task, cases, protocol=protocol, n_resamples=n_resamples, seed=seed)
        if teams and n_resamples > 0
        else None
    )
    centres = {t: per_center(task, cases[t], protocol=protocol) for t in teams}
    return TaskReportData(
        task=task,
        rows=rows,
        cases=cases,
        bootstrap=boot,
        per_center=centres,
        provenance=dict(provenance or {}),
        protocol=protocol.name,
    )


# --- formatting ------------------------------------------------------------------------


#: what a missing or undefined value reads as in the report
NA = "n/a"


def _fmt(value: Any) -> str:
    return format_number(value, digits=3, missing=NA)


def _fmt_rank(value: float | None) -> str:
    return format_rank(value, missing=NA)


def _leaderboard(data: TaskReportData) -> dict[str, Any]:
    scores = list(leaderboard_metrics(data.task, data.protocol))
    counts = [m.name for m in metrics_of(data.task, data.protocol) if m.kind == "count"]
    ranked = [m.name for m in ranked_metrics(data.task, data.protocol)]
    rank_keys = list(dict.fromkeys(k for r in data.rows for k in r.ranks if k != "final"))
    if len(rank_keys) == 1:  # one ranked metric: its rank is the final rank
        rank_keys = []
    boot = data.bootstrap
    alpha_pct = round(100 * (1 - boot.alpha)) if boot else 95
    rows = []
    for r in data.sorted_rows():
        cells = []
        for name in scores:
            interval = None
            if boot is not None and r.team in boot.team_names:
                mi = boot.team(r.team).metrics.get(name)
                if mi is not None and mi.low is not None and mi.high is not None:
                    interval = f"[{_fmt(mi.low)}, {_fmt(mi.high)}]"
            cells.append({"value": _fmt(r.metrics.get(name)), "interval": interval})
        rows.append(
            {
                "rank": _fmt_rank(r.ranks.get("final")),
                "team": r.team,
                "submission": r.submission_id or "",
                "cells": cells,
                "counts": [_fmt(r.metrics.get(c)) for c in counts],
                "ranks": [_fmt_rank(r.ranks.get(k)) for k in rank_keys],
            }
        )
    rank_labels = {"gtvn": "r_n (GTVn)", "gtvp_dsc_mean": "r_p (GTVp)"}
    return {
        "score_headers": [metric_label(n) for n in scores],
        "ranked": [n in ranked for n in scores],
        "count_headers": [metric_label(c) for c in counts],
        "rank_headers": [rank_labels.get(k, f"rank {metric_label(k)}") for k in rank_keys],
        "rows": rows,
        "alpha_pct": alpha_pct,
    }


def _stability(boot: BootstrapResult) -> dict[str, Any]:
    rows = []
    for t in sorted(boot.teams, key=lambda t: (t.rank.full_rank, t.team)):
        rows.append(
            {
                "team": t.team,
                "full": _fmt_rank(t.rank.full_rank),
                "median": _fmt_rank(t.rank.median),
                "interval": _rank_range(t.rank.low, t.rank.high),
                "first": (
                    f"{100 * t.rank.first_place_share:.1f}%"
                    if t.rank.first_place_share is not None
                    else "n/a"
                ),
            }
        )
    tau = boot.kendall_tau
    return {
        "n_resamples": boot.n_resamples,
        "n_used": boot.n_resamples - boot.n_degenerate,
        "n_left_out": boot.n_degenerate,
        "rows": rows,
        "tau": {
            "mean": _fmt(tau.mean),
            "median": _fmt(tau.median),
            "interval": f"[{_fmt(tau.low)}, {_fmt(tau.high)}]",
            "n": tau.n,
        },
        "svg": Markup(rank_stability_svg(boot)),
    }


def _rank_range(low: float | None, high: float | None) -> str:
    """The ranks a team took in the central resamples, read as ranks: ``2`` when it
    always took the same one, else ``1–3``; ``n/a`` without resamples."""
    if low is None or high is None:
        return "n/a"
    if low == high:
        return _fmt_rank(low)
    return f"{_fmt_rank(low)}–{_fmt_rank(high)}"


def _too_few(
    data: TaskReportData, teams: Sequence[str], centres: Sequence[str], name: str
) -> dict[str, str]:
    """Centres where ``name`` is undefined for every team, with the reason (the first
    team's): they are said in words instead of a column of empty cells."""
    out: dict[str, str] = {}
    for c in centres:
        results = [data.per_center[t].get(c) for t in teams]
        if all(r is None or r.metrics.get(name) is None for r in results):
            reason = next((r.undefined.get(name, "") for r in results if r is not None), "")
            out[c] = reason or "no case"
    return out


def _centres(data: TaskReportData, order: Sequence[str]) -> dict[str, Any] | None:
    if not data.per_center:
        return None
    teams = [t for t in order if t in data.per_center]
    teams += [t for t in data.per_center if t not in teams]
    centres = sorted({c for t in teams for c in data.per_center[t]})
    if not centres:
        return None
    n_cases: dict[str, int] = {}
    for t in teams:
        for c, result in data.per_center[t].items():
            n_cases.setdefault(c, result.n_cases)
    tables = []
    for name in (m.name for m in ranked_metrics(data.task, data.protocol)):
        grid: dict[str, dict[str, float | None]] = {}
        rows = []
        too_few = _too_few(data, teams, centres, name)
        shown = [c for c in centres if c not in too_few]
        for t in teams:
            cells = []
            grid[t] = {}
            for c in shown:
                res = data.per_center[t].get(c)
                v = res.metrics.get(name) if res is not None else None
                fv = float(v) if v is not None else None
                grid[t][c] = fv
                reason = res.undefined.get(name, "") if res is not None else "no case"
                cells.append({"value": _fmt(fv), "reason": reason})
            rows.append({"team": t, "cells": cells})
        tables.append(
            {
                "metric": metric_label(name),
                "centres": [{"name": c, "n": n_cases.get(c, 0)} for c in shown],
                "rows": rows,
                "too_few": [
                    {"name": c, "n": n_cases.get(c, 0), "reason": r} for c, r in too_few.items()
                ],
                "svg": (
                    Markup(
                        center_heatmap_svg(
                            grid,
                            metric_label=f"Task {data.task}: {metric_label(name)}",
                            centers=shown,
                            n_cases=n_cases,
                        )
                    )
                    if shown
                    else None
                ),
            }
        )
    return {
        "centres": [{"name": c, "n": n_cases.get(c, 0)} for c in centres],
        "tables": tables,
    }


def _per_case_svg(data: TaskReportData, order: Sequence[str]) -> Markup | None:
    if data.task != 1 or not data.cases:
        return None
    from evaluator.metrics.segmentation import gtvp_dsc

    teams = [t for t in order if t in data.cases] + [t for t in data.cases if t not in order]
    values: dict[str, list[float | None]] = {}
    for t in teams:
        values[t] = []
        for rec in data.cases[t]:
            v = rec.get("gtvp_dsc")
            if v is None and "gtvp_intersection" in rec:
                v = gtvp_dsc(rec, both_empty=None)  # both empty: not shown
            values[t].append(None if v is None else float(v))
    return Markup(per_case_dsc_svg(values, title="Task 1: GTVp DSC per case"))


def _task_context(data: TaskReportData) -> dict[str, Any]:
    order = [r.team for r in data.sorted_rows()]
    boot = data.bootstrap
    n_cases = (
        boot.n_cases
        if boot is not None
        else max((len(v) for v in data.cases.values()), default=0) or None
    )
    centres_of_cases = sorted({case_center(rec) for recs in data.cases.values() for rec in recs})
    return {
        "task": data.task,
        "anchor": f"task-{data.task}",
        "title": task_title(data.task, data.protocol, sep=" — ", long=True),
        "n_teams": len(data.rows),
        "n_cases": n_cases,
        "n_centres": len(centres_of_cases) or None,
        "provenance": sorted(data.provenance.items()),
        "leaderboard": _leaderboard(data),
        "boot": boot,
        "boot_notes": list(boot.notes) if boot else [],
        "stability": _stability(boot) if boot is not None and boot.n_resamples > 0 else None,
        "centres": _centres(data, order),
        "per_case_svg": _per_case_svg(data, order),
    }


def task_sections(data: TaskReportData) -> dict[str, Any]:
    """The parts of one task's report as template values, for pages that show them
    outside the report: ``leaderboard`` (rows with their intervals), ``stability``
    (table rows, Kendall's tau, ``svg``), ``centres`` (``tables`` each with an ``svg``),
    ``per_case_svg`` (Task 1), ``boot``, ``boot_notes``, counts and provenance."""
    return _task_context(data)


_ENV = Environment(autoescape=True, keep_trailing_newline=True)
_COMPILED = _ENV.from_string(TEMPLATE)


def render_report(
    phase_name: str,
    tasks: Mapping[int, TaskReportData],
    *,
    title: str | None = None,
    generated_at: str | None = None,
    evaluator_version: str | None = None,
) -> str:
    """The phase report as one self-contained HTML document (tasks in task order)."""
    contexts = [_task_context(tasks[k]) for k in sorted(tasks)]
    stamp = generated_at or dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return _COMPILED.render(
        title=title or f"HECKTOR evaluation report — {phase_name}",
        phase=phase_name,
        generated_at=stamp,
        evaluator_version=evaluator_version,
        css=Markup(CSS),
        tasks=contexts,
    )
