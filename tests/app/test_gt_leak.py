"""No ground truth in anything a team or an anonymous reader can obtain.

A challenge of every phase kind (open with per-case scores, aggregate scores only,
hidden, frozen) with all three tasks, on ground truth with distinctive values
(recurrence-free times such as 1234.5678, known true voxel counts, labels); two teams
with scored submissions, a failed one and a dry run. Then, with team A's token, team
B's and none, every GET route of ``/openapi.json`` and every page is walked with real
path parameters (phases, tasks, own and other teams' submissions) and each output
format, and every answer is searched for ground truth: forbidden keys anywhere in the
JSON and in CSV headers and table heads, the distinctive numbers anywhere in the raw
bodies, the detailed per-centre reasons (class and event counts). The walk must cover
every GET route the application has, so that a new route cannot escape it. Organizers
still read the full records.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.access import GENERIC_UNDEFINED, GROUND_TRUTH_FIELDS, TEAM_CASE_FIELDS
from app.main import create_app
from tests.app.conftest import ORG, Api, Challenge, InlineDispatcher, auth, make_settings

# distinctive recurrence-free times and events (MDA's two cases have no event, so the
# C-index is undefined there, with a reason that counts its events)
TIMES = {
    "CHUB-003": (1234.5678, 1),
    "CHUP-008": (2345.6781, 1),
    "CHUS-001": (3456.7812, 0),
    "MDA-009": (4567.8123, 0),
    "MDA-010": (5678.1234, 0),
    "USZ-001": (6781.2345, 1),
}
# case-level fields that carry the truth wherever they appear
ALWAYS_FORBIDDEN = {k for fields in GROUND_TRUTH_FIELDS.values() for k in fields} - {
    "gtvn_tp",
    "gtvn_fp",
    "gtvn_fn",
}
# GTVn detection counts: a board's total over every case is public, a case's or a
# centre's is not (TP + FN is its true lesion count)
COUNTS = {"gtvn_tp", "gtvn_fp", "gtvn_fn"}
CASE_LEVEL = {"cases", "per_case", "per_case_values", "centers", "per_center"}
DETAILED_REASONS = ("HPV positive", "HPV negative", "event(s)", "comparable pair")
# phase -> settings: every kind a team can meet
PHASES: dict[str, dict[str, Any]] = {
    "open": {"case_rows": "scores", "min_center_cases": 2},
    "aggregate": {"case_rows": "none"},  # default min_center_cases 5: every centre withheld
    "hidden": {"hidden": True},
    "frozen": {"case_rows": "scores", "min_center_cases": 1},  # every centre shown
}
TEAM_FILES = {"A": "good", "B": "mediocre"}


def _ground_truth(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    table = dst / "Task 2" / "HECKTOR_2025_Task_2.csv"
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    assert {r["PatientID"] for r in rows} == set(TIMES)
    for r in rows:
        r["RFS"], r["Relapse"] = str(TIMES[r["PatientID"]][0]), str(TIMES[r["PatientID"]][1])
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    table.write_text(out.getvalue())
    return dst


def _true_voxel_counts(gt: Path) -> set[int]:
    """Every case's true GTVp and GTVn voxel count."""
    out: set[int] = set()
    for f in sorted((gt / "Task 1").glob("*/*.nii.gz")):
        arr = np.asanyarray(nib.load(f).dataobj)
        out |= {int(np.count_nonzero(arr == 1)), int(np.count_nonzero(arr == 2))}
    return out


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, challenge: Challenge
) -> Iterator[dict[str, Any]]:
    """The challenge, built once for the module's tests (they only read)."""
    tmp_path = tmp_path_factory.mktemp("gt-leak")
    settings = make_settings(tmp_path / "data", f"sqlite:///{tmp_path / 'db' / 'hecktor.db'}")
    with TestClient(
        create_app(settings, dispatcher=InlineDispatcher(settings)), raise_server_exceptions=False
    ) as client:
        yield _build(Api(client, challenge), tmp_path)


def _build(api: Api, tmp_path: Path) -> dict[str, Any]:
    assert api.challenge is not None
    gt = _ground_truth(api.challenge.ground_truth, tmp_path / "gt")
    for name, settings in PHASES.items():
        api.create_phase(name, ground_truth=str(gt), analysis_resamples=20, **settings)
    tokens = {t: api.create_team(f"team-{t}") for t in TEAM_FILES}
    own: dict[str, list[int]] = {t: [] for t in TEAM_FILES}
    scored: dict[tuple[str, str, int], int] = {}
    for phase, (team, files), task in itertools.product(PHASES, TEAM_FILES.items(), (1, 2, 3)):
        sid = api.submit_ok(tokens[team], phase, task, api.challenge.archive(files, task))
        assert api.wait(ORG, sid)["status"] == "scored"
        own[team].append(sid)
        scored[phase, team, task] = sid
    # team A: a failed submission (a case missing) and a dry run
    table = api.challenge.archive("good", 2).read_text().splitlines()
    failed = api.upload(
        tokens["A"], "open", 2, content="\n".join(table[:3]).encode(), filename="t2.csv"
    )
    assert failed.status_code == 202, failed.text
    dry = api.submit_ok(tokens["A"], "open", 1, api.challenge.archive("good", 1), dry_run=True)
    own["A"] += [failed.json()["id"], dry]
    assert api.wait(ORG, failed.json()["id"])["status"] == "failed"
    assert api.wait(ORG, dry)["status"] == "valid"
    r = api.client.post("/api/v1/admin/phases/frozen/freeze", json={}, headers=auth(ORG))
    assert r.status_code == 200, r.text

    # numbers that must never be shown: the true volumes (unless a team's own
    # prediction happens to have the same count) and the times
    full = {sid: api.status(ORG, sid)["result"]["cases"] for sid in scored.values()}
    predicted = {
        int(c[k])
        for cases in full.values()
        for c in cases
        for k in ("gtvp_pred_voxels", "gtvn_pred_voxels")
        if k in c
    }
    voxels = {n for n in _true_voxel_counts(gt) if n >= 100} - predicted
    assert len(voxels) >= 6, "the synthetic ground truth has too few distinctive volumes"
    return {
        "api": api,
        "tokens": tokens,
        "own": own,
        "scored": scored,
        "full": full,
        "voxels": voxels,
        "ids": sorted(own["A"] + own["B"]),
    }


# -- checks --------------------------------------------------------------------------------
def _walk_json(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(path, key) of every key of every dict in ``obj``."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield path, str(k)
            yield from _walk_json(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk_json(v, (*path, i))


def _number_re(n: int) -> re.Pattern[str]:
    return re.compile(rf"(?<![0-9A-Za-z.]){n}(?![0-9A-Za-z]|\.[0-9])")


def check_no_ground_truth(w: dict[str, Any], who: str, url: str, r: Any) -> None:
    where = f"{who} GET {url} ({r.status_code})"
    body = r.text
    assert "Traceback" not in body, where
    assert r.status_code < 500, (where, body[:300])
    for t, _ in TIMES.values():
        assert f"{t:.4f}"[:7] not in body, (where, t)
    for n in w["voxels"]:
        assert not _number_re(n).search(body), (where, f"true voxel count {n}")
    for text in DETAILED_REASONS:
        assert text not in body, (where, text)
    ctype = r.headers.get("content-type", "")
    if "json" in ctype:
        for path, key in _walk_json(r.json()):
            assert key not in ALWAYS_FORBIDDEN, (where, path, key)
            if key in COUNTS:
                assert not CASE_LEVEL & {p for p in path if isinstance(p, str)}, (
                    where,
                    path,
                    key,
                )
    elif "csv" in ctype:
        header = next(csv.reader(io.StringIO(body)), [])
        assert not ALWAYS_FORBIDDEN & set(header), (where, header)
        if "/leaderboards/" not in url or "/centers" in url:
            assert not COUNTS & set(header), (where, header)
    elif "html" in ctype:
        heads = set(re.findall(r"<th[^>]*>\s*([^<]*?)\s*</th>", body))
        assert not (ALWAYS_FORBIDDEN | COUNTS) & heads, (where, heads)


# -- the walk --------------------------------------------------------------------------------
DOC_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def _get_routes(api: Api) -> set[str]:
    """Every GET route of the application (API and pages), but the API docs."""
    out = set()
    for r in api.client.app.routes:  # type: ignore[attr-defined]
        # routers included into the app list their routes through effective_candidates
        candidates = r.effective_candidates() if hasattr(r, "effective_candidates") else [r]
        for c in candidates:
            path, methods = getattr(c, "path", None), getattr(c, "methods", None) or set()
            if path and "GET" in methods and path not in DOC_ROUTES:
                out.add(path)
    return out


def _variants(api: Api, w: dict[str, Any], template: str) -> list[str]:
    values = {
        "submission_id": [str(i) for i in w["ids"]],
        "phase": list(PHASES),
        "name": list(PHASES),
        "task": ["1", "2", "3"],
    }
    names = re.findall(r"{(\w+)}", template)
    unknown = [n for n in names if n not in values]
    assert not unknown, f"{template}: no values for the path parameter(s) {unknown}"
    params = _openapi_params(api, template)
    queries = [""]
    if "format" in params:
        queries.append("?format=csv")
    if "selection" in params or template == "/leaderboards/{phase}/{task}":
        queries.append("?selection=latest")
    if "phase" in params and "{phase}" not in template:
        queries += [f"?phase={p}" for p in PHASES]
    if "task" in params and "{task}" not in template:
        queries += [f"?task={t}" for t in (1, 2, 3)]
    out = []
    for combo in itertools.product(*(values[n] for n in names)):
        url = template
        for n, v in zip(names, combo, strict=True):
            url = url.replace("{" + n + "}", v)
        out += [url + q for q in queries]
    return out


_PARAMS: dict[str, set[str]] = {}


def _openapi_params(api: Api, template: str) -> set[str]:
    if not _PARAMS:
        doc = api.client.get("/openapi.json").json()
        for p, ops in doc["paths"].items():
            if "get" in ops:
                _PARAMS[p] = {x["name"] for x in ops["get"].get("parameters", [])}
    return _PARAMS.get(template, set())


def test_no_ground_truth_reaches_teams_or_anonymous_readers(world: dict[str, Any]) -> None:
    w = world
    api: Api = w["api"]
    _PARAMS.clear()
    doc = api.client.get("/openapi.json").json()
    api_gets = {p for p, ops in doc["paths"].items() if "get" in ops}
    pages = {p for p in _get_routes(api) if not p.startswith("/api/")}
    assert _get_routes(api) == api_gets | pages
    assert {"/", "/leaderboards/{phase}/{task}", "/submissions/{submission_id}"} <= pages

    callers = {"team-A": w["tokens"]["A"], "team-B": w["tokens"]["B"], "anonymous": None}
    walked: set[str] = set()
    answered: dict[str, set[str]] = {who: set() for who in callers}  # templates with a 200
    n_requests = 0
    for who, token in callers.items():
        for template in sorted(api_gets | pages):
            walked.add(template)
            for url in _variants(api, w, template):
                r = api.client.get(url, headers=auth(token), follow_redirects=False)
                n_requests += 1
                check_no_ground_truth(w, who, url, r)
                # a redirect to another page of the site answers too (that page is walked)
                local_redirect = r.is_redirect and r.headers["location"].startswith("/")
                if r.status_code == 200 or local_redirect:
                    answered[who].add(template)
    assert walked == api_gets | pages  # no route escapes the walk
    assert n_requests > 800, n_requests
    # the checks saw real content: a team gets every route but the organizers' ones
    for who in ("team-A", "team-B"):
        assert answered[who] == {t for t in walked if not t.startswith("/api/v1/admin")}, who


def test_own_rows_are_the_allowed_fields_and_other_teams_none(world: dict[str, Any]) -> None:
    w = world
    api: Api = w["api"]
    a, b = w["tokens"]["A"], w["tokens"]["B"]
    for task in (1, 2, 3):
        sid = w["scored"]["open", "A", task]
        doc = api.status(a, sid)
        assert doc["case_rows"] == "scores"
        cases = doc["result"]["cases"]
        assert len(cases) == 6
        assert set().union(*cases) <= set(TEAM_CASE_FIELDS[task])
        full = {c["patient_id"]: c for c in w["full"][sid]}
        for c in cases:
            assert c["center"] == full[c["patient_id"]]["center"]
            if task == 1:
                for k in ("gtvp_dsc", "gtvp_pred_voxels", "gtvn_pred_voxels", "gtvn_pred_lesions"):
                    assert c[k] == full[c["patient_id"]][k]
                f = full[c["patient_id"]]
                den = f["gtvn_pred_voxels"] + f["gtvn_gt_voxels"]
                want = None if den == 0 else 2 * f["gtvn_intersection"] / den
                assert c["gtvn_dsc"] == want
            else:
                assert c["prediction"] == full[c["patient_id"]]["prediction"]
        text = api.client.get(f"/api/v1/submissions/{sid}/cases.csv", headers=auth(a)).text
        header = text.splitlines()[0].split(",")
        assert set(header) <= set(TEAM_CASE_FIELDS[task]) and "patient_id" in header
        # another team's submission: not found, whatever the route
        for url in (
            f"/api/v1/submissions/{sid}",
            f"/api/v1/submissions/{sid}/cases.csv",
            f"/api/v1/submissions/{sid}/centers",
        ):
            assert api.client.get(url, headers=auth(b)).status_code == 404


def test_aggregate_only_phase_shows_no_case_rows(world: dict[str, Any]) -> None:
    w = world
    api: Api = w["api"]
    a = w["tokens"]["A"]
    for task in (1, 2, 3):
        sid = w["scored"]["aggregate", "A", task]
        doc = api.status(a, sid)
        assert doc["case_rows"] == "none" and "cases" not in doc["result"]
        assert doc["result"]["metrics"]
        r = api.client.get(f"/api/v1/submissions/{sid}/cases.csv", headers=auth(a))
        assert r.status_code == 403 and "aggregate scores only" in r.json()["detail"]
        page = api.client.get(f"/submissions/{sid}", headers=auth(a)).text
        assert 'id="cases"' not in page and "aggregate scores only" in page
        r = api.client.get(f"/submissions/{sid}/cases.csv", headers=auth(a))
        assert r.status_code == 403
        # every centre has fewer than 5 cases: all withheld, and said so
        c = api.client.get(f"/api/v1/submissions/{sid}/centers", headers=auth(a)).json()
        assert c["centers"] == [] and c["withheld_centers"] == 5
        assert "5 centre(s) with fewer than 5 cases withheld" in c["note"]
        assert "5 centre(s)" in page and 'id="centers"' not in page
    for token in (a, None):
        an = api.client.get("/api/v1/leaderboards/aggregate/1/analysis", headers=auth(token))
        body = an.json()
        assert an.status_code == 200 and body["per_case"] == {}
        assert not body["per_case_values"] and body["withheld_centers"] == 5
        page = api.client.get("/leaderboards/aggregate/1", headers=auth(token)).text
        assert 'id="plot-per-case"' not in page and 'id="plot-centres-1"' not in page
        assert 'id="centres-withheld"' in page


def test_centres_small_withheld_and_reasons_generic(world: dict[str, Any]) -> None:
    w = world
    api: Api = w["api"]
    a = w["tokens"]["A"]
    # open: min_center_cases 2, so MDA (2 cases) only; its C-index is undefined
    for token in (a, None):
        doc = api.client.get("/api/v1/leaderboards/open/2/centers", headers=auth(token)).json()
        assert [c["center"] for c in doc["centers"]] == ["MDA"] and doc["withheld_centers"] == 4
        mda = doc["rows"][0]["centers"]["MDA"]
        assert mda["metrics"]["c_index"] is None
        assert mda["undefined"] == {"c_index": GENERIC_UNDEFINED}
        r = api.client.get(
            "/api/v1/leaderboards/open/2/centers", params={"format": "csv"}, headers=auth(token)
        )
        assert r.headers["x-withheld-centers"] == "4"
        assert {row["center"] for row in csv.DictReader(io.StringIO(r.text))} == {"MDA"}
    sid = w["scored"]["open", "A", 2]
    own = api.client.get(f"/api/v1/submissions/{sid}/centers", headers=auth(a)).json()
    assert [c["center"] for c in own["centers"]] == ["MDA"] and own["withheld_centers"] == 4
    # frozen: every centre shown (min_center_cases 1), generic reasons, no TP/FP/FN
    for task, metric in ((2, "c_index"), (3, "auc")):
        doc = api.client.get(f"/api/v1/leaderboards/frozen/{task}/analysis").json()
        assert doc["frozen"] is True and doc["withheld_centers"] == 0
        chub = doc["per_center"]["team-A"]["CHUB"]
        assert chub["undefined"][metric] == GENERIC_UNDEFINED
    t1 = api.client.get("/api/v1/leaderboards/frozen/1/centers", headers=auth(a)).json()
    assert all(not COUNTS & set(c["metrics"]) for r in t1["rows"] for c in r["centers"].values())
    # organizers: every centre, the detailed reasons and the counts
    org = api.client.get("/api/v1/leaderboards/open/2/centers", headers=auth(ORG)).json()
    assert len(org["centers"]) == 5 and org["withheld_centers"] == 0
    assert "event(s)" in org["rows"][0]["centers"]["MDA"]["undefined"]["c_index"]
    org3 = api.client.get("/api/v1/leaderboards/frozen/3/analysis", headers=auth(ORG)).json()
    assert "HPV" in org3["per_center"]["team-A"]["CHUB"]["undefined"]["auc"]
    org1 = api.client.get("/api/v1/leaderboards/open/1/centers", headers=auth(ORG)).json()
    assert set(org1["rows"][0]["centers"]["MDA"]["metrics"]) >= COUNTS


def test_analysis_shows_no_other_team_by_patient(world: dict[str, Any]) -> None:
    w = world
    api: Api = w["api"]
    for phase in ("open", "frozen"):
        for who, token in (("team-A", w["tokens"]["A"]), ("anonymous", None)):
            doc = api.client.get(
                f"/api/v1/leaderboards/{phase}/1/analysis", headers=auth(token)
            ).json()
            assert set(doc["per_case"]) == ({who} if token else set()), (phase, who)
            # everyone: each board team's per-case DSC, in the order of their values
            values = doc["per_case_values"]
            assert set(values) == {"team-A", "team-B"}
            for team, vs in values.items():
                shown = [v for v in vs if v is not None]
                assert shown == sorted(shown), team
            page = api.client.get(f"/leaderboards/{phase}/1", headers=auth(token)).text
            assert 'id="plot-per-case"' in page and "shows no patient" in page
        org = api.client.get(f"/api/v1/leaderboards/{phase}/1/analysis", headers=auth(ORG)).json()
        assert set(org["per_case"]) == {"team-A", "team-B"}
        assert {len(v) for v in org["per_case"].values()} == {6}


def test_hidden_phase_shows_teams_no_scores(world: dict[str, Any]) -> None:
    w = world
    api: Api = w["api"]
    a = w["tokens"]["A"]
    sid = w["scored"]["hidden", "A", 3]
    doc = api.status(a, sid)
    assert doc["scores_hidden"] is True and doc["result"] is None
    for url in (f"/api/v1/submissions/{sid}/cases.csv", f"/api/v1/submissions/{sid}/centers"):
        assert api.client.get(url, headers=auth(a)).status_code == 403
    for token in (a, None):
        for suffix in ("", "/analysis", "/centers"):
            r = api.client.get(f"/api/v1/leaderboards/hidden/3{suffix}", headers=auth(token))
            assert r.status_code in (401, 403)


def test_organizers_read_the_full_records(world: dict[str, Any]) -> None:
    w = world
    api: Api = w["api"]
    for task, keys in (
        (1, {"gtvp_gt_voxels", "gtvn_tp", "gtvn_fn"}),
        (2, {"time", "event"}),
        (3, {"label"}),
    ):
        for phase in PHASES:
            sid = w["scored"][phase, "A", task]
            doc = api.status(ORG, sid)
            assert doc["case_rows"] == "all"
            assert keys <= set(doc["result"]["cases"][0]), (phase, task)
            text = api.client.get(f"/api/v1/submissions/{sid}/cases.csv", headers=auth(ORG)).text
            assert keys <= set(text.splitlines()[0].split(","))
    sid = w["scored"]["open", "A", 2]
    page = api.client.get(f"/submissions/{sid}", headers=auth(ORG)).text
    assert 'title="time">Time</th>' in page and "1234.5678" in page
    full = json.dumps(w["full"])
    assert "1234.5678" in full
