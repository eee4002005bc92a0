"""Leaderboards and their analyses as report material: the phase report of
``hecktor-eval report`` and the analysis sections of the HTML leaderboard page.

Both are fed from stored rows only: the board of :func:`app.services.leaderboards.leaderboard` (the
snapshot's while the phase is frozen) and the analysis payload of :mod:`app.services.board_analysis`
(cached, or the snapshot's). No image and no case file is read.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from markupsafe import Markup
from sqlalchemy.orm import Session

import evaluator
from app.errors import BadRequest
from app.report.render import TaskReportData, TeamRow, render_report, task_sections
from app.security import ORGANIZER_PRINCIPAL
from app.services.analysis_cache import get_analysis_commit
from app.services.analysis_payload import AnalysisPayload
from app.services.board_analysis import analysis_params, snapshot_analysis
from app.services.leaderboards import leaderboard
from app.services.phases import get_phase, get_phase_task
from evaluator.bootstrap_result import BootstrapResult
from evaluator.centers import CenterResult

__all__ = ["build_phase_report", "interval_cells", "page_sections", "task_report_data"]


def task_report_data(
    board: Mapping[str, Any], payload: Mapping[str, Any] | None, *, provenance: Mapping[str, str]
) -> TaskReportData:
    """:class:`TaskReportData` of one task from a stored board and analysis payload."""
    task = int(board["task"])
    rows = [
        TeamRow(
            team=str(r["team"]),
            metrics=dict(r["metrics"]),
            ranks={k: float(v) for k, v in r["ranks"].items()},
            submission_id=str(r["submission_id"]),
            submission_sha256=r.get("submission_sha256"),
        )
        for r in board["rows"]
    ]
    payload = payload or {}
    boot = payload.get("bootstrap")
    centres = {
        t: {c: CenterResult.from_dict(v) for c, v in per.items()}
        for t, per in (payload.get("per_center") or {}).items()
    }
    # case records for the per-case plot (Task 1) and the case and centre counts; a
    # payload seen by a team or an anonymous reader has each team's values sorted
    # (``per_case_values``, no patient), or nothing per case
    cases: dict[str, list[dict[str, Any]]] = {}
    per_case = payload.get("per_case") or {}
    values = payload.get("per_case_values")
    if values:
        cases = {t: [{"gtvp_dsc": v} for v in vs] for t, vs in values.items()}
    elif values is None and per_case:
        cases = {t: [dict(c) for c in recs] for t, recs in per_case.items()}
    elif payload.get("centers"):
        stub = [
            {"patient_id": "", "center": c["center"]}
            for c in payload["centers"]
            for _ in range(int(c["n_cases"]))
        ]
        cases = {r.team: stub for r in rows}
    return TaskReportData(
        task=task,
        rows=rows,
        cases=cases,
        bootstrap=BootstrapResult.from_dict(boot) if boot else None,
        per_center=centres,
        provenance=dict(provenance),
        protocol=board.get("protocol"),
    )


def _provenance(board: Mapping[str, Any], payload: Mapping[str, Any] | None) -> dict[str, str]:
    out = {
        "selection": f"{board['selection']} submission per team",
        "protocol sha256": str(board.get("protocol_sha256", "")),
        "ground truth sha256": str(board.get("ground_truth_sha256", "")),
    }
    versions = sorted(
        {str(r["evaluator_version"]) for r in board["rows"] if r.get("evaluator_version")}
    )
    if versions:
        out["evaluator version(s) of the results"] = ", ".join(versions)
    if board.get("frozen"):
        frozen_at = board.get("frozen_at")
        out["frozen at"] = (
            frozen_at.isoformat(timespec="seconds")
            if isinstance(frozen_at, datetime)
            else str(frozen_at)
        )
        out["snapshot sha256"] = str(board.get("snapshot_sha256", ""))
    else:
        out["leaderboard"] = "live (not frozen)"
    if payload:
        out["analysis"] = (
            f"{payload.get('n_resamples')} bootstrap resamples, seed {payload.get('seed')}, "
            f"computed {payload.get('computed_at')}"
        )
        if payload.get("bootstrap_error"):
            out["bootstrap"] = f"not available: {payload['bootstrap_error']}"
    return out


def build_phase_report(
    session: Session,
    phase_name: str,
    *,
    live: bool = False,
    n_resamples: int | None = None,
    seed: int | None = None,
    selection: str | None = None,
) -> str:
    """The phase report (one self-contained HTML document) from the stored rows: the
    frozen boards and their analyses while the phase is frozen (unless ``live``), else
    the live boards with their (cached or computed) analyses. Commits cache entries."""
    phase = get_phase(session, phase_name)
    n, s = analysis_params(phase, ORGANIZER_PRINCIPAL, n_resamples, seed)
    tasks: dict[int, TaskReportData] = {}
    for pt in list(phase.tasks):
        board = leaderboard(
            session, phase.name, pt.task, ORGANIZER_PRINCIPAL, selection=selection, live=live
        )
        if not board["rows"]:
            continue
        if board.get("frozen"):
            payload: AnalysisPayload | None = snapshot_analysis(session, board)
            if payload and (
                (n_resamples is not None and n_resamples != payload.get("n_resamples"))
                or (seed is not None and seed != payload.get("seed"))
            ):
                raise BadRequest(
                    f"phase {phase.name!r} is frozen with {payload.get('n_resamples')} resamples "
                    f"and seed {payload.get('seed')}; re-freeze it with other settings or "
                    "report the live leaderboards (--live)"
                )
        else:
            pt = get_phase_task(session, phase, pt.task)
            payload, _ = get_analysis_commit(session, phase, pt, board, n_resamples=n, seed=s)
        tasks[pt.task] = task_report_data(board, payload, provenance=_provenance(board, payload))
    title = f"HECKTOR evaluation report — {phase.title or phase.name}"
    return render_report(phase.name, tasks, title=title, evaluator_version=evaluator.__version__)


# -- the leaderboard page ----------------------------------------------------------------
def interval_cells(payload: Mapping[str, Any] | None) -> dict[str, dict[str, dict[str, Any]]]:
    """team -> metric -> {low, high} of the bootstrap percentile intervals."""
    boot = (payload or {}).get("bootstrap") or {}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for t in boot.get("teams", []):
        out[t["team"]] = {
            k: {"low": v.get("low"), "high": v.get("high")}
            for k, v in t["metrics"].items()
            if v.get("low") is not None and v.get("high") is not None
        }
    return out


_SECTIONS: OrderedDict[str, dict[str, Any]] = OrderedDict()
_SECTIONS_LOCK = threading.Lock()
_SECTIONS_MAX = 32


def _safe(svg: Any) -> Markup:
    from app.report.plots import svg_without_css

    return Markup(svg_without_css(str(svg)))


def page_sections(board: Mapping[str, Any], payload: Mapping[str, Any]) -> dict[str, Any]:
    """Rank stability, per-centre tables and heat maps, and the per-case plot of a board,
    with SVGs free of inline CSS (the pages' Content-Security-Policy allows none).
    Memoised per (analysis, board order) in this process: plots are drawn once."""
    order = [(r["team"], r["submission_id"], r["rank"]) for r in board["rows"]]
    memo = hashlib.sha256(
        json.dumps(
            [
                payload.get("key"),
                payload.get("computed_at"),
                payload.get("view"),  # what the caller may see (app.access)
                board.get("snapshot_sha256"),
                order,
            ],
            default=str,
        ).encode()
    ).hexdigest()
    with _SECTIONS_LOCK:
        hit = _SECTIONS.get(memo)
        if hit is not None:
            _SECTIONS.move_to_end(memo)
            return hit
    data = task_report_data(board, payload, provenance={})
    ctx = task_sections(data)
    if ctx.get("stability"):
        ctx["stability"]["svg"] = _safe(ctx["stability"]["svg"])
    if ctx.get("centres"):
        for tab in ctx["centres"]["tables"]:
            if tab["svg"] is not None:
                tab["svg"] = _safe(tab["svg"])
    if ctx.get("per_case_svg"):
        ctx["per_case_svg"] = _safe(ctx["per_case_svg"])
    with _SECTIONS_LOCK:
        _SECTIONS[memo] = ctx
        while len(_SECTIONS) > _SECTIONS_MAX:
            _SECTIONS.popitem(last=False)
    return ctx
