"""The local dispatcher starts its judging processes, and has them import the scorer,
when it starts: the first submission after ``serve`` is judged as fast as later ones."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.app.conftest import ORG, auth, judge_pids, judged_service


def _judge_seconds(doc: dict[str, Any]) -> float:
    def ts(x: str) -> datetime:
        return datetime.fromisoformat(x.replace("Z", "+00:00"))

    return (ts(doc["finished_at"]) - ts(doc["submitted_at"])).total_seconds()


def test_judges_are_started_and_warm_before_the_first_submission(
    tmp_path: Path, challenge: Any
) -> None:
    with judged_service(tmp_path, challenge) as (api, d):
        # no submission yet: both judging processes are there already
        deadline = time.monotonic() + 30
        while len(judge_pids(d)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(judge_pids(d)) == 2
        assert d.wait_ready(timeout=180)
        api.create_phase("p", tasks=[2])
        token = api.create_team("t")
        table = challenge.archive("good", 2)
        first = api.wait(token, api.submit_ok(token, "p", 2, table, dry_run=True))
        later = [api.wait(token, api.submit_ok(token, "p", 2, table, dry_run=True)) for _ in "ab"]
        assert first["status"] == "valid", first
        slowest_later = max(_judge_seconds(x) for x in later)
        assert _judge_seconds(first) < max(2.5 * slowest_later, slowest_later + 1.5), (
            _judge_seconds(first),
            [_judge_seconds(x) for x in later],
        )
        assert api.client.get("/api/v1/me", headers=auth(ORG)).status_code == 200
