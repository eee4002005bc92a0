"""A HECKTOR 2026 phase through HTTP with the real local dispatcher: the phase created
with the built-in protocol hecktor2026 from the synthetic 2026 challenge, every team's
three submissions judged, the boards in the teams' quality order on the 2026 ranked
metrics, and the exports, analysis, report, pages and console showing the 2026
metrics."""

from __future__ import annotations

import csv
import io
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from app.cli.console import leaderboard_table
from tests.app.conftest import ORG, auth, local_on

TEAMS = ("perfect", "good", "mediocre", "poor")
N_CASES_2026 = 10
RANKED = {1: "seg_dsc", 2: "rfs_cindex", 3: "staging_bacc"}


@pytest.fixture(scope="module")
def challenge2026(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from evaluator.synth import generate_challenge

    root = tmp_path_factory.mktemp("challenge2026") / "c"
    generate_challenge(root, seed=0, small=True, n_cases=N_CASES_2026, edition=2026)
    return root


def _submission(root: Path, team: str, task: int) -> Path:
    names = {1: ("task1.zip",), 2: ("task2.zip",), 3: ("task3.zip", "task3.csv")}[task]
    return next(p for n in names if (p := root / "submissions" / team / n).exists())


def test_a_2026_phase_end_to_end(
    sqlite_url: str, app_factory: Any, pool: ProcessPoolExecutor, challenge2026: Path
) -> None:
    api = app_factory(sqlite_url, dispatcher=local_on(pool))
    phase = api.create_phase(
        "v26", ground_truth=str(challenge2026 / "ground_truth"), protocol="hecktor2026"
    )
    details = {t["task"]: t for t in phase["task_details"]}
    assert {t["protocol"]["name"] for t in details.values()} == {"hecktor2026"}
    assert details[3]["n_cases"] == N_CASES_2026 - 1  # one patient's T stage is unknown
    assert "hpv_threshold" not in details[1]["protocol"]
    tokens = {team: api.create_team(team) for team in TEAMS}
    ids = {
        (team, task): api.submit_ok(
            tokens[team], "v26", task, _submission(challenge2026, team, task)
        )
        for team in TEAMS
        for task in (1, 2, 3)
    }
    docs = {k: api.wait(tokens[k[0]], sid) for k, sid in ids.items()}
    for (team, task), doc in docs.items():
        assert doc["status"] == "scored", (team, task, doc["errors"])
        res = doc["result"]
        assert res["protocol"]["name"] == "hecktor2026"
        assert RANKED[task] in res["metrics"]
    assert docs["perfect", 1]["result"]["metrics"]["seg_dsc"] == 1.0
    assert docs["perfect", 2]["result"]["metrics"]["rfs_cindex"] == 1.0
    assert docs["perfect", 3]["result"]["metrics"]["staging_bacc"] == 1.0
    assert docs["good", 2]["result"]["notes"]["rfs_meaning"] == "risk"
    # a team sees its predicted stages per case, never the true ones
    staged = docs["good", 3]["result"]["cases"][0]
    assert set(staged) == {"patient_id", "center", "t_prediction", "n_prediction"}
    r = api.client.get(f"/api/v1/submissions/{ids['good', 3]}", headers=auth(ORG))
    assert {"t_stage", "n_stage"} <= set(r.json()["result"]["cases"][0])

    for task in (1, 2, 3):
        board = api.leaderboard("v26", task)
        assert board["protocol"] == "hecktor2026"
        rows = board["rows"]
        assert [r["team"] for r in rows] == list(TEAMS), (task, rows)
        assert [r["rank"] for r in rows] == [1.0, 2.0, 3.0, 4.0]
        assert set(rows[0]["ranks"]) == {RANKED[task], "final"}
        assert not {"gtvp_dsc_mean", "c_index", "auc"} & set(rows[0]["metrics"])

    # the overall rank across the three tasks (equal weights by default)
    r = api.client.get("/api/v1/leaderboards/v26/overall")
    assert r.status_code == 200, r.text
    overall = r.json()
    assert overall["weights"] == {"1": 1.0, "2": 1.0, "3": 1.0}
    assert overall["protocols"] == ["hecktor2026"]
    assert [(row["team"], row["rank"], row["combined"]) for row in overall["rows"]] == [
        (team, float(i), float(i)) for i, team in enumerate(TEAMS, start=1)
    ]

    # the board's CSV carries the 2026 metric columns
    r = api.client.get("/api/v1/leaderboards/v26/3", params={"format": "csv"})
    assert r.status_code == 200
    header = next(csv.reader(io.StringIO(r.text)))
    assert header[:6] == ["rank", "team", "submission_id", "staging_bacc", "t_bacc", "n_bacc"]
    assert "t_recall_t1" in header and "rank_staging_bacc" in header and "auc" not in header

    # analysis (bootstrap, rank stability, per centre) of the 2026 metrics
    r = api.client.get(
        "/api/v1/leaderboards/v26/1/analysis", params={"n_resamples": 50}, headers=auth(ORG)
    )
    assert r.status_code == 200, r.text
    analysis = r.json()
    assert "seg_dsc" in analysis["bootstrap"]["metric_names"]
    r = api.client.get(
        "/api/v1/leaderboards/v26/3/centers", params={"format": "csv"}, headers=auth(ORG)
    )
    assert r.status_code == 200, r.text
    assert "staging_bacc" in r.text.splitlines()[0]
    r = api.client.get(
        f"/api/v1/submissions/{ids['good', 2]}/centers",
        params={"format": "csv"},
        headers=auth(tokens["good"]),
    )
    assert r.status_code == 200 and "rfs_cindex" in r.text.splitlines()[0]

    # pages and the report
    page = api.client.get("/leaderboards/v26/3")
    assert page.status_code == 200
    assert "Task 3 · T and N staging" in page.text and "Staging balanced accuracy" in page.text
    assert "HPV" not in page.text
    index = api.client.get("/")
    assert "Task 3 · T and N staging" in index.text
    r = api.client.get(
        "/api/v1/admin/phases/v26/report", params={"n_resamples": 20}, headers=auth(ORG)
    )
    assert r.status_code == 200, r.text
    assert "Task 3 — Diagnosis of the T and N stages" in r.text and "RFS C-index" in r.text

    # the console's table
    from rich.console import Console

    out = Console(width=200, record=True)
    out.print(leaderboard_table(api.leaderboard("v26", 1)))
    text = out.export_text()
    assert "Task 1 · GTVp and GTVn segmentation" in text and "r GTVp" not in text


def test_admin_cli_and_api_take_the_builtin_protocol_names(
    tmp_path: Path, sqlite_url: str, app_factory: Any, challenge2026: Path, capsys: Any
) -> None:
    from app.cli import main

    data = tmp_path / "cli-data"
    assert main(["admin", "--data-dir", str(data), "init"]) == 0
    base = ["admin", "--data-dir", str(data), "phase", "create", "--tasks", "2,3"]
    gt = ["--ground-truth", str(challenge2026 / "ground_truth")]
    assert main([*base, "--name", "p26", *gt, "--protocol", "hecktor2026"]) == 0
    out = capsys.readouterr().out
    assert "protocol hecktor2026" in out
    assert main([*base, "--name", "p27", *gt, "--protocol", "hecktor2027"]) == 1
    assert "hecktor2027: neither a built-in protocol" in capsys.readouterr().err

    api = app_factory(sqlite_url)
    r = api.client.post(
        "/api/v1/admin/phases",
        json={"name": "x", "ground_truth": str(challenge2026 / "ground_truth"), "protocol": "nope"},
        headers=auth(ORG),
    )
    assert r.status_code == 400 and "unknown protocol 'nope'" in r.text
    # a 2026 field under the 2025 rules is refused by name
    r = api.client.post(
        "/api/v1/admin/phases",
        json={
            "name": "y",
            "ground_truth": str(challenge2026 / "ground_truth"),
            "tasks": [2],
            "protocol": {"name": "hecktor2025", "rfs_meaning": "time"},
        },
        headers=auth(ORG),
    )
    assert r.status_code == 400 and "rfs_meaning" in r.text
    # the protocol object form picks the edition by its name and keeps its switches
    phase = api.create_phase(
        "z",
        ground_truth=str(challenge2026 / "ground_truth"),
        tasks=[2],
        protocol={"name": "hecktor2026", "rfs_meaning": "time"},
    )
    assert phase["task_details"][0]["protocol"]["rfs_meaning"] == "time"
    assert api.client.get("/api/v1/leaderboards/z/2").json()["protocol"] == "hecktor2026"


def test_boards_stored_without_a_protocol_name_read_as_2025() -> None:
    from app.services.exports import leaderboard_csv

    rows = [
        {
            "rank": 1.0,
            "team": "a",
            "submission_id": 1,
            "metrics": {"c_index": 0.7},
            "ranks": {"c_index": 1.0, "final": 1.0},
            "submitted_at": None,
            "scored_at": None,
        }
    ]
    header = leaderboard_csv(2, rows, None).splitlines()[0]
    assert (
        header == "rank,team,submission_id,c_index,rank_c_index,rank_final,submitted_at,scored_at"
    )
