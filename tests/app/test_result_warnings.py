"""Warnings of the result document through HTTP: a Task 2 submission of negated risks
(a C-index far below 0.5) is scored as the rules say and its status and page carry the
warning with the fix; a right one has none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.app.conftest import InlineDispatcher, auth


def _task2_phase(root: Path) -> tuple[Path, Path, Path]:
    """A Task 2 ground truth of 40 patients, every one with the event at 5..44 months;
    the risks of a right submission (-time) and of an inverted one (the times)."""
    ids = [f"CHUM-{i:03d}" for i in range(1, 41)]
    folder = root / "gt" / "Task 2"
    folder.mkdir(parents=True)
    (folder / "HECKTOR_2025_Task_2.csv").write_text(
        "PatientID,RFS,Relapse\n" + "".join(f"{p},{i + 5},1\n" for i, p in enumerate(ids)),
        encoding="utf-8",
    )
    right, inverted = root / "right.csv", root / "my-risks.csv"
    right.write_text(
        "PatientID,Prediction\n" + "".join(f"{p},{-(i + 5)}\n" for i, p in enumerate(ids)),
        encoding="utf-8",
    )
    inverted.write_text(
        "PatientID,Prediction\n" + "".join(f"{p},{i + 5}\n" for i, p in enumerate(ids)),
        encoding="utf-8",
    )
    return root / "gt", right, inverted


def test_inverted_risks_warned_in_status_and_page(
    sqlite_url: str, app_factory: Any, challenge: Any, tmp_path: Path
) -> None:
    api = app_factory(sqlite_url, dispatcher=InlineDispatcher)
    gt, right_csv, inverted = _task2_phase(tmp_path)
    api.create_phase("p", ground_truth=str(gt), tasks=[2])
    tok = api.create_team("t")
    right = api.status(tok, api.submit_ok(tok, "p", 2, right_csv))
    assert right["status"] == "scored" and right["warnings"] == []
    assert right["result"]["metrics"]["c_index"] == 1.0
    assert "warnings" not in right["result"]

    doc = api.status(tok, api.submit_ok(tok, "p", 2, inverted))
    assert doc["status"] == "scored"
    assert doc["result"]["metrics"]["c_index"] == 0.0  # the score stays what the rules say
    assert doc["warnings"] == doc["result"]["warnings"]
    assert doc["warnings"] == [
        {
            "kind": "inverted_predictions",
            "metric": "c_index",
            "message": "the C-index is 0.000 (upper bound of its 95% bootstrap interval "
            "0.000, below 0.5): the predictions order the patients mostly opposite to "
            "their observed recurrence, worse than random predictions (0.5). A prediction "
            "is a risk score (higher = earlier recurrence); the predictions look like RFS "
            "times, not risks: negate them (Prediction = -time) and submit again. The "
            "score stands as computed.",
        }
    ]
    message = doc["warnings"][0]["message"]

    page = api.client.get(f"/submissions/{doc['id']}", headers=auth(tok))
    assert page.status_code == 200
    assert '<ul class="errors" id="warnings">' in page.text
    assert "the predictions look like RFS times, not risks: negate them" in page.text

    dry = api.upload(tok, "p", 2, inverted, dry_run=True)
    dry_doc = api.status(tok, dry.json()["id"])
    assert dry_doc["status"] == "valid"
    assert dry_doc["warnings"][0]["message"] == message


def test_submit_prints_the_warning(tmp_path: Path, capsys: Any) -> None:
    import httpx

    from app.main import create_app
    from evaluator.cli import main
    from tests.app.conftest import ORG, make_settings, served

    gt, right_csv, inverted = _task2_phase(tmp_path)
    settings = make_settings(tmp_path / "data", f"sqlite:///{tmp_path / 'h.db'}")
    with served(create_app(settings, dispatcher=InlineDispatcher(settings))) as base:
        r = httpx.post(
            f"{base}/api/v1/admin/phases",
            json={"name": "p", "ground_truth": str(gt), "tasks": [2]},
            headers=auth(ORG),
            timeout=120,
        )
        assert r.status_code == 201, r.text
        token = httpx.post(
            f"{base}/api/v1/admin/teams", json={"name": "t"}, headers=auth(ORG)
        ).json()["token"]
        args = ["submit", "--server", base, "--token", token, "--phase", "p", "--task", "2"]
        assert main([*args, str(right_csv)]) == 0
        assert "warning:" not in capsys.readouterr().err
        assert main([*args, str(inverted)]) == 0
        err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(lines) == 1
    assert "the predictions look like RFS times, not risks: negate them" in lines[0]
