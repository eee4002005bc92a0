"""How long another team's job waits behind two bomb dry runs, through the HTTP API.

    python -m benchmarks.queue_delay [--tree PATH] [--judges 2] [--timeout 600]

Team A uploads two dry runs of an 8.5 MB zip whose 8 members inflate to 1 GiB of zeros
each; right after, team B uploads a valid Task 2 table (a job of about 0.1 s). The
service runs in a fresh process whose ``PYTHONPATH`` is ``--tree`` (default: this
checkout; pass a ``git worktree`` of an older commit to measure it) with the local
dispatcher and ``--judges`` judging processes, on a small synthetic challenge, after
a few warm-up dry runs (a fresh judging process pays its imports on its first job).
Reported: how long B's job waited from upload to the start of judging and to its
score, and how long each bomb held a judge. Results go to
``benchmarks/results/queue_delay.json`` (or ``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from evaluator.synth import generate_challenge
from tests.hostile import zip_bomb

CHILD = r"""
import json, sys, time
from datetime import datetime
from pathlib import Path
from fastapi.testclient import TestClient
from app.api.main import create_app
from app.jobs.dispatcher import LocalDispatcher
from app.settings import Settings

tmp, challenge, bomb, judges, timeout = (
    Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
)
org = "queue-delay-organizer-token-7f3a9c1e5b2d4086af1e"
data = tmp / "data"
settings = Settings(
    _env_file=None, data_dir=data, database_url=f"sqlite:///{data / 'h.db'}",
    organizer_token=org, workers=judges, sweep_interval=0, log_level="warning",
    job_timeout_seconds=int(timeout),
)
dispatcher = LocalDispatcher(settings, max_workers=judges)
dispatcher.start()
H = {"Authorization": f"Bearer {org}"}
with TestClient(create_app(settings, dispatcher=dispatcher)) as c:
    r = c.post("/api/v1/admin/phases", headers=H, json={
        "name": "p", "ground_truth": str(challenge / "ground_truth"), "tasks": [1, 2],
        "daily_limit": 10})
    assert r.status_code == 201, r.text
    tok = {t: c.post("/api/v1/admin/teams", json={"name": t}, headers=H).json()["token"]
           for t in "ABW"}
    table = (challenge / "submissions" / "good" / "task2.csv").read_bytes()

    def up(team, task, name, body, dry):
        r = c.post("/api/v1/submissions", params={"dry_run": "true"} if dry else None,
                   data={"phase": "p", "task": str(task)}, files={"file": (name, body)},
                   headers={"Authorization": f"Bearer {tok[team]}"})
        assert r.status_code == 202, r.text
        return r.json()["id"]

    def wait(sub_ids, team):
        t = time.monotonic()
        while time.monotonic() - t < timeout:
            states = [c.get(f"/api/v1/submissions/{i}", headers={
                "Authorization": f"Bearer {tok[team]}"}).json()["status"] for i in sub_ids]
            if all(s in ("valid", "scored", "failed") for s in states):
                return
            time.sleep(0.05)

    # warm judges: the first job of a fresh judging process pays its imports
    wait([up("W", 2, "task2.csv", table, True) for _ in range(2 * judges)], "W")
    body = bomb.read_bytes()
    ids = [up("A", 1, "bomb.zip", body, True), up("A", 1, "bomb.zip", body, True),
           up("B", 2, "task2.csv", table, False)]
    docs = {}
    t0 = time.monotonic()
    while len(docs) < 3 and time.monotonic() - t0 < timeout:
        for i, team in zip(ids, "AAB"):
            d = c.get(f"/api/v1/submissions/{i}",
                      headers={"Authorization": f"Bearer {tok[team]}"}).json()
            if d["status"] in ("valid", "scored", "failed"):
                docs[i] = d
        time.sleep(0.05)
    ts = lambda x: datetime.fromisoformat(x.replace("Z", "+00:00"))
    out = {"finished": len(docs) == 3}
    if len(docs) == 3:
        a1, a2, b = (docs[i] for i in ids)
        out.update(
            b_wait_to_start_s=round((ts(b["started_at"]) - ts(b["submitted_at"])).total_seconds(), 2),
            b_wait_to_score_s=round((ts(b["finished_at"]) - ts(b["submitted_at"])).total_seconds(), 2),
            bomb_judge_s=[round((ts(a["finished_at"]) - ts(a["started_at"])).total_seconds(), 2)
                          for a in (a1, a2)],
            bomb_outcome=[(a["errors"] or [{}])[0].get("message", a["status"])[:160]
                          for a in (a1, a2)],
            b_status=b["status"],
        )
    print(json.dumps(out))
dispatcher.shutdown(wait=False)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--judges", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--output", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="queue-delay-") as tmp:
        root = Path(tmp)
        challenge = root / "challenge"
        generate_challenge(challenge, seed=0, small=True, n_cases=6)
        bomb = root / "bomb.zip"
        bomb.write_bytes(zip_bomb([f"junk-{i}.nii.gz" for i in range(8)]))
        work = root / "tmp"
        work.mkdir()
        env = {**os.environ, "PYTHONPATH": str(args.tree), "TMPDIR": str(work)}
        env.pop("HECKTOR_TEST_HOOKS", None)
        t = time.monotonic()
        child_args = map(str, (root, challenge, bomb, args.judges, args.timeout))
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, *child_args],
            env=env,
            cwd=args.tree,
            capture_output=True,
            text=True,
            timeout=args.timeout + 120,
            check=False,
        )
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            sys.exit(f"the service run failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(lines[-1])
        result.update(
            tree=str(args.tree),
            judges=args.judges,
            bomb_MB=round(bomb.stat().st_size / 1e6, 2),
            wall_s=round(time.monotonic() - t, 1),
        )
    print(json.dumps(result, indent=2))
    out = args.output or Path(__file__).parent / "results" / "queue_delay.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
