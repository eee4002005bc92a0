"""Every page fits a 1366 x 768 window in headless Chromium: no horizontal scrollbar
(``document.documentElement.scrollWidth <= window.innerWidth``) on the home page, the
phase list, each task's board of a 2025 and a 2026 phase (with its analysis), a
submission page of each task, the phase report, the sign-in page and an error page.
A screenshot of each page is saved under the test's temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import ORG, Api, InlineDispatcher, auth, make_settings, served

pytestmark = pytest.mark.browser
TEAMS = ("perfect", "good", "mediocre", "poor")
WIDTH, HEIGHT = 1366, 768


def _file_2026(root: Path, team: str, task: int) -> Path:
    names = {1: ("task1.zip",), 2: ("task2.zip",), 3: ("task3.zip", "task3.csv")}[task]
    return next(p for n in names if (p := root / "submissions" / team / n).exists())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, challenge: Any) -> Iterator[dict[str, Any]]:
    from evaluator.synth import generate_challenge

    tmp = tmp_path_factory.mktemp("browser-fit")
    c26 = tmp / "c26"
    generate_challenge(c26, seed=0, small=True, n_cases=10, edition=2026)
    settings = make_settings(tmp / "data", f"sqlite:///{tmp / 'data' / 'h.db'}")
    dispatcher = InlineDispatcher(settings)
    ids: dict[tuple[str, str, int], int] = {}
    with TestClient(create_app(settings, dispatcher=dispatcher)) as c:
        api = Api(c, challenge)
        api.create_phase("val", analysis_resamples=100, min_center_cases=1)
        api.create_phase(
            "v26",
            ground_truth=str(c26 / "ground_truth"),
            protocol="hecktor2026",
            analysis_resamples=100,
        )
        tokens = {t: api.create_team(t) for t in TEAMS}
        for t in TEAMS:
            for task in (1, 2, 3):
                ids["val", t, task] = api.submit_ok(
                    tokens[t], "val", task, challenge.archive(t, task)
                )
                ids["v26", t, task] = api.submit_ok(
                    tokens[t], "v26", task, _file_2026(c26, t, task)
                )
        r = c.get("/api/v1/admin/phases/val/report", headers=auth(ORG))
        assert r.status_code == 200, r.text
        (tmp / "report.html").write_text(r.text)
    with served(create_app(settings, dispatcher=dispatcher)) as base:
        yield {"base": base, "tokens": tokens, "ids": ids, "report": tmp / "report.html"}


def _pages(site: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(name, path, token to sign in with) of every page to check."""
    good = site["tokens"]["good"]
    out: list[tuple[str, str, str | None]] = [
        ("home", "/", None),
        ("phase-list-signed-in", "/", good),
        ("login", "/login", None),
        ("error-404", "/leaderboards/nope/1", None),
    ]
    for phase in ("val", "v26"):
        for task in (1, 2, 3):
            out.append((f"board-{phase}-{task}", f"/leaderboards/{phase}/{task}", None))
            out.append((f"analysis-{phase}-{task}", f"/leaderboards/{phase}/{task}#analysis", ORG))
            sid = site["ids"][phase, "good", task]
            out.append((f"submission-{phase}-{task}", f"/submissions/{sid}", good))
            # the organizers see the ground truth beside each case: more columns
            out.append((f"submission-org-{phase}-{task}", f"/submissions/{sid}", ORG))
    return out


def _overflow(page: Any) -> dict[str, Any]:
    return dict(
        page.evaluate(
            "() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth,"
            " wide: [...document.querySelectorAll('body *')]"
            ".filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)"
            ".slice(0, 5).map(e => e.tagName + (e.id ? '#' + e.id : '')"
            " + (e.className && e.className.baseVal === undefined ? '.' + e.className : '')),"
            " scrollers: [...document.querySelectorAll('body *')]"
            ".filter(e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX)"
            " && e.scrollWidth > e.clientWidth + 1)"
            ".map(e => (e.firstElementChild && e.firstElementChild.id) || e.tagName)})"
        )
    )


def _fits(r: dict[str, Any]) -> bool:
    """No scrollbar across the page, and none in a box on it (a table in a scroller)."""
    return bool(r["scroll"] <= r["inner"] and not r["scrollers"])


def test_pages_read_in_words(site: dict[str, Any], browser: Any) -> None:
    """Human headers (no snake_case), a legend of the abbreviations, the submission's
    rank and board, centres too small said in words, the resample counts explained."""
    ctx = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    page = ctx.new_page()
    _sign_in(page, site["base"], site["tokens"]["good"])
    page.goto(f"{site['base']}/leaderboards/val/1")
    heads = page.locator("#leaderboard thead th").all_inner_texts()
    assert heads and not [h for h in heads if "_" in h], heads
    legend = page.locator("#legend").inner_text()
    assert "r GTVp" in legend and "rank by GTVp DSC (mean)" in legend and "Subm." in legend
    counts = page.locator("#stability-counts").inner_text()
    assert "resampled 100 times" in counts and "100 resample(s) are used" in counts, counts
    assert page.locator("#stability tbody tr").first.locator("td").nth(3).inner_text() == "1"
    # per centre: one heat map per ranked metric, no table repeating it
    assert page.locator("table.centres").count() == 0
    assert page.locator("figure.heatmap svg").count() == 3

    sid = site["ids"]["val", "good", 1]
    page.goto(f"{site['base']}/submissions/{sid}")
    assert page.locator("#board-rank").inner_text().startswith("rank 2 of 4")
    assert page.locator("#board-link").get_attribute("href") == "/leaderboards/val/1"
    heads = page.locator("#cases thead th").all_inner_texts()
    assert heads[:4] == ["Patient", "Centre", "GTVp DSC", "GTVn DSC"], heads
    assert not [h for h in heads if "_" in h], heads
    assert "n_cases" not in page.locator("#metrics").inner_text()

    # Task 2 under the 2025 rules: single-case centres have no C-index, said in words
    page.goto(f"{site['base']}/submissions/{site['ids']['val', 'good', 2]}")
    words = page.locator("#centers-too-few").inner_text()
    assert "(1 case)" in words and "too few cases to estimate" in words, words
    assert page.locator("#centers td.na").count() == 0
    page.goto(f"{site['base']}/leaderboards/val/2")
    words = page.locator("#too-few-1").inner_text()
    assert "C-index" in words and "too few cases to estimate it for any team" in words, words
    ctx.close()


def _sign_in(page: Any, base: str, token: str) -> None:
    page.goto(f"{base}/")
    page.fill("#token", token)
    page.click("text=Sign in")
    page.wait_for_load_state()


def test_every_page_fits_1366_wide(
    site: dict[str, Any], browser: Any, tmp_path: Path, capsys: Any
) -> None:
    results: dict[str, dict[str, Any]] = {}
    contexts: dict[str | None, Any] = {}
    for name, path, token in _pages(site):
        if token not in contexts:
            ctx = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
            if token is not None:
                _sign_in(ctx.new_page(), site["base"], token)
            contexts[token] = ctx
        page = contexts[token].new_page()
        page.goto(f"{site['base']}{path}")
        page.wait_for_load_state()
        page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
        results[name] = _overflow(page)
        page.close()
    # the report: one self-contained file, opened as it is downloaded
    page = contexts[None].new_page()
    page.goto(site["report"].as_uri())
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    results["report"] = _overflow(page)
    for ctx in contexts.values():
        ctx.close()
    with capsys.disabled():
        print(f"\nscreenshots in {tmp_path}")
        for name, r in results.items():
            ok = "fits" if _fits(r) else "OVERFLOWS"
            print(
                f"  {name:28s} scrollWidth {r['scroll']:5d} / {r['inner']}  {ok}"
                f" scrolled inside: {r['scrollers']}"
            )
    over = {n: r for n, r in results.items() if not _fits(r)}
    assert not over, over
