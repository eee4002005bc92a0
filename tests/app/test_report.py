"""Server-rendered plots and the self-contained HTML report (app.report)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pytest

from app.report import TaskReportData, TeamRow, build_task_report, render_report
from app.report.plots import center_heatmap_svg, per_case_dsc_svg, rank_stability_svg
from evaluator.bootstrap import bootstrap
from evaluator.centers import per_center

SVG_NS = "{http://www.w3.org/2000/svg}"
# A hostile team name: markup, an ampersand, quotes and matplotlib's mathtext marker.
ODD = '<b>R&D "lab" $x$</b>'


def svg_text(svg: str) -> str:
    """Every text of the SVG, parsed as XML (fails if the SVG is not well-formed)."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    return " ".join("".join(el.itertext()) for el in root.iter(f"{SVG_NS}text"))


def records(task: int, n_teams: int = 3, n_cases: int = 24, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    ids = [f"{('CHUM', 'HGJ', 'MDA')[i % 3]}-{i:03d}" for i in range(n_cases)]
    names = [ODD, "beta", "gamma", "delta"][:n_teams]
    out: dict[str, list[dict[str, Any]]] = {}
    labels = np.array([i % 2 for i in range(n_cases)])
    times = rng.integers(1, 30, n_cases).astype(float)
    events = (rng.random(n_cases) < 0.5).astype(int)
    events[:2] = 1
    for t, name in enumerate(names):
        q = 0.9 - 0.2 * t
        if task == 1:
            out[name] = [
                {"patient_id": pid, "center": pid.split("-")[0],
                 "gtvp_intersection": int(90 * q) if i % 7 else 0,
                 "gtvp_pred_voxels": 100 if i % 7 else 0, "gtvp_gt_voxels": 100 if i % 7 else 0,
                 "gtvn_intersection": int(40 * q), "gtvn_pred_voxels": 50, "gtvn_gt_voxels": 45,
                 "gtvn_tp": 1, "gtvn_fp": t, "gtvn_fn": int(rng.integers(0, 2)),
                 "voxel_volume_mm3": 1.0}
                for i, pid in enumerate(ids)
            ]  # fmt: skip
        elif task == 2:
            risk = -times * q + rng.normal(0, 5, n_cases)
            out[name] = [
                {"patient_id": pid, "center": pid.split("-")[0], "prediction": float(risk[i]),
                 "time": float(times[i]), "event": int(events[i])}
                for i, pid in enumerate(ids)
            ]  # fmt: skip
        else:
            prob = np.clip(labels * q + rng.uniform(0, 0.5, n_cases), 0, 1)
            out[name] = [
                {"patient_id": pid, "center": pid.split("-")[0], "prediction": float(prob[i]),
                 "label": int(labels[i])}
                for i, pid in enumerate(ids)
            ]  # fmt: skip
    return out


@pytest.fixture(scope="module")
def reports() -> dict[int, TaskReportData]:
    return {
        task: build_task_report(
            task, records(task), n_resamples=60, seed=1, provenance={"protocol": "hecktor2025"}
        )
        for task in (1, 2, 3)
    }


@pytest.fixture(scope="module")
def html(reports: dict[int, TaskReportData]) -> str:
    return render_report("final & <test>", reports, generated_at="2025-01-01 00:00 UTC")


def test_per_case_svg_parses_and_names_every_team() -> None:
    svg = per_case_dsc_svg({ODD: [0.9, 0.8, None, 1.0], "beta": [0.2, 0.5], "empty": []})
    assert svg.startswith("<svg") and "<!DOCTYPE" not in svg
    text = svg_text(svg)
    for team in (ODD, "beta", "empty"):
        assert team in text
    assert svg == per_case_dsc_svg({ODD: [0.9, 0.8, None, 1.0], "beta": [0.2, 0.5], "empty": []})


def test_rank_stability_svg_parses_and_names_every_team() -> None:
    teams = records(2)
    svg = rank_stability_svg(bootstrap(2, teams, n_resamples=40))
    text = svg_text(svg)
    for team in teams:
        assert team in text
    assert "final rank" in text


def test_center_heatmap_svg_marks_undefined_cells() -> None:
    svg = center_heatmap_svg(
        {ODD: {"CHUM": 0.8, "HGJ": None}, "beta": {"CHUM": 0.5, "HGJ": 0.6}},
        metric_label="AUC",
        n_cases={"CHUM": 10, "HGJ": 4},
    )
    text = svg_text(svg)
    assert ODD in text and "beta" in text and "CHUM" in text and "n/a" in text
    assert "0.80" in text and "(n=4)" in text


def test_empty_inputs_still_give_an_svg() -> None:
    assert "no team" in svg_text(per_case_dsc_svg({}))
    assert "no per-centre" in svg_text(center_heatmap_svg({}, metric_label="AUC"))


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: set[str] = set()
        self.ids: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "data") and value:
                self.urls.append(value)
            if name == "id" and value and tag == "section":
                self.ids.append(value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_report_is_self_contained(html: str) -> None:
    parser = _Collector()
    parser.feed(html)
    assert not [u for u in parser.urls if not u.startswith("#")], parser.urls
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html)
    assert not re.search(r"""url\(\s*["']?(?!#)""", html)  # only url(#local-id)
    assert "@import" not in html
    assert not {"script", "link", "img", "iframe"} & parser.tags
    assert "<style>" in html and html.count("<svg") >= 1 + 3 + 5  # per-case, rank x3, centres


def test_report_has_every_task_and_team(html: str, reports: dict[int, TaskReportData]) -> None:
    parser = _Collector()
    parser.feed(html)
    assert parser.ids == ["task-1", "task-2", "task-3"]
    text = "".join(parser.text)
    assert "final & <test>" in text  # escaped in the page, readable as text
    assert "<b>R&D" not in html  # the odd team name never becomes markup
    for data in reports.values():
        for row in data.rows:
            assert row.team in text
    for title in ("Leaderboard", "Rank stability", "Per centre", "Per-case GTVp DSC"):
        assert title in text
    assert "Kendall" in text and "CHUM" in text and "hecktor2025" in text


def test_report_shows_intervals_from_the_bootstrap(reports: dict[int, TaskReportData]) -> None:
    data = reports[2]
    page = render_report("p", {2: data}, generated_at="now")
    boot = data.bootstrap
    assert boot is not None
    best = data.sorted_rows()[0]
    mi = boot.team(best.team).metrics["c_index"]
    assert f"[{mi.low:.3f}, {mi.high:.3f}]" in page
    assert f"{best.metrics['c_index']:.3f}" in page
    assert "Task 1" not in page.split("<main>")[1]  # only the task asked for


def test_report_without_bootstrap_or_cases() -> None:
    rows = [
        TeamRow("solo", {"auc": 0.7, "balanced_accuracy": None}, {"auc": 1.0, "final": 1.0}),
    ]
    page = render_report("phase", {3: TaskReportData(task=3, rows=rows)}, generated_at="now")
    assert "solo" in page and "0.700" in page and "Rank stability" not in page
    assert "No task" in render_report("phase", {}, generated_at="now")


def test_per_centre_reasons_reach_the_page() -> None:
    cases = records(3, n_teams=2, n_cases=9)
    # Make centre MDA single-class for everyone: its AUC is undefined, with the reason.
    for recs in cases.values():
        for r in recs:
            if r["center"] == "MDA":
                r["label"] = 1
    data = build_task_report(3, cases, n_resamples=0)
    assert data.bootstrap is None
    assert per_center(3, cases["beta"])["MDA"].metrics["auc"] is None
    page = render_report("p", {3: data}, generated_at="now")
    # undefined for every team: said in words with the reason, not a column of empty cells
    assert "AUC: MDA (" in page and "too few cases to estimate it for any team" in page
    assert "(the AUC is undefined" in page
    assert 'class="na"' not in page
