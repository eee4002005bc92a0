"""The HTML leaderboard in headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright): the ranked rows, the submission page with its per-case table, and no
request leaving the server (no CDN, no external fonts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import Api, InlineDispatcher, make_settings, served

pytestmark = pytest.mark.browser
TEAMS = ("perfect", "good", "mediocre", "poor")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, challenge: Any) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("browser")
    settings = make_settings(tmp / "data", f"sqlite:///{tmp / 'data' / 'h.db'}")
    dispatcher = InlineDispatcher(settings)
    # fill the database through the API (judged inline), then serve it for real
    with TestClient(create_app(settings, dispatcher=dispatcher)) as c:
        api = Api(c, challenge)
        api.create_phase("val")
        tokens = {t: api.create_team(t) for t in TEAMS}
        ids = {
            t: api.submit_ok(tokens[t], "val", 1, challenge.archive(t, 1)) for t in reversed(TEAMS)
        }
    with served(create_app(settings, dispatcher=dispatcher)) as base:
        yield {"base": base, "tokens": tokens, "ids": ids}


def test_leaderboard_page_shows_ranked_rows(site: dict[str, Any], browser: Any) -> None:
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{site['base']}/")
    page.click("text=Task 1 · GTVp/GTVn segmentation")
    page.wait_for_selector("#leaderboard")
    assert page.url == f"{site['base']}/leaderboards/val/1"
    rows = page.locator("#leaderboard tbody tr")
    assert rows.count() == 4
    teams = [rows.nth(i).get_attribute("data-team") for i in range(4)]
    ranks = [rows.nth(i).locator("td.rank").inner_text() for i in range(4)]
    assert teams == list(TEAMS)
    assert ranks == ["1", "2", "3", "4"]
    first = rows.nth(0).locator("td").all_inner_texts()
    # GTVp DSC of the perfect team, over its bootstrap interval
    assert first[1] == "perfect" and first[2].splitlines() == ["1.0000", "[1.000, 1.000]"]
    headers = page.locator("#leaderboard thead th").all_inner_texts()
    assert headers[:5] == [
        "Rank",
        "Team",
        "GTVp DSC (mean)",
        "GTVn DSC (aggregated)",
        "GTVn F1 (aggregated)",
    ]
    # the stylesheet is served by the app itself, and nothing else is fetched
    assert page.evaluate("getComputedStyle(document.body).fontFamily").startswith("system-ui")
    assert requests and all(u.startswith(site["base"]) for u in requests), requests
    page.close()


def test_submission_page_with_cookie_login(
    site: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(f"{site['base']}/")
    page.fill("#token", site["tokens"]["good"])
    page.click("text=Sign in")
    page.wait_for_selector("#submissions")
    assert "team good" in page.locator("header").inner_text()
    page.click(f"#submissions >> text={site['ids']['good']}")
    page.wait_for_selector("#cases")
    assert page.locator("#status").inner_text() == "scored"
    assert page.locator("#cases tbody tr").count() == 6
    assert "GTVp DSC (mean)" in page.locator("#metrics").inner_text()
    # another team's submission is not found for this team
    resp = page.goto(f"{site['base']}/submissions/{site['ids']['perfect']}")
    assert resp is not None and resp.status == 404
    ctx.close()
