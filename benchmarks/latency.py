"""Latency at the edges: what a participant or an organizer waits for before the core
work starts, measured on two checkouts in one run.

    python -m benchmarks.latency --before PATH [--after PATH] [--reps 3]

``--before`` is a ``git worktree`` of an older commit (``git worktree add --detach
/tmp/before <commit>``); ``--after`` defaults to this checkout. Each figure is measured
in fresh processes whose ``PYTHONPATH`` is the checkout, the two checkouts interleaved
rep by rep (the median is reported):

- ``submit_to_upload_s``: from starting ``hecktor-eval submit`` until its upload
  request reaches the server (a stand-in HTTP server in this process that answers the
  limits request and accepts the upload);
- ``score_help_s``: the wall time of ``hecktor-eval score --help``;
- ``score_imports_s``: the import time (``-X importtime``, top-level imports after
  start-up) of a whole offline ``score`` of a 12-case CT-size Task 1 set: the fixed
  start-up cost of a score; ``score_wall_s`` and ``score_wall_again_s`` the two runs'
  wall times (the second finds the ground truth in the user cache, where there is one);
- ``first_judge_s`` / ``later_judge_s``: from upload to verdict of the first dry run,
  sent 10 s after the service started (local dispatcher, two judges), and of the ones
  after it;
- ``first_board_html_s`` / ``later_board_html_s``: the first and a later HTML view of
  a board with four scored teams (viewed once the server has computed what it computes
  after new results, when it does).

Results go to ``benchmarks/results/latency.json`` (or ``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

SERVICE = r"""
import json, statistics, sys, time
from pathlib import Path
from fastapi.testclient import TestClient
from app.jobs.local import LocalDispatcher
from app.main import create_app
from app.settings import Settings

tmp, challenge = Path(sys.argv[1]), Path(sys.argv[2])
org = "latency-organizer-token-7f3a9c1e5b2d4086af1e0c"
settings = Settings(
    _env_file=None, data_dir=tmp / "data", database_url=f"sqlite:///{tmp / 'h.db'}",
    organizer_token=org, workers=2, sweep_interval=0, log_level="warning",
)
H = {"Authorization": f"Bearer {org}"}
dispatcher = LocalDispatcher(settings, max_workers=2)
dispatcher.start()
out = {}
with TestClient(create_app(settings, dispatcher=dispatcher)) as c:
    r = c.post("/api/v1/admin/phases", headers=H, json={
        "name": "p", "ground_truth": str(challenge / "ground_truth"), "tasks": [1, 2],
        "daily_limit": 10, "leaderboard_public": True})
    assert r.status_code == 201, r.text
    teams = ("perfect", "good", "mediocre", "poor")
    tok = {t: c.post("/api/v1/admin/teams", json={"name": t}, headers=H).json()["token"]
           for t in teams}

    def up(team, task, name, dry):
        body = (challenge / "submissions" / team / name).read_bytes()
        r = c.post("/api/v1/submissions", params={"dry_run": "true"} if dry else None,
                   data={"phase": "p", "task": str(task)}, files={"file": (name, body)},
                   headers={"Authorization": f"Bearer {tok[team]}"})
        assert r.status_code == 202, r.text
        return r.json()["id"], team

    def wait(sid, team):
        t = time.perf_counter()
        while True:
            d = c.get(f"/api/v1/submissions/{sid}",
                      headers={"Authorization": f"Bearer {tok[team]}"}).json()
            if d["status"] in ("valid", "scored", "failed"):
                return time.perf_counter() - t, d["status"]
            time.sleep(0.02)

    def judged(team, task, name, dry):
        t = time.perf_counter()
        wait(*up(team, task, name, dry))
        return round(time.perf_counter() - t, 3)

    # the first dry run 10 s after start-up (a participant's first upload comes later
    # than the server's start), then later ones (one at a time)
    time.sleep(10.0)
    out["first_judge_s"] = judged("good", 2, "task2.csv", True)
    out["later_judge_s"] = sorted(judged("good", 2, "task2.csv", True) for _ in range(3))[1]
    for team in teams:
        for task, name in ((1, "task1.zip"), (2, "task2.csv")):
            judged(team, task, name, False)
    warmer = getattr(c.app.state, "page_warmer", None)
    if warmer is not None:
        warmer.settled(timeout=300)  # what it computes once the results are in
    else:
        time.sleep(2.0)
    views = {}
    for task in (1, 2):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            r = c.get(f"/leaderboards/p/{task}", headers={"Accept": "text/html"})
            times.append(round(time.perf_counter() - t, 3))
            assert r.status_code == 200, r.text[:300]
        views[task] = times
    out["first_board_html_s"] = max(v[0] for v in views.values())
    out["later_board_html_s"] = max(statistics.median(v[1:]) for v in views.values())
    out["board_html_s"] = views
print(json.dumps(out))
dispatcher.shutdown(wait=False)
"""


class _Server(BaseHTTPRequestHandler):
    """Answers the client as the service would, and records when the upload arrives."""

    arrived: ClassVar[list[float]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if "/limits" in self.path:
            allowance = {"used": 0, "limit": 20, "bytes": 0, "byte_limit": 1 << 33}
            self._json(200, {
                "phase": "p", "task": 2, "dry_run": True, "max_upload_bytes": 1 << 31,
                "accepted_types": ["text/csv"], "quota": {"limit": 5, "used": 0, "left": 5},
                "dry_runs": allowance, "failed": allowance,
            })  # fmt: skip
        else:
            self._json(200, {"id": 1, "status": "valid", "task": 2})

    def do_POST(self) -> None:
        _Server.arrived.append(time.perf_counter())
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        self._json(202, {"id": 1, "status": "queued", "sha256": "0" * 64})


def _env(tree: Path, cache: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "XDG_CACHE_HOME": str(cache)}
    env.pop("HECKTOR_TOKEN", None)
    return env


def submit_to_upload(tree: Path, table: Path, cache: Path) -> float:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Server.arrived.clear()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    argv = [sys.executable, "-m", "evaluator.cli", "submit", "--server", url, "--token", "t"]
    argv += ["--phase", "p", "--task", "2", "--dry-run", "--no-wait", str(table)]
    t = time.perf_counter()
    subprocess.run(argv, env=_env(tree, cache), cwd=tree, capture_output=True, check=True)
    server.shutdown()
    return round(_Server.arrived[0] - t, 3)


def score_help(tree: Path, cache: Path) -> float:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "evaluator.cli", "score", "--help"],
        env=_env(tree, cache),
        cwd=tree,
        capture_output=True,
        check=True,
    )
    return round(time.perf_counter() - t, 3)


def _import_seconds(importtime: str) -> float:
    """Total cumulative time of the top-level imports, start-up (site) left out."""
    total = 0
    for line in importtime.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or "cumulative" in line:
            continue
        name = parts[2][1:]  # one space, then two more per nesting level
        if name.startswith(" ") or name.strip() in ("site", "encodings"):
            continue
        total += int(parts[1])
    return round(total / 1e6, 3)


def score_run(tree: Path, gt: Path, predictions: Path, cache: Path) -> tuple[float, float]:
    argv = [sys.executable, "-X", "importtime", "-m", "evaluator.cli", "score", "--task", "1"]
    argv += ["-q", "--ground-truth", str(gt), "--predictions", str(predictions)]
    argv += ["--output", os.devnull]
    t = time.perf_counter()
    proc = subprocess.run(argv, env=_env(tree, cache), cwd=tree, capture_output=True, text=True)
    wall = round(time.perf_counter() - t, 3)
    if proc.returncode != 0:
        sys.exit(f"score failed in {tree}: {proc.stderr[-1500:]}")
    return wall, _import_seconds(proc.stderr)


def service(tree: Path, challenge: Path, work: Path) -> dict[str, Any]:
    env = {**_env(tree, work / "xdg"), "TMPDIR": str(work)}
    env.pop("HECKTOR_TEST_HOOKS", None)
    proc = subprocess.run(
        [sys.executable, "-c", SERVICE, str(work), str(challenge)],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        sys.exit(f"the service run failed in {tree}: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--before", type=Path, required=True, help="checkout of the older commit")
    ap.add_argument("--after", type=Path, default=REPO)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-service", action="store_true", help="skip the judge and page figures")
    ap.add_argument("--output", type=Path, default=HERE / "results" / "latency.json")
    args = ap.parse_args()
    from benchmarks.task1 import dataset
    from evaluator.synth import generate_challenge

    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    gt, _ = dataset(12, 7)
    predictions = gt.parents[1] / "submissions" / "good" / "task1.zip"
    runs: dict[str, dict[str, list[float]]] = {k: {} for k in trees}
    with tempfile.TemporaryDirectory(prefix="latency-") as tmp:
        root = Path(tmp)
        table = root / "task2.csv"
        table.write_text("PatientID,Prediction\nCHUM-001,0.5\n")
        for rep in range(args.reps):
            for name, tree in trees.items():
                r = runs[name]
                cache = root / f"xdg-{name}-{rep}"
                r.setdefault("submit_to_upload_s", []).append(submit_to_upload(tree, table, cache))
                r.setdefault("score_help_s", []).append(score_help(tree, cache))
                wall, imports = score_run(tree, gt, predictions, cache)
                again, _ = score_run(tree, gt, predictions, cache)
                r.setdefault("score_wall_s", []).append(wall)
                r.setdefault("score_wall_again_s", []).append(again)
                r.setdefault("score_imports_s", []).append(imports)
        result: dict[str, Any] = {
            name: {k: statistics.median(v) for k, v in r.items()} for name, r in runs.items()
        }
        for name, r in runs.items():
            result[name]["runs"] = r
        if not args.no_service:
            challenge = root / "challenge"
            generate_challenge(challenge, seed=0, small=True, n_cases=8)
            for name, tree in trees.items():
                work = root / f"svc-{name}"
                work.mkdir()
                result[name].update(service(tree, challenge, work))
    result["trees"] = {k: str(v) for k, v in trees.items()}
    result["machine"] = {"cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]}
    print(json.dumps(result, indent=2))
    args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
