"""Property-based fuzzing of every operation in ``/openapi.json`` (schemathesis) against
a real server on 127.0.0.1, as the organizer and as a team: zero 5xx answers.

Bounded: a few examples per operation (``MAX_EXAMPLES``), no shrinking phase, a
timeout per request. The server judges inline, so an upload that happens to be valid
runs the scorer too. Teams and phases the fuzzer may create or change are its own;
the tokens used here belong to names it is unlikely to generate.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from app.cli.demo import ServerThread
from app.main import create_app
from tests.app.conftest import ORG, InlineDispatcher, auth, free_port, make_settings

MAX_EXAMPLES = 8  # per operation, per generation mode; two calls each (organizer, team)
TEAM = "fuzz-team-7f3a9c"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, challenge: Any) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    settings_ = make_settings(
        tmp / "data",
        f"sqlite:///{tmp / 'hecktor.db'}",
        auth_failure_limit=0,  # the fuzzer's own bad tokens must not lock the good ones out
    )
    port = free_port()
    st = ServerThread(
        create_app(settings_, dispatcher=InlineDispatcher(settings_)), "127.0.0.1", port
    )
    st.start()
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=60) as c:
        r = c.post(
            "/api/v1/admin/phases",
            json={"name": "val", "ground_truth": str(challenge.ground_truth)},
            headers=auth(ORG),
        )
        assert r.status_code == 201, r.text
        team = c.post("/api/v1/admin/teams", json={"name": TEAM}, headers=auth(ORG)).json()
        r = c.post(
            "/api/v1/submissions",
            data={"phase": "val", "task": "2"},
            files={"file": ("p.csv", challenge.archive("good", 2).read_bytes())},
            headers=auth(team["token"]),
        )
        assert r.status_code == 202, r.text
    try:
        yield {"base": base, "tokens": {"organizer": ORG, "team": team["token"]}}
    finally:
        st.server.should_exit = True
        st.thread.join(timeout=30)


def _schema() -> Any:
    """The service's OpenAPI document (built without starting anything), loaded once."""
    app = create_app(make_settings(Path("unused-data-dir"), "sqlite://"))
    return schemathesis.openapi.from_dict(app.openapi())


SCHEMA = _schema()
OPERATIONS = {op.label: op for op in (r.ok() for r in SCHEMA.get_all_operations())}
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


def test_the_schema_lists_the_api() -> None:
    assert len(OPERATIONS) >= 20
    assert "POST /api/v1/submissions" in OPERATIONS
    assert "GET /api/v1/leaderboards/{phase}/{task}" in OPERATIONS


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_server_errors(live: dict[str, Any], label: str, mode: GenerationMode) -> None:
    operation = OPERATIONS[label]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        for role, token in live["tokens"].items():
            response = case.call(base_url=live["base"], headers=auth(token), timeout=60)
            assert response.status_code < 500, (
                f"{role}: {case.method} {case.formatted_path} -> {response.status_code}\n"
                f"{response.text[:500]}\n{case.as_curl_command()}"
            )

    try:
        run()
    except Unsatisfiable:
        # no input can violate this operation's schema (e.g. no parameters): nothing to send
        assert mode is GenerationMode.NEGATIVE, label
