"""Server messages name the file the participant uploaded, never the stored name
(``predictions.csv``, ``submission.zip``), and name it once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.app.conftest import InlineDispatcher, auth


def _failed(api: Any, tok: str, task: int, filename: str, content: bytes) -> dict[str, Any]:
    r = api.upload(tok, "p", task, content=content, filename=filename)
    assert r.status_code == 202, r.text
    doc = api.status(tok, r.json()["id"])
    assert doc["status"] == "failed", doc
    return doc


def test_a_table_problem_names_the_uploaded_file_once(
    sqlite_url: str, app_factory: Any, challenge: Any, tmp_path: Path
) -> None:
    api = app_factory(sqlite_url, dispatcher=InlineDispatcher)
    api.create_phase("p")
    tok = api.create_team("t")
    doc = _failed(api, tok, 2, "risks_v3.csv", b"PatientID,Risk\nCHUB-003,1\n")
    assert doc["errors"] == [
        {
            "case": "risks_v3.csv",
            "kind": "table",
            "message": "missing column Prediction: found 'PatientID', 'Risk'; expected "
            "exactly the columns PatientID, Prediction",
        }
    ]
    page = api.client.get(f"/submissions/{doc['id']}", headers=auth(tok)).text
    assert page.count("risks_v3.csv") == 2  # the file row and the problem, once each
    assert "predictions.csv" not in page

    # a row problem: the file named in the message, by the uploaded name
    good = challenge.archive("good", 2).read_text().splitlines()
    bad = "\n".join([good[0], good[1].rsplit(",", 1)[0] + ",abc", *good[2:]]) + "\n"
    doc = _failed(api, tok, 2, "risks_v4.csv", bad.encode())
    pid = good[1].split(",", 1)[0]
    [err] = doc["errors"]
    assert err["case"] == pid
    assert err["message"].startswith(f"risks_v4.csv line 2 ({pid}): the value 'abc' is not")
    assert "predictions.csv" not in str(doc)


def test_an_archive_problem_names_the_uploaded_archive(
    sqlite_url: str, app_factory: Any, challenge: Any
) -> None:
    api = app_factory(sqlite_url, dispatcher=InlineDispatcher)
    api.create_phase("p")
    tok = api.create_team("t")
    data = challenge.archive("good", 1).read_bytes()
    truncated = data[: len(data) // 2]
    doc = _failed(api, tok, 1, "team-A fold0.zip", truncated)
    assert doc["errors"], doc
    text = str(doc["errors"])
    assert "submission.zip" not in text
    assert "team-A fold0.zip" in text
