"""HTML pages: ``/`` (phases and leaderboards), ``/leaderboards/{phase}/{task}``,
``/submissions/{id}`` (result and per-case table).

Authentication for pages: the ``Authorization: Bearer`` header, or the session cookie
``hecktor_session`` that the login form on ``/`` sets (``POST /login``, checked by its
Origin): a random session id stored server-side, never the API token, ending after
``HECKTOR_SESSION_HOURS``, at ``POST /logout`` (with the session's CSRF token) or when the
token that signed in is rotated. Tokens in addresses (``?token=``) are never accepted:
such a page is redirected to itself without it (see :mod:`app.api.middleware`).
"""

from __future__ import annotations

import hmac
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

import evaluator
from app.access import (
    aggregate_only_message,
    can_see_leaderboard,
    visible_centers,
    withheld_note,
)
from app.api.deps import (
    COOKIE,
    BoardCacheDep,
    PagePrincipalDep,
    ReadSessionDep,
    SessionDep,
    form_origin_problem,
    https_site,
    organizer_token,
    resolve,
)
from app.api.submissions import cases_csv_response
from app.db.models import SCORED, Phase, Submission
from app.errors import NotFound, ServiceError
from app.formatting import column_label, format_number, format_rank, metric_label, task_title
from app.security import Principal, open_web_session, revoke_web_session, web_session_principal
from app.services.board_analysis import board_analysis
from app.services.board_cache import BoardCache
from app.services.board_centers import submission_centers
from app.services.phases import FROZEN_NOTE, frozen_since, list_phases, task_protocol
from app.services.records import Board
from app.services.standing import TaskStanding, task_standing
from app.services.submissions import (
    get_submission,
    list_submissions,
    submission_cases,
    submission_public,
)
from evaluator.editions.base import RankOfSum
from evaluator.ranking import ranking_rule
from evaluator.registry import metrics_of, ranked_metrics

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)

# the titles under the 2025 rules; a page of a phase task uses its protocol's titles
TASK_TITLES = {t: task_title(t) for t in (1, 2, 3)}


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


def _dt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value.replace("T", " ").replace("Z", " UTC")[:23]
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["fmt"] = format_number
templates.env.filters["rank"] = format_rank
templates.env.filters["dt"] = _dt
templates.env.globals["version"] = evaluator.__version__
templates.env.globals["task_titles"] = TASK_TITLES
templates.env.globals["metric_label"] = metric_label
templates.env.globals["column_label"] = column_label


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def error_page(
    request: Request, status: int, detail: str, errors: list[dict[str, str]]
) -> HTMLResponse:
    return render(
        request,
        "error.html",
        {"status": status, "detail": detail, "errors": errors, "principal": None},
        status_code=status,
    )


@router.get("/", response_class=HTMLResponse)
def index(
    request: Request,
    principal: PagePrincipalDep,
    session: ReadSessionDep,
    board_cache: BoardCacheDep,
) -> Response:
    phases = []
    for p in list_phases(session):
        visible = can_see_leaderboard(p, principal)
        phases.append(
            {
                "phase": p,
                "tasks": [t.task for t in p.tasks],
                "titles": {t.task: task_title(t.task, task_protocol(t)) for t in p.tasks},
                "visible": visible,
                "frozen_at": frozen_since(session, p),
                "standing": _standing(session, board_cache, principal, p, visible=visible),
            }
        )
    subs = list_submissions(session, principal, limit=50) if principal is not None else []
    return render(
        request,
        "index.html",
        {"phases": phases, "principal": principal, "subs": subs, "frozen_note": FROZEN_NOTE},
    )


def _standing(
    session: Session,
    board_cache: BoardCache,
    principal: Principal | None,
    phase: Phase,
    *,
    visible: bool,
) -> list[TaskStanding]:
    """A signed-in team's quota left and board row for each task of ``phase``."""
    if principal is None or principal.is_organizer or principal.team_id is None:
        return []
    out = []
    for pt in phase.tasks:
        board = None
        if visible:
            try:
                board = board_cache.leaderboard(
                    session, principal, phase=phase.name, task=pt.task, selection=None, live=False
                )
            except ServiceError:
                board = None
        ranked = ranked_metrics(pt.task, task_protocol(pt))
        out.append(
            task_standing(
                session,
                phase,
                principal.team_id,
                principal.team_name or "",
                pt.task,
                board,
                ranked[0].name if ranked else None,
            )
        )
    return out


@router.get("/login")
def login_form() -> Response:
    """The sign-in form is on the front page (a bookmarked or typed ``/login``)."""
    return RedirectResponse("/", status_code=303)


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    token: str = Form(""),
    next: str = Form("/"),
) -> Response:
    """Trade a token for a browser session, then go to ``next`` (a path of this site).
    Refused (403) unless the form comes from this site's own page (Origin, else
    Referer); a wrong token is an authentication failure (rate-limited)."""
    if (why := form_origin_problem(request)) is not None:
        return error_page(request, 403, f"sign-in refused: {why}", [])
    token = token.strip()
    if not token:
        return error_page(request, 400, "enter a team or organizer token to sign in", [])
    principal = resolve(request, session, token)
    if principal is None:
        return error_page(
            request,
            401,
            "that token is not valid (mistyped, or rotated by the organizers); "
            "paste the current token of your team",
            [],
        )
    opened = open_web_session(
        session, principal, token, hours=request.app.state.settings.session_hours
    )
    session.commit()
    # a path of this site only: no scheme, no "//host", no characters a browser drops
    local = re.fullmatch(r"/|(/[A-Za-z0-9_.\-]+)+", next) is not None
    response = RedirectResponse(next if local else "/", status_code=303)
    response.set_cookie(
        COOKIE,
        opened.sid,
        httponly=True,
        samesite="lax",
        secure=https_site(request),
        max_age=opened.max_age,
    )
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, csrf_token: str = Form("")) -> Response:
    """End this browser's session (revoked server-side) and delete its cookie. Needs the
    session's CSRF token (the form in the page header carries it)."""
    sid = request.cookies.get(COOKIE)
    found = web_session_principal(session, sid, organizer_token(request.app.state.settings))
    if found is not None:
        if (why := form_origin_problem(request)) is not None and request.headers.get("origin"):
            return error_page(request, 403, f"logout refused: {why}", [])
        if not hmac.compare_digest(csrf_token.encode(), found[1].encode()):
            return error_page(
                request,
                403,
                "logout refused: the form's CSRF token does not match this session "
                "(a form from another site, or an old page); reload the page and log out again",
                [],
            )
        assert sid is not None
        revoke_web_session(session, sid)
        session.commit()
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE, httponly=True, samesite="lax", secure=https_site(request))
    return response


@router.get("/leaderboards/{phase}/{task}", response_class=HTMLResponse)
def leaderboard_page(
    request: Request,
    phase: str,
    task: int,
    principal: PagePrincipalDep,
    session: ReadSessionDep,
    board_cache: BoardCacheDep,
) -> Response:
    """Read-only: the board comes from the leaderboard cache, like the API's, and a
    write session is opened only when the analysis is not cached yet."""
    if task not in TASK_TITLES:  # before any lookup: a huge number fits no database column
        raise NotFound(f"there is no task {task}: the tasks are 1, 2 and 3")
    selection = request.query_params.get("selection") or None
    live = request.query_params.get("live", "").lower() in ("1", "true", "yes")
    board = board_cache.leaderboard(
        session, principal, phase=phase, task=task, selection=selection, live=live
    )
    analysis = _analysis_sections(request, session, board, principal)
    protocol = board.get("protocol")
    ranked = [m.name for m in ranked_metrics(task, protocol)]
    others = [m.name for m in metrics_of(task, protocol) if m.name not in ranked]
    # a rule that sums ranks (2025 Task 1) shows its partial ranks; a task ranked by one
    # metric has that metric's rank as its final rank
    summed = isinstance(ranking_rule(task, protocol), RankOfSum)
    rank_keys = (
        [k for k in board["rows"][0]["ranks"] if k != "final"] if summed and board["rows"] else []
    )
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
            "task_titles": {task: task_title(task, protocol)},
            "live": live,
            **analysis,
        },
    )


def _analysis_sections(
    request: Request, session: Session, board: Board, principal: Principal | None
) -> dict[str, Any]:
    """Intervals, rank stability, per-centre tables and heat maps, per-case plot of a
    board: from the snapshot while frozen, else cached or computed."""
    from app.report.phase_report import interval_cells, page_sections  # loads matplotlib

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


def _columns(cases: list[dict[str, Any]]) -> list[str]:
    """The fields of the per-case records, in the order they first appear."""
    return list(dict.fromkeys(k for c in cases for k in c))


def _centers(
    session: Session, sub: Submission, principal: Principal
) -> tuple[list[dict[str, Any]], int]:
    """The per-centre results of a scored submission that the caller may see (from the
    full rows), and how many centres are withheld."""
    return visible_centers(
        sub.phase,
        principal,
        submission_centers(
            sub.task,
            submission_cases(session, sub.id),
            next((t for t in sub.phase.tasks if t.task == sub.task), None),
        ),
    )


@router.get("/submissions/{submission_id}", response_class=HTMLResponse)
def submission_page(
    request: Request,
    submission_id: int,
    principal: PagePrincipalDep,
    session: ReadSessionDep,
    board_cache: BoardCacheDep,
) -> Response:
    sub = get_submission(session, submission_id, principal)
    assert principal is not None
    view = submission_public(session, sub, principal)
    result = view["result"]
    cases = (result or {}).get("cases") or []
    centers: list[dict[str, Any]] = []
    n_withheld = 0
    if result is not None and view["status"] == SCORED:
        centers, n_withheld = _centers(session, sub, principal)
    pt = next((t for t in sub.phase.tasks if t.task == sub.task), None)
    protocol = task_protocol(pt) if pt is not None else None
    return render(
        request,
        "submission.html",
        {
            "s": view,
            "cases": cases,
            "columns": _columns(cases),
            "metrics": (result or {}).get("metrics") or {},
            "centers": centers,
            "centers_note": withheld_note(sub.phase, n_withheld),
            "cases_note": (
                aggregate_only_message(sub.phase)
                if result is not None and view["case_rows"] == "none"
                else None
            ),
            "center_metrics": [m.name for m in metrics_of(sub.task, protocol) if m.kind == "score"],
            "task_titles": {sub.task: task_title(sub.task, protocol)},
            "principal": principal,
            "pending": view["status"] in ("received", "queued", "running"),
            "on_board": _on_board(session, board_cache, principal, sub),
        },
    )


def _on_board(
    session: Session, board_cache: BoardCache, principal: Principal, sub: Submission
) -> dict[str, Any] | None:
    """Where a submission stands on its phase task's board, as the caller sees the
    board: ``{"url", "rank"}`` (``rank`` None when another submission of the team is
    the one ranked, ``ranked_id`` naming it), None for a dry run or a board the caller
    may not see."""
    if sub.dry_run:
        return None
    url = f"/leaderboards/{sub.phase.name}/{sub.task}"
    try:
        board = board_cache.leaderboard(
            session, principal, phase=sub.phase.name, task=sub.task, selection=None, live=False
        )
    except ServiceError:
        return None
    row = next((r for r in board["rows"] if r["submission_id"] == sub.id), None)
    team_row = next((r for r in board["rows"] if r["team"] == sub.team.name), None)
    return {
        "url": url,
        "rank": row["rank"] if row is not None else None,
        "n": len(board["rows"]),
        "ranked_id": team_row["submission_id"] if team_row is not None else None,
        "frozen": board["frozen"],
    }


@router.get("/submissions/{submission_id}/cases.csv")
def submission_cases_page(
    request: Request,
    submission_id: int,
    principal: PagePrincipalDep,
    session: ReadSessionDep,
) -> Response:
    sub = get_submission(session, submission_id, principal)
    assert principal is not None
    return cases_csv_response(session, sub, principal)
