"""The visibility, allowance and retention settings of a phase: set at creation and
changed later through the admin API and the command line, validated with messages that
say what is accepted; organizers see them all, the public phase view the visibility
ones only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from tests.app.conftest import ORG, auth

ALLOWANCES = ("dry_run_limit", "dry_run_bytes", "failed_limit", "failed_bytes", "retention_days")
DEFAULTS = {
    "case_rows": "scores",
    "min_center_cases": 5,
    "dry_run_limit": 20,
    "dry_run_bytes": 8 << 30,
    "failed_limit": 10,
    "failed_bytes": 8 << 30,
    "retention_days": 7,
}


def test_phase_settings_through_the_api(sqlite_url: str, app_factory: Any) -> None:
    api = app_factory(sqlite_url)
    plain = api.create_phase("plain", tasks=[3])
    assert {k: plain[k] for k in DEFAULTS} == DEFAULTS
    chosen = {
        "case_rows": "none",
        "min_center_cases": 3,
        "dry_run_limit": 4,
        "dry_run_bytes": 5 << 20,
        "failed_limit": 6,
        "failed_bytes": 7 << 20,
        "retention_days": 2,
    }
    test = api.create_phase("test", tasks=[3], **chosen)
    assert {k: test[k] for k in chosen} == chosen
    # organizers: everything; the public view: what a team needs to read its results
    org = api.client.get("/api/v1/phases/test", headers=auth(ORG)).json()
    assert {k: org[k] for k in chosen} == chosen
    public = api.client.get("/api/v1/phases/test").json()
    assert public["case_rows"] == "none" and public["min_center_cases"] == 3
    assert not set(ALLOWANCES) & set(public)
    listed = {p["name"]: p for p in api.client.get("/api/v1/phases").json()}
    assert listed["test"]["case_rows"] == "none"

    r = api.client.patch(
        "/api/v1/admin/phases/test",
        json={"case_rows": "scores", "min_center_cases": 0, "retention_days": 30},
        headers=auth(ORG),
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["case_rows"], doc["min_center_cases"], doc["retention_days"]) == ("scores", 0, 30)
    assert doc["dry_run_limit"] == 4  # unchanged

    bad: list[tuple[dict[str, Any], str]] = [
        ({"case_rows": "all"}, "case_rows"),
        ({"min_center_cases": -1}, "min_center_cases"),
        ({"dry_run_limit": True}, "dry_run_limit"),  # a boolean is not a count
        ({"failed_bytes": "8G"}, "failed_bytes"),
        ({"retention_days": 10**6}, "retention_days"),
    ]
    for body, field in bad:
        for method, url in (
            ("PATCH", "/api/v1/admin/phases/test"),
            ("POST", "/api/v1/admin/phases"),
        ):
            payload = body if method == "PATCH" else {"name": "x", "ground_truth": "/", **body}
            r = api.client.request(method, url, json=payload, headers=auth(ORG))
            assert r.status_code == 422, (method, body, r.text)
            assert field in r.text, (method, body, r.text)
    # nothing changed by the refused requests; teams cannot change settings
    again = api.client.get("/api/v1/phases/test", headers=auth(ORG)).json()
    assert again["min_center_cases"] == 0 and again["case_rows"] == "scores"
    team = api.create_team("t")
    r = api.client.patch(
        "/api/v1/admin/phases/test", json={"case_rows": "none"}, headers=auth(team)
    )
    assert r.status_code == 403


def admin(capsys: pytest.CaptureFixture[str], data: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["admin", "--data-dir", str(data), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_phase_settings_on_the_command_line(
    tmp_path: Path, challenge: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert admin(capsys, data, "init")[0] == 0
    code, out, err = admin(
        capsys,
        data,
        *("phase", "create", "--name", "test", "--tasks", "2"),
        *("--ground-truth", str(challenge.ground_truth)),
        *("--case-rows", "none", "--min-center-cases", "8", "--dry-run-limit", "3"),
        *("--dry-run-bytes", "1000", "--failed-limit", "2", "--failed-bytes", "2000"),
        *("--retention-days", "1"),
    )
    assert code == 0, err
    assert "per-case rows for teams: none" in out

    from app.db.models import Phase
    from app.db.session import make_engine, session_factory

    def stored() -> dict[str, Any]:
        engine = make_engine(f"sqlite:///{data / 'hecktor.db'}")
        with session_factory(engine)() as s:
            p = s.query(Phase).filter_by(name="test").one()
            values = {k: getattr(p, k) for k in DEFAULTS}
        engine.dispose()
        return values

    assert stored() == {
        "case_rows": "none",
        "min_center_cases": 8,
        "dry_run_limit": 3,
        "dry_run_bytes": 1000,
        "failed_limit": 2,
        "failed_bytes": 2000,
        "retention_days": 1,
    }
    code, out, err = admin(
        capsys, data, "phase", "update", "test", "--case-rows", "scores", "--retention-days", "14"
    )
    assert code == 0, err
    assert "case_rows = scores" in out and "retention_days = 14" in out
    assert stored()["case_rows"] == "scores" and stored()["min_center_cases"] == 8

    code, _, err = admin(capsys, data, "phase", "update", "test", "--min-center-cases", "-1")
    assert code == 1
    assert "min_center_cases" in err and "between 0 and" in err and "-1" in err
    assert "Traceback" not in err
    code, _, err = admin(capsys, data, "phase", "update", "test")
    assert code == 1 and "nothing to change" in err
    code, _, err = admin(capsys, data, "phase", "update", "nope", "--case-rows", "none")
    assert code == 1 and "no phase named 'nope'" in err
    assert stored()["min_center_cases"] == 8
