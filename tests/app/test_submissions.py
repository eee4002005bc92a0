"""Upload rules through HTTP: quota, dry run, size cap, type check, closed phases,
malformed forms, and rejected submissions with their error lists (SQLite)."""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.db.models import utcnow
from tests.app.conftest import ORG, InlineDispatcher, RecordingDispatcher, auth, set_submission


def _incoming_empty(api: Any) -> bool:
    return not any(api.settings.incoming_dir.iterdir())


def test_quota_per_team_phase_task_and_day(db_url: str, app_factory: Any, challenge: Any) -> None:
    api = app_factory(db_url, dispatcher=RecordingDispatcher())
    api.create_phase("p", daily_limit=2)
    tok = api.create_team("t")
    csv2 = challenge.archive("good", 2)
    first = api.submit_ok(tok, "p", 2, csv2)
    second = api.submit_ok(tok, "p", 2, csv2)
    r = api.upload(tok, "p", 2, csv2)
    assert r.status_code == 429
    body = r.json()
    assert (
        "daily limit reached: 2 of 2" in body["detail"] and "next slot opens at" in body["detail"]
    )
    assert body["errors"][0]["kind"] == "quota"
    assert 0 < int(r.headers["retry-after"]) <= 24 * 3600 + 1
    assert _incoming_empty(api)
    # dry runs use no quota, other tasks have their own
    assert api.upload(tok, "p", 2, csv2, dry_run=True).status_code == 202
    assert api.upload(tok, "p", 3, challenge.archive("good", 3)).status_code == 202
    # another team is not affected
    assert api.upload(api.create_team("u"), "p", 2, csv2).status_code == 202
    # a failed submission does not count
    set_submission(db_url, first, status="failed")
    third = api.submit_ok(tok, "p", 2, csv2)
    assert api.upload(tok, "p", 2, csv2).status_code == 429
    # the window is 24 hours: an old submission frees its slot
    set_submission(db_url, second, submitted_at=utcnow() - timedelta(hours=25))
    assert api.upload(tok, "p", 2, csv2).status_code == 202
    assert third > second


def test_dry_run_validates_without_scoring(db_url: str, app_factory: Any, challenge: Any) -> None:
    api = app_factory(db_url, dispatcher=InlineDispatcher)
    api.create_phase("p", daily_limit=1)
    tok = api.create_team("t")
    r = api.upload(tok, "p", 1, challenge.archive("good", 1), dry_run=True)
    assert r.status_code == 202 and r.json()["dry_run"] is True
    doc = api.status(tok, r.json()["id"])
    assert doc["status"] == "valid" and doc["dry_run"] is True
    assert "metrics" not in (doc["result"] or {}) or not doc["result"]["metrics"]
    # invalid: every problem listed, nothing scored, still no quota used
    bad = b"PatientID,Prediction\n" + b"".join(f"X-{i},0.5\n".encode() for i in range(3))
    r = api.upload(tok, "p", 3, content=bad, filename="bad.csv", dry_run=True)
    doc = api.status(tok, r.json()["id"])
    assert doc["status"] == "failed" and len(doc["errors"]) >= 3
    # dry runs never reach the leaderboard, and the real quota is untouched
    assert api.leaderboard("p", 1)["rows"] == []
    assert api.upload(tok, "p", 1, challenge.archive("good", 1)).status_code == 202


def test_size_cap_while_streaming_and_declared(
    sqlite_url: str, app_factory: Any, challenge: Any
) -> None:
    api = app_factory(sqlite_url, dispatcher=RecordingDispatcher(), max_upload_bytes=1000)
    api.create_phase("p")
    tok = api.create_team("t")
    r = api.upload(
        tok, "p", 2, content=b"PatientID,Prediction\n" + b"A-1,0.5\n" * 1000, filename="big.csv"
    )
    assert r.status_code == 413
    assert "larger than the limit of 1000 bytes" in r.json()["detail"]
    assert _incoming_empty(api)
    r = api.upload(tok, "p", 2, content=b"x" * (3 << 20), filename="huge.csv")
    assert r.status_code == 413 and "larger than the limit" in r.json()["detail"]
    assert _incoming_empty(api)
    # the service still answers, and a small upload goes through
    assert api.client.get("/healthz").status_code == 200
    assert (
        api.upload(
            tok, "p", 2, content=b"PatientID,Prediction\nA-1,1\n", filename="s.csv"
        ).status_code
        == 202
    )


@pytest.mark.parametrize(
    ("task", "content", "status", "message"),
    [
        (1, b"PatientID,Prediction\nA,1\n", 415, "the upload is a text file"),
        (1, b"\x89PNG\r\n\x1a\n" + b"\0" * 100, 415, "a PNG image"),
        (1, b"7z\xbc\xaf\x27\x1c" + b"\0" * 100, 415, "a 7-Zip archive"),
        (2, b"\x89PNG\r\n\x1a\n" + b"\0" * 100, 415, "Task 2 expects a .csv or .json table"),
        (3, b"", 415, "an empty file"),
    ],
)
def test_archive_type_is_checked_by_magic_bytes(
    sqlite_url: str, app_factory: Any, task: int, content: bytes, status: int, message: str
) -> None:
    api = app_factory(sqlite_url, dispatcher=RecordingDispatcher())
    api.create_phase("p")
    tok = api.create_team("t")
    r = api.upload(tok, "p", task, content=content, filename="predictions.zip")
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert r.json()["errors"][0]["kind"] == "archive"
    assert _incoming_empty(api) and not any(api.settings.submissions_dir.iterdir())


def test_table_in_an_archive_and_json_tables_are_accepted(
    sqlite_url: str, app_factory: Any, challenge: Any
) -> None:
    api = app_factory(sqlite_url, dispatcher=InlineDispatcher)
    api.create_phase("p")
    tok = api.create_team("t")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("task2.csv", challenge.archive("good", 2).read_bytes())
    sid = api.submit_ok(tok, "p", 2, None, content=buf.getvalue(), filename="t2.zip")
    assert api.status(tok, sid)["status"] == "scored"
    lines = challenge.archive("good", 3).read_text().strip().splitlines()[1:]
    as_json = "{" + ",".join(f'"{ln.split(",")[0]}": {ln.split(",")[1]}' for ln in lines) + "}"
    sid = api.submit_ok(tok, "p", 3, None, content=as_json.encode(), filename="t3.json")
    doc = api.status(tok, sid)
    assert doc["status"] == "scored", doc["errors"]


def test_rejected_submission_lists_every_problem(
    db_url: str, app_factory: Any, challenge: Any
) -> None:
    api = app_factory(db_url, dispatcher=InlineDispatcher)
    api.create_phase("p")
    tok = api.create_team("t")
    # Task 1: drop two cases from the perfect archive
    src = zipfile.ZipFile(challenge.archive("perfect", 1))
    names = [n for n in src.namelist() if n.endswith((".nii.gz", ".nii"))]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n in names[2:]:
            zf.writestr(n, src.read(n))
    sid = api.submit_ok(tok, "p", 1, None, content=buf.getvalue(), filename="partial.zip")
    doc = api.status(tok, sid)
    assert doc["status"] == "failed" and doc["result"] is None
    missing = [e for e in doc["errors"] if e["kind"] == "missing_case"]
    assert len(missing) == 2
    assert all(e["message"] and e["case"] for e in missing)
    r = api.client.get(f"/api/v1/submissions/{sid}/cases.csv", headers=auth(tok))
    assert r.status_code == 409
    # failed submissions never reach the leaderboard and do not use quota
    assert api.leaderboard("p", 1)["rows"] == []
    page = api.client.get(f"/submissions/{sid}", headers=auth(tok)).text
    assert "Problems found" in page


@pytest.mark.parametrize(
    ("data", "files", "status", "message"),
    [
        ({"phase": "p"}, {"file": ("a.csv", b"x")}, 400, "'task' (1, 2 or 3) is required"),
        ({"phase": "p", "task": "7"}, {"file": ("a.csv", b"x")}, 400, "'task' must be 1, 2 or 3"),
        ({"task": "2"}, {"file": ("a.csv", b"x")}, 400, "'phase'"),
        ({"phase": "p", "task": "2"}, None, 400, "no complete 'file' part"),
        ({"phase": "nope", "task": "2"}, {"file": ("a.csv", b"x")}, 404, "no phase named 'nope'"),
        ({"phase": "p", "task": "2"}, {"other": ("a.csv", b"x")}, 400, "unexpected file field"),
    ],
)
def test_malformed_forms(
    sqlite_url: str, app_factory: Any, data: dict[str, str], files: Any, status: int, message: str
) -> None:
    api = app_factory(sqlite_url, dispatcher=RecordingDispatcher())
    api.create_phase("p", tasks=[2])
    tok = api.create_team("t")
    if files is None:  # a multipart body without a file part
        files = {"dummy": (None, "x")}
    r = api.client.post("/api/v1/submissions", data=data, files=files, headers=auth(tok))
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert _incoming_empty(api)


def test_not_multipart_and_closed_phase_and_missing_task(
    sqlite_url: str, app_factory: Any, challenge: Any
) -> None:
    api = app_factory(sqlite_url, dispatcher=RecordingDispatcher())
    api.create_phase("p", tasks=[2])
    tok = api.create_team("t")
    r = api.client.post("/api/v1/submissions", json={"phase": "p"}, headers=auth(tok))
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    r = api.upload(tok, "p", 3, challenge.archive("good", 3))
    assert r.status_code == 404 and "has no task 3" in r.json()["detail"]
    api.client.post("/api/v1/admin/phases/p/close", headers=auth(ORG))
    r = api.upload(tok, "p", 2, challenge.archive("good", 2))
    assert r.status_code == 403 and "closed" in r.json()["detail"]
    assert _incoming_empty(api)
    api.client.post("/api/v1/admin/phases/p/open", headers=auth(ORG))
    assert api.upload(tok, "p", 2, challenge.archive("good", 2)).status_code == 202


def test_upload_is_stored_atomically_under_its_id(
    sqlite_url: str, app_factory: Any, challenge: Any
) -> None:
    api = app_factory(sqlite_url, dispatcher=RecordingDispatcher())
    api.create_phase("p")
    tok = api.create_team("t")
    path: Path = challenge.archive("good", 1)
    r = api.upload(tok, "p", 1, path, filename="../../evil name.zip")
    assert r.status_code == 202
    sid = r.json()["id"]
    stored = api.settings.submissions_dir / str(sid) / "submission.zip"
    assert stored.read_bytes() == path.read_bytes()
    assert sorted(p.name for p in stored.parent.iterdir()) == ["submission.zip"]
    doc = api.status(tok, sid)
    assert doc["filename"] == "evil name.zip" and doc["status"] == "queued"
    import hashlib

    assert doc["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert api.dispatcher.submitted == [sid]


def test_leaderboard_best_and_latest(db_url: str, app_factory: Any, challenge: Any) -> None:
    api = app_factory(db_url, dispatcher=InlineDispatcher)
    api.create_phase("p")
    tok = api.create_team("t")
    other = api.create_team("o")
    good = api.submit_ok(tok, "p", 2, challenge.archive("good", 2))
    poor = api.submit_ok(tok, "p", 2, challenge.archive("poor", 2))
    mid = api.submit_ok(other, "p", 2, challenge.archive("mediocre", 2))
    best = api.leaderboard("p", 2)
    assert [(r["team"], r["submission_id"]) for r in best["rows"]] == [("t", good), ("o", mid)]
    r = api.client.get("/api/v1/leaderboards/p/2", params={"selection": "latest"})
    rows = r.json()["rows"]
    assert {(x["team"], x["submission_id"]) for x in rows} == {("t", poor), ("o", mid)}
    # a phase configured for "latest"
    api.client.patch("/api/v1/admin/phases/p", json={"selection": "latest"}, headers=auth(ORG))
    assert api.leaderboard("p", 2)["selection"] == "latest"
    csv = api.client.get("/api/v1/leaderboards/p/2", params={"format": "csv"}).text
    assert csv.splitlines()[0].startswith("rank,team,submission_id,c_index")
