"""HTML pages: ``/`` (phases and leaderboards), ``/leaderboards/{phase}/{task}``,
``/submissions/{id}`` (result and per-case table).

Authentication for pages: the ``Authorization: Bearer`` header, or the HttpOnly cookie
``hecktor_token``. Opening any page with ``?token=<token>`` (or posting the form on
``/``) stores the token in that cookie and redirects to the same page without it, so
the token does not stay in the address bar or the history. ``/logout`` clears it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

import evaluator
from app.api.deps import COOKIE, get_read_session, get_session, page_principal, resolve
from app.db.models import SCORED, VALID
from app.leaderboard import format_rank
from app.security import Principal
from app.services import (
    Conflict,
    Forbidden,
    can_see_leaderboard,
    get_submission,
    list_phases,
    list_submissions,
    scores_hidden,
    submission_cases,
    submission_public,
)
from evaluator.registry import BY_NAME, metrics_of, ranked_metrics
from evaluator.results import cases_csv

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)

TASK_TITLES = {
    1: "Task 1 · GTVp/GTVn segmentation",
    2: "Task 2 · recurrence-free survival",
    3: "Task 3 · HPV status",
}


RANK_LABELS = {
    "gtvp_dsc_mean": "r GTVp",
    "gtvn_dsc_agg": "r DSCagg",
    "gtvn_f1_agg": "r F1agg",
    "gtvn": "r GTVn",
}
RANK_TITLES = {
    "gtvp_dsc_mean": "r_p: rank by GTVp DSC (mean)",
    "gtvn_dsc_agg": "rank by GTVn DSC (aggregated)",
    "gtvn_f1_agg": "rank by GTVn F1 (aggregated)",
    "gtvn": "r_n: rank of (rank DSCagg + rank F1agg)",
}


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.{digits}f}"
    return str(value)


def _dt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value.replace("T", " ").replace("Z", " UTC")[:23]
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["fmt"] = fmt
templates.env.filters["rank"] = format_rank
templates.env.filters["dt"] = _dt
templates.env.globals["version"] = evaluator.__version__
templates.env.globals["task_titles"] = TASK_TITLES


def metric_label(name: str) -> str:
    m = BY_NAME.get(name)
    return m.label if m and m.label else name


templates.env.globals["metric_label"] = metric_label


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def error_page(
    request: Request, status: int, detail: str, errors: list[dict[str, Any]]
) -> HTMLResponse:
    return render(
        request,
        "error.html",
        {"status": status, "detail": detail, "errors": errors, "principal": None},
        status_code=status,
    )


def _token_redirect(request: Request, session: Session) -> Response | None:
    """``?token=...``: move a valid token into the cookie and drop it from the URL."""
    token = request.query_params.get("token")
    if token is None:
        return None
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    url = request.url.path + (f"?{urlencode(rest)}" if rest else "")
    response = RedirectResponse(url, status_code=303)
    if resolve(request, session, token) is not None:
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            max_age=30 * 24 * 3600,
        )
    return response


@router.get("/", response_class=HTMLResponse)
def index(
    request: Request,
    principal: Principal | None = Depends(page_principal),
    session: Session = Depends(get_read_session),
) -> Response:
    if (r := _token_redirect(request, session)) is not None:
        return r
    phases = [
        {
            "phase": p,
            "tasks": [t.task for t in p.tasks],
            "visible": can_see_leaderboard(p, principal),
        }
        for p in list_phases(session)
    ]
    subs = list_submissions(session, principal, limit=50) if principal is not None else []
    return render(request, "index.html", {"phases": phases, "principal": principal, "subs": subs})


@router.post("/login")
def login(
    request: Request, token: str = Form(...), session: Session = Depends(get_session)
) -> Response:
    response = RedirectResponse("/", status_code=303)
    if resolve(request, session, token.strip()) is None:
        return error_page(request, 401, "that token is not valid", [])
    response.set_cookie(
        COOKIE,
        token.strip(),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        max_age=30 * 24 * 3600,
    )
    return response


@router.get("/logout")
def logout() -> Response:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@router.get("/leaderboards/{phase}/{task}", response_class=HTMLResponse)
def leaderboard_page(
    request: Request,
    phase: str,
    task: int,
    principal: Principal | None = Depends(page_principal),
    session: Session = Depends(get_read_session),
) -> Response:
    """Read-only: the board comes from the leaderboard cache, like the API's, and a
    write session is opened only when the analysis is not cached yet."""
    if (r := _token_redirect(request, session)) is not None:
        return r
    selection = request.query_params.get("selection") or None
    live = request.query_params.get("live", "").lower() in ("1", "true", "yes")
    board = request.app.state.board_cache.leaderboard(
        session, principal, phase=phase, task=task, selection=selection, live=live
    )
    analysis = _analysis_sections(request, session, board, principal)
    ranked = [m.name for m in ranked_metrics(task)]
    others = [m.name for m in metrics_of(task) if m.name not in ranked]
    # Task 1 shows its partial ranks; for Tasks 2/3 the one ranked metric is the final rank
    rank_keys = [k for k in RANK_LABELS if task == 1 and board["rows"]]
    own = principal.team_name if principal is not None and not principal.is_organizer else None
    return render(
        request,
        "leaderboard.html",
        {
            "board": board,
            "ranked": ranked,
            "others": others,
            "rank_keys": rank_keys,
            "principal": principal,
            "own_team": own,
            "rank_labels": RANK_LABELS,
            "rank_titles": RANK_TITLES,
            "live": live,
            **analysis,
        },
    )


def _analysis_sections(
    request: Request, session: Session, board: dict[str, Any], principal: Principal | None
) -> dict[str, Any]:
    """Intervals, rank stability, per-centre tables and heat maps, per-case plot of a
    board (issue 8): from the snapshot while frozen, else cached or computed."""
    from app.analysis import board_analysis
    from app.phase_report import interval_cells, page_sections

    payload = (
        board_analysis(session, board, principal, write_sessions=request.app.state.sessions)
        if board["rows"]
        else None
    )
    if not payload:
        return {"intervals": {}, "sections": None, "analysis": None}
    return {
        "intervals": interval_cells(payload),
        "sections": page_sections(board, payload),
        "analysis": payload,
    }


@router.get("/submissions/{submission_id}", response_class=HTMLResponse)
def submission_page(
    request: Request,
    submission_id: int,
    principal: Principal | None = Depends(page_principal),
    session: Session = Depends(get_read_session),
) -> Response:
    if (r := _token_redirect(request, session)) is not None:
        return r
    sub = get_submission(session, submission_id, principal)
    assert principal is not None
    view = submission_public(session, sub, principal)
    cases = (view["result"] or {}).get("cases") or []
    columns: list[str] = []
    for c in cases:
        for k in c:
            if k not in columns:
                columns.append(k)
    metrics = (view["result"] or {}).get("metrics") or {}
    centers: list[dict[str, Any]] = []
    if cases and view["status"] == SCORED:
        from app.analysis import submission_centers

        centers = submission_centers(
            sub.task, cases, next((t for t in sub.phase.tasks if t.task == sub.task), None)
        )
    return render(
        request,
        "submission.html",
        {
            "s": view,
            "cases": cases,
            "columns": columns,
            "metrics": metrics,
            "centers": centers,
            "center_metrics": [m.name for m in metrics_of(sub.task) if m.kind == "score"],
            "principal": principal,
            "pending": view["status"] in ("received", "queued", "running"),
        },
    )


@router.get("/submissions/{submission_id}/cases.csv")
def submission_cases_page(
    request: Request,
    submission_id: int,
    principal: Principal | None = Depends(page_principal),
    session: Session = Depends(get_read_session),
) -> Response:
    sub = get_submission(session, submission_id, principal)
    assert principal is not None
    if scores_hidden(sub, principal):
        raise Forbidden(f"scores of phase {sub.phase.name!r} are hidden from teams")
    if sub.status not in (SCORED, VALID):
        raise Conflict(f"submission {sub.id} is {sub.status}; there are no per-case results yet")
    return PlainTextResponse(
        cases_csv(submission_cases(session, sub.id)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="submission-{sub.id}-cases.csv"'},
    )
