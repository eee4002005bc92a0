"""The analysis on the HTML pages in headless Chromium: bootstrap intervals
in the leaderboard, the rank-stability plot, the per-centre tables and heat maps, the
per-case DSC plot, all server-rendered inline SVG that draws under the pages'
Content-Security-Policy (no inline CSS, nothing fetched from elsewhere); the frozen
banner; a submission's per-centre table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import ORG, Api, InlineDispatcher, auth, make_settings, served

pytestmark = pytest.mark.browser
TEAMS = ("perfect", "good", "mediocre", "poor")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, challenge: Any) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("browser-analysis")
    settings = make_settings(tmp / "data", f"sqlite:///{tmp / 'data' / 'h.db'}")
    dispatcher = InlineDispatcher(settings)
    with TestClient(create_app(settings, dispatcher=dispatcher)) as c:
        api = Api(c, challenge)
        # every centre shown to teams (one or two cases each)
        api.create_phase("val", tasks=[1, 3], analysis_resamples=100, min_center_cases=1)
        api.create_phase("fz", tasks=[3], analysis_resamples=50, min_center_cases=1)
        tokens = {t: api.create_team(t) for t in TEAMS}
        ids = {
            (t, task): api.submit_ok(tokens[t], p, task, challenge.archive(t, task))
            for t in TEAMS
            for p, tasks in (("val", (1, 3)), ("fz", (3,)))
            for task in tasks
        }
        r = c.post("/api/v1/admin/phases/fz/freeze", json={}, headers=auth(ORG))
        assert r.status_code == 200, r.text
    with served(create_app(settings, dispatcher=dispatcher)) as base:
        yield {"base": base, "tokens": tokens, "ids": ids}


def _open(browser: Any, url: str) -> tuple[Any, list[str], list[str]]:
    page = browser.new_page()
    requests: list[str] = []
    console: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: console.append(m.text))
    resp = page.goto(url)
    assert resp is not None and resp.status == 200
    return page, requests, console


def _plot(page: Any, fig_id: str) -> Any:
    svg = page.locator(f"#{fig_id} svg")
    assert svg.count() == 1, fig_id
    assert svg.is_visible(), fig_id
    box = svg.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 80, (fig_id, box)
    return svg


def test_leaderboard_plots_render(site: dict[str, Any], browser: Any) -> None:
    page, requests, console = _open(browser, f"{site['base']}/leaderboards/val/1")
    # intervals under every score of every team
    cis = page.locator("#leaderboard tbody tr").nth(0).locator(".ci")
    assert cis.count() == 3 and cis.nth(0).is_visible()
    assert cis.nth(0).inner_text() == "[1.000, 1.000]"

    # rank stability: plot with every team, table in the leaderboard's order
    svg = _plot(page, "plot-rank-stability")
    labels = [t.strip() for t in svg.locator("text").all_text_contents()]
    for team in TEAMS:
        assert team in labels, (team, labels)
    assert page.locator("#stability tbody tr").count() == 4
    assert "Kendall" in page.locator("#kendall").inner_text()

    # per-centre tables and heat maps (one per ranked metric)
    for i in (1, 2, 3):
        heat = _plot(page, f"plot-centres-{i}")
        text = " ".join(heat.locator("text").all_text_contents())
        assert all(t in text for t in TEAMS) and "MDA" in text and "(n=2)" in text
        assert "CHUB" in text and "USZ" in text
    assert page.locator("table.centres").count() == 0  # shown once: the heat map has the values
    # the styles arrived as attributes: cells are coloured, the background is white
    fills = page.eval_on_selector_all(
        "#plot-centres-1 svg path", "els => els.map(e => getComputedStyle(e).fill)"
    )
    assert "rgb(255, 255, 255)" in fills and len(set(fills)) > 3, set(fills)

    # per-case DSC (Task 1): dots over a box per team
    per_case = _plot(page, "plot-per-case")
    assert all(t in per_case.locator("text").all_text_contents() for t in TEAMS)

    # nothing fetched from elsewhere, no CSP violation reported
    assert requests and all(u.startswith(site["base"]) for u in requests), requests
    assert not [m for m in console if "Content Security Policy" in m], console
    page.close()


def test_task3_frozen_page_and_submission_centres(site: dict[str, Any], browser: Any) -> None:
    page, _, console = _open(browser, f"{site['base']}/leaderboards/fz/3")
    assert page.locator("#frozen").is_visible()
    assert "Frozen leaderboard" in page.locator("#frozen").inner_text()
    svg = _plot(page, "plot-rank-stability")
    assert all(t in svg.locator("text").all_text_contents() for t in TEAMS)
    _plot(page, "plot-centres-1")
    assert page.locator("#plot-per-case").count() == 0  # Task 1 only
    assert not [m for m in console if "Content Security Policy" in m], console
    page.close()

    ctx = browser.new_context()
    page = ctx.new_page()
    sid = site["ids"]["good", 3]
    page.goto(f"{site['base']}/submissions/{sid}")  # 401: the page offers the login form
    page.fill("#token", site["tokens"]["good"])
    page.click("text=Sign in")  # and comes back to the submission
    page.wait_for_selector("#centers")
    rows = page.locator("#centers tbody tr")
    assert [rows.nth(i).get_attribute("data-center") for i in range(rows.count())] == ["MDA"]
    # single-case centres: the AUC is undefined there, said in words with the reason
    words = page.locator("#centers-too-few").inner_text()
    assert words.startswith("CHUB (1 case), CHUP (1 case), CHUS (1 case), USZ (1 case):"), words
    assert "too few cases to estimate" in words and "undefined" in words, words
    ctx.close()
