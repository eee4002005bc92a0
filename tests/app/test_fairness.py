"""Fair scheduling across teams, through HTTP, with timings, for both dispatchers.

One judge. Team A uploads two slow dry runs (each sleeps inside its limits through
the test-only hooks file, ``HECKTOR_TEST_HOOKS``), then team B uploads one fast job:
B's job starts as soon as A's first is done, before A's second; the delay B sees is
bounded by the one job that was running when it arrived. An organizer's re-scoring
runs at low priority: a team's newly uploaded job starts before the re-scoring jobs
still waiting. The same with a real ``hecktor-eval worker`` on Redis (Celery): the
broker's messages are tickets and the worker takes the fairest queued row.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.db.models import PRIORITY_RESCORE, Submission
from app.db.session import make_engine, session_factory
from app.jobs.local import LocalDispatcher
from tests.app.conftest import ORG, auth
from tests.app.judge_hooks import TEST_HOOKS_ENV
from tests.app.test_celery import (  # noqa: F401 - fixtures
    Cluster,
    _wait_for,
    broker_prefix,
    cluster,
    pg,
)

log = logging.getLogger(__name__)
SLOW = 4.0  # seconds each of team A's jobs sleeps


def _times(db_url: str) -> dict[int, dict[str, Any]]:
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        rows = {
            sub.id: {
                "status": sub.status,
                "submitted": sub.submitted_at,
                "started": sub.started_at,
                "finished": sub.finished_at,
                "priority": sub.priority,
            }
            for sub in s.scalars(select(Submission))
        }
    engine.dispose()
    return rows


def _s(a: datetime, b: datetime) -> float:
    return (a - b).total_seconds()


@pytest.fixture
def hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "hooks.json"
    path.write_text("{}")
    monkeypatch.setenv(TEST_HOOKS_ENV, str(path))  # read by the judging processes
    return path


@pytest.fixture
def one_judge(app_factory: Any, db_url: str, hooks: Path) -> Iterator[Any]:
    """The service with a local dispatcher of one judging process (started warm)."""
    holder: dict[str, LocalDispatcher] = {}

    def make(settings: Any) -> LocalDispatcher:
        d = LocalDispatcher(settings, max_workers=1)
        d.start()
        assert d._executor is not None
        d._executor.submit(int).result(timeout=60)  # the judging process is up and warm
        holder["d"] = d
        return d

    api = app_factory(db_url, dispatcher=make, job_timeout_seconds=60)
    api.hooks = hooks  # type: ignore[attr-defined]
    yield api
    holder["d"].shutdown(wait=False)


def _wait_final(api: Any, token: str, ids: list[int], timeout: float = 60.0) -> None:
    for sid in ids:
        api.wait(token, sid, timeout=timeout)


def _team_a_then_b(api: Any, hooks: Path, db_url: str) -> dict[str, Any]:
    """Team A: two slow dry runs; then team B: one fast job. Returns the timings."""
    api.create_phase("p", tasks=[2], daily_limit=10)
    a, b = api.create_team("A"), api.create_team("B")
    csv = api.challenge.archive("good", 2)
    # the ids are 1, 2, 3 in a fresh database: A's two jobs sleep inside their limits
    hooks.write_text(json.dumps({"1": {"sleep": SLOW}, "2": {"sleep": SLOW}}))
    a1 = api.submit_ok(a, "p", 2, csv, dry_run=True)
    a2 = api.submit_ok(a, "p", 2, csv, dry_run=True)
    b1 = api.submit_ok(b, "p", 2, csv)
    assert (a1, a2, b1) == (1, 2, 3)
    _wait_final(api, a, [a1, a2])
    _wait_final(api, b, [b1])
    t = _times(db_url)
    assert t[a1]["status"] == t[a2]["status"] == "valid" and t[b1]["status"] == "scored"
    delay = _s(t[b1]["started"], t[b1]["submitted"])
    slow = _s(t[a1]["finished"], t[a1]["started"])
    log.warning("fairness: B's job waited %.2f s behind A's slow jobs (%.2f s each)", delay, slow)
    return {"a1": t[a1], "a2": t[a2], "b1": t[b1], "delay": delay, "slow": slow}


def _check_fair(r: dict[str, Any]) -> None:
    assert r["b1"]["started"] < r["a2"]["started"], "B's first job before A's second"
    assert r["slow"] >= SLOW
    # B waited for the job running when it arrived (and the judge's turnaround), not
    # for A's queue: first come first served would make it wait two slow jobs
    assert r["delay"] < r["slow"] + 2.5, r
    assert _s(r["b1"]["started"], r["a1"]["finished"]) < 1.5, r


def test_local_a_teams_second_job_waits_behind_another_teams_first(
    one_judge: Any, db_url: str
) -> None:
    _check_fair(_team_a_then_b(one_judge, one_judge.hooks, db_url))


def test_local_rescoring_runs_after_a_teams_new_upload(one_judge: Any, db_url: str) -> None:
    api = one_judge
    api.create_phase("p", tasks=[2], daily_limit=10)
    a, b = api.create_team("A"), api.create_team("B")
    csv = api.challenge.archive("good", 2)
    old = [api.submit_ok(a, "p", 2, csv) for _ in range(3)]
    _wait_final(api, a, old)
    api.hooks.write_text(json.dumps({str(i): {"sleep": 1.5} for i in old}))
    r = api.client.post("/api/v1/admin/phases/p/rescore", json={}, headers=auth(ORG))
    assert r.status_code == 200, r.text
    assert sorted(r.json()["queued"]) == old
    new = api.submit_ok(b, "p", 2, csv)  # uploaded while the first re-scoring job runs
    _wait_final(api, a, old)
    _wait_final(api, b, [new])
    t = _times(db_url)
    assert all(t[i]["priority"] == PRIORITY_RESCORE for i in old)
    assert t[new]["priority"] == 0
    before = [i for i in old if t[i]["started"] < t[new]["started"]]
    assert len(before) <= 1, (before, t)  # only the one already running when B uploaded
    assert all(t[i]["status"] == "scored" for i in [*old, new])
    delay = _s(t[new]["started"], t[new]["submitted"])
    assert delay < 1.5 + 2.5, t[new]  # at most the re-scoring job already running


@pytest.mark.celery
@pytest.mark.postgres
@pytest.mark.timeout(180)
def test_celery_a_teams_second_job_waits_behind_another_teams_first(
    cluster: Cluster,  # noqa: F811 - the fixture of test_celery
) -> None:
    api, db = cluster.api, cluster.common["database_url"]
    w = cluster.start_worker(hooks=True)
    cluster.wait_ready(w)
    r = _team_a_then_b(api, cluster.hooks_file, db)
    _check_fair(r)
    assert "no queued submission left to judge; skipped" not in w.log()


@pytest.mark.celery
@pytest.mark.postgres
@pytest.mark.timeout(180)
def test_celery_rescoring_runs_after_a_teams_new_upload(
    cluster: Cluster,  # noqa: F811 - the fixture of test_celery
) -> None:
    api, db = cluster.api, cluster.common["database_url"]
    api.create_phase("p", tasks=[2], daily_limit=10)
    a, b = api.create_team("A"), api.create_team("B")
    csv = api.challenge.archive("good", 2)
    w = cluster.start_worker(hooks=True)
    cluster.wait_ready(w)
    old = [api.submit_ok(a, "p", 2, csv) for _ in range(3)]
    _wait_final(api, a, old)
    cluster.hooks({i: {"sleep": 1.5} for i in old})
    r = api.client.post("/api/v1/admin/phases/p/rescore", json={}, headers=auth(ORG))
    assert r.status_code == 200, r.text
    _wait_for(
        "the first re-scoring job", lambda: _times(db)[old[0]]["status"] == "running", 30, [w]
    )
    new = api.submit_ok(b, "p", 2, csv)
    _wait_final(api, a, old)
    _wait_final(api, b, [new])
    t = _times(db)
    before = [i for i in old if t[i]["started"] < t[new]["started"]]
    assert len(before) <= 1, (before, t)
    assert all(t[i]["status"] == "scored" for i in [*old, new])
    # each job judged once: three re-scorings and the new one, after the first three
    assert sorted(w.scored()) == sorted([*old, *old, new])
