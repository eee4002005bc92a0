"""Phases that judge algorithms: created through the admin API and the command line with
their cases' inputs (the synthetic challenge's ``inputs/``), settings checked with
messages that say what is accepted, every ground-truth case required to have inputs,
organizers shown the limits and the inputs' count and hash, participants the limits an
algorithm must meet, and nothing of the inputs in what a team can read."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.cli import main
from app.db.models import Phase
from app.db.session import make_engine, session_factory
from evaluator.gc.inputs import read_input_index
from tests.app.conftest import N_CASES, ORG, Api, auth

LIMITS = {
    "case_seconds": 120,
    "case_memory_mb": 2048,
    "case_cpus": 1.5,
    "case_pids": 64,
    "case_gpu": False,
    "case_tmp_mb": 256,
    "case_output_mb": 100,
    "image_max_bytes": 2 << 30,
    "parallel_cases": 3,
    "fail_fast": False,
}
PARTICIPANT = ("case_seconds", "case_memory_mb", "case_cpus", "case_gpu", "image_max_bytes")


def inputs_of(api: Api) -> Path:
    assert api.challenge is not None
    return api.challenge.root / "inputs"


def gt_ids(api: Api) -> list[str]:
    assert api.challenge is not None
    return sorted(p.name for p in (api.challenge.ground_truth / "Task 1").iterdir())


def stored_phase(api: Api, name: str) -> Phase:
    settings = api.settings  # type: ignore[attr-defined]
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as s:
            phase = s.scalars(select(Phase).where(Phase.name == name)).one()
            s.expunge(phase)
            return phase
    finally:
        engine.dispose()


def test_create_an_algorithm_phase_with_its_inputs(sqlite_url: str, app_factory: Any) -> None:
    api = app_factory(sqlite_url)
    doc = api.create_phase("algo", kind="algorithm", inputs=str(inputs_of(api)), **LIMITS)
    assert doc["kind"] == "algorithm"
    assert {k: doc[k] for k in LIMITS} == LIMITS
    assert doc["n_inputs"] == N_CASES and re.fullmatch(r"[0-9a-f]{64}", doc["inputs_sha256"])
    assert "inputs_dir" not in doc
    # the store: under the hidden ground-truth folder, one folder per ground-truth case
    settings = api.settings  # type: ignore[attr-defined]
    phase = stored_phase(api, "algo")
    assert phase.inputs_dir is not None and not Path(phase.inputs_dir).is_absolute()
    store = settings.data_dir / phase.inputs_dir
    assert store.parent == settings.ground_truth_dir
    assert store.name.startswith(f"phase-{phase.id}-inputs-")
    assert store.name not in json.dumps(doc)  # organizers are shown no path either
    index = read_input_index(store)
    assert sorted(index) == gt_ids(api)
    assert phase.inputs_sha256 == doc["inputs_sha256"]
    # defaults, and the predictions kind needs no inputs
    plain = api.create_phase("plain", tasks=[1])
    assert plain["kind"] == "predictions" and plain["n_inputs"] == 0
    assert (plain["case_seconds"], plain["case_memory_mb"], plain["parallel_cases"]) == (
        600,
        4096,
        2,
    )
    both = api.create_phase("both", kind="both", inputs=str(inputs_of(api)), tasks=[2, 3])
    assert both["kind"] == "both" and both["n_inputs"] == N_CASES


def test_what_participants_and_organizers_see(sqlite_url: str, app_factory: Any) -> None:
    api = app_factory(sqlite_url)
    api.create_phase("algo", kind="algorithm", inputs=str(inputs_of(api)), **LIMITS)
    public = api.client.get("/api/v1/phases/algo").json()
    assert public["kind"] == "algorithm"
    assert {k: public[k] for k in PARTICIPANT} == {k: LIMITS[k] for k in PARTICIPANT}
    hidden_from_teams = {"case_pids", "parallel_cases", "fail_fast", "n_inputs", "inputs_sha256"}
    assert not hidden_from_teams & set(public)
    listed = {p["name"]: p for p in api.client.get("/api/v1/phases").json()}
    assert listed["algo"]["kind"] == "algorithm"
    org = api.client.get("/api/v1/admin/phases", headers=auth(ORG)).json()
    detail = next(p for p in org if p["name"] == "algo")
    assert detail["n_inputs"] == N_CASES and detail["parallel_cases"] == 3


def test_limits_changed_later(sqlite_url: str, app_factory: Any) -> None:
    api = app_factory(sqlite_url)
    api.create_phase("algo", kind="algorithm", inputs=str(inputs_of(api)))
    r = api.client.patch(
        "/api/v1/admin/phases/algo",
        json={"case_seconds": 30, "case_cpus": 2, "case_gpu": True, "fail_fast": False},
        headers=auth(ORG),
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["case_seconds"], doc["case_cpus"], doc["case_gpu"]) == (30, 2.0, True)
    assert doc["fail_fast"] is False and doc["case_memory_mb"] == 4096  # unchanged
    # a predictions phase becomes an algorithm phase only with inputs
    api.create_phase("plain", tasks=[1])
    r = api.client.patch(
        "/api/v1/admin/phases/plain", json={"kind": "algorithm"}, headers=auth(ORG)
    )
    assert r.status_code == 400 and "has no case inputs" in r.json()["detail"]
    r = api.client.post(
        "/api/v1/admin/phases/plain/inputs",
        json={"inputs": str(inputs_of(api))},
        headers=auth(ORG),
    )
    assert r.status_code == 200, r.text
    assert r.json()["n_inputs"] == N_CASES
    r = api.client.patch("/api/v1/admin/phases/plain", json={"kind": "both"}, headers=auth(ORG))
    assert r.status_code == 200 and r.json()["kind"] == "both"


BAD: list[tuple[dict[str, Any], str]] = [
    ({"kind": "container"}, "kind must be 'predictions'"),
    (
        {"case_seconds": 0},
        "case_seconds (wall-clock seconds an algorithm may take per case) "
        "must be between 1 and 86400, not 0",
    ),
    ({"case_seconds": 86_401}, "between 1 and 86400, not 86401"),
    ({"case_memory_mb": 63}, "case_memory_mb (memory of a case's container in MiB"),
    ({"case_cpus": 0.05}, "case_cpus (CPUs of a case's container) must be between 0.1 and 256"),
    ({"case_cpus": 300}, "between 0.1 and 256, not 300"),
    ({"case_pids": 15}, "case_pids"),
    ({"case_tmp_mb": 0}, "case_tmp_mb"),
    ({"case_output_mb": 1_048_577}, "case_output_mb"),
    (
        {"image_max_bytes": 1000},
        f"image_max_bytes (largest container image, bytes uncompressed) "
        f"must be between {1 << 20} and {100 << 30}",
    ),
    (
        {"parallel_cases": 65},
        "parallel_cases (cases of one submission run at once) must be between 1 and 64, not 65",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD)
def test_bad_settings_are_refused_with_what_is_accepted(
    sqlite_url: str, app_factory: Any, body: dict[str, Any], message: str
) -> None:
    api = app_factory(sqlite_url)
    assert api.challenge is not None
    create = {
        "name": "x",
        "ground_truth": str(api.challenge.ground_truth),
        "kind": "algorithm",
        "inputs": str(inputs_of(api)),
        **body,
    }
    r = api.client.post("/api/v1/admin/phases", json=create, headers=auth(ORG))
    assert r.status_code == 400, r.text
    assert message in r.json()["detail"], r.text
    api.create_phase("algo", kind="algorithm", inputs=str(inputs_of(api)), tasks=[3])
    r = api.client.patch("/api/v1/admin/phases/algo", json=body, headers=auth(ORG))
    assert r.status_code == 400, r.text
    assert message in r.json()["detail"]
    # nothing was created or changed; nothing was left in the data dir
    assert api.client.get("/api/v1/phases/x").status_code == 404
    assert api.client.get("/api/v1/phases/algo").json()["case_seconds"] == 600
    settings = api.settings  # type: ignore[attr-defined]
    assert len(list(settings.ground_truth_dir.iterdir())) == 2  # algo's truth and inputs


def test_wrong_types_and_missing_inputs_are_refused(sqlite_url: str, app_factory: Any) -> None:
    api = app_factory(sqlite_url)
    assert api.challenge is not None
    base = {"name": "x", "ground_truth": str(api.challenge.ground_truth)}
    r = api.client.post(
        "/api/v1/admin/phases", json={**base, "kind": "algorithm"}, headers=auth(ORG)
    )
    assert r.status_code == 400 and "give the server-side folder" in r.json()["detail"]
    for body in ({"case_gpu": 1}, {"case_seconds": "60"}, {"fail_fast": "yes"}):
        r = api.client.post(
            "/api/v1/admin/phases",
            json={**base, "kind": "algorithm", "inputs": str(inputs_of(api)), **body},
            headers=auth(ORG),
        )
        assert r.status_code == 422 and next(iter(body)) in r.text, (body, r.text)
    r = api.client.post(
        "/api/v1/admin/phases",
        json={**base, "kind": "algorithm", "inputs": "/no/such/folder"},
        headers=auth(ORG),
    )
    assert r.status_code == 400 and "does not exist on the server" in r.json()["detail"]


def test_a_case_without_inputs_is_named(sqlite_url: str, app_factory: Any, tmp_path: Path) -> None:
    api = app_factory(sqlite_url)
    assert api.challenge is not None
    src = tmp_path / "inputs"
    shutil.copytree(inputs_of(api), src)
    ids = gt_ids(api)
    shutil.rmtree(src / ids[0])
    (src / ids[1] / f"{ids[1]}__PT.nii.gz").unlink()
    (src / ids[2] / "ehr.json").write_text("[]", "utf-8")
    body = {
        "name": "algo",
        "ground_truth": str(api.challenge.ground_truth),
        "kind": "algorithm",
        "inputs": str(src),
    }
    r = api.client.post("/api/v1/admin/phases", json=body, headers=auth(ORG))
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert [e["case"] for e in errors] == ids[:3]
    assert all(e["kind"] == "inputs" for e in errors)
    assert errors[0]["message"].startswith(f"{ids[0]}: no inputs")
    assert errors[1]["message"] == f"{ids[1]}: missing {ids[1]}__PT.nii.gz"
    assert "expected an object" in errors[2]["message"]
    assert str(tmp_path) not in r.text
    # no phase, no ground-truth copy and no half store left behind
    assert api.client.get("/api/v1/phases/algo").status_code == 404
    settings = api.settings  # type: ignore[attr-defined]
    assert not settings.ground_truth_dir.exists() or not any(settings.ground_truth_dir.iterdir())
    # a re-import that lacks a case keeps the phase's inputs as they were
    doc = api.create_phase("algo", kind="algorithm", inputs=str(inputs_of(api)))
    r = api.client.post(
        "/api/v1/admin/phases/algo/inputs", json={"inputs": str(src)}, headers=auth(ORG)
    )
    assert r.status_code == 422
    again = api.client.get("/api/v1/phases/algo", headers=auth(ORG)).json()
    assert again["inputs_sha256"] == doc["inputs_sha256"] and again["n_inputs"] == N_CASES
    assert len(list(settings.ground_truth_dir.iterdir())) == 2


def test_ground_truth_with_cases_beyond_the_inputs_is_refused(
    sqlite_url: str, app_factory: Any, tmp_path: Path
) -> None:
    api = app_factory(sqlite_url)
    assert api.challenge is not None
    ids = gt_ids(api)
    partial = tmp_path / "inputs"
    shutil.copytree(inputs_of(api), partial)
    # inputs of all cases; then the ground truth of task 1 gains a case they lack
    api.create_phase("algo", kind="algorithm", inputs=str(partial), tasks=[1])
    gt = tmp_path / "gt"
    shutil.copytree(api.challenge.ground_truth, gt)
    extra = "ZZZ-001"
    (gt / "Task 1" / extra).mkdir()
    shutil.copy(
        gt / "Task 1" / ids[0] / f"{ids[0]}.nii.gz", gt / "Task 1" / extra / f"{extra}.nii.gz"
    )
    r = api.client.post(
        "/api/v1/admin/phases/algo/ground-truth",
        json={"ground_truth": str(gt), "tasks": [1], "rescore": False},
        headers=auth(ORG),
    )
    assert r.status_code == 422, r.text
    assert [e["case"] for e in r.json()["errors"]] == [extra]
    detail = api.client.get("/api/v1/phases/algo", headers=auth(ORG)).json()
    assert detail["task_details"][0]["n_cases"] == N_CASES  # the old truth kept
    settings = api.settings  # type: ignore[attr-defined]
    assert len(list(settings.ground_truth_dir.iterdir())) == 2


def test_inputs_are_not_in_anything_a_team_reads(sqlite_url: str, app_factory: Any) -> None:
    api = app_factory(sqlite_url)
    doc = api.create_phase("algo", kind="algorithm", inputs=str(inputs_of(api)))
    phase = stored_phase(api, "algo")
    assert phase.inputs_dir is not None
    store = Path(phase.inputs_dir).name
    team = api.create_team("t")
    secrets_ = [store, doc["inputs_sha256"], "inputs_dir", "n_inputs", "ehr.json", "__PT"]
    secrets_ += [f.name for f in (api.settings.data_dir / phase.inputs_dir).iterdir()]  # type: ignore[attr-defined]
    routes = set()
    for r in api.client.app.routes:
        for c in r.effective_candidates() if hasattr(r, "effective_candidates") else [r]:
            path, methods = getattr(c, "path", None), getattr(c, "methods", None) or set()
            if path and "GET" in methods and not path.startswith(("/docs", "/redoc", "/openapi")):
                routes.add(path)
    values = {"name": "algo", "phase": "algo", "task": "1"}
    walked = 0
    for template in sorted(routes):
        names = re.findall(r"{(\w+)}", template)
        if any(n not in values for n in names):
            continue  # submission pages: a team has none here
        url = template
        for n in names:
            url = url.replace("{" + n + "}", values[n])
        for token in (team, None):
            r = api.client.get(url, headers=auth(token))
            walked += 1
            for s in secrets_:
                assert s not in r.text, (url, token is None, s)
    assert walked > 20


def test_algorithm_phase_on_the_command_line(
    tmp_path: Path, challenge: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"

    def admin(*argv: str) -> tuple[int, str, str]:
        code = main(["admin", "--data-dir", str(data), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    assert admin("init")[0] == 0
    code, out, err = admin(
        *("phase", "create", "--name", "algo", "--ground-truth", str(challenge.ground_truth)),
        *("--kind", "algorithm", "--inputs", str(challenge.root / "inputs")),
        *("--case-seconds", "90", "--case-memory-mb", "1024", "--parallel-cases", "4"),
        *("--case-cpus", "0.5", "--no-fail-fast"),
    )
    assert code == 0, err
    assert f"kind algorithm: inputs of {N_CASES} case(s)" in out
    assert "per case 90 s, 1024 MiB, 0.5 CPU(s), no GPU" in out and "4 case(s) at once" in out
    code, out, err = admin("phase", "update", "algo", "--case-seconds", "45", "--case-gpu")
    assert code == 0, err
    assert "case_seconds = 45" in out and "case_gpu = True" in out
    code, out, err = admin("phase", "update", "algo", "--parallel-cases", "0")
    assert code == 1 and "parallel_cases" in err and "between 1 and 64, not 0" in err
    code, out, err = admin("phase", "inputs", "algo", "--inputs", str(challenge.root / "inputs"))
    assert code == 0, err
    assert f"inputs of {N_CASES} case(s) imported" in out
    code, out, err = admin(
        *("phase", "create", "--name", "nope", "--ground-truth", str(challenge.ground_truth)),
        *("--kind", "both"),
    )
    assert code == 1 and "give the server-side folder" in err
