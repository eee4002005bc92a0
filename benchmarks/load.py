"""Load test: leaderboard and status reads on 127.0.0.1 while submissions are judged.

    python -m benchmarks.load [--rate 100] [--status-rate 20] [--duration 20]
                              [--teams 40] [--out benchmarks/results/load.json]

1. starts ``python -m app serve`` (SQLite, local dispatcher, one judging process) on a
   free port with a fresh data folder;
2. creates a phase from the CT-size synthetic set (512x512x~200 masks, generated once
   under benchmarks/cache/ by ``benchmarks.task1``), ``--teams`` teams, and scores
   their Task 2/3 tables and a few Task 1 archives, so the boards have rows;
3. keeps the judge busy: a separate process keeps two CT-size Task 1 archives queued
   (one judged, the next waiting) for the whole measurement;
4. sends leaderboard reads (``GET /api/v1/leaderboards/{phase}/{task}``, tasks 1-3 in
   turn) at ``--rate`` per second and status reads (``GET /api/v1/submissions/{id}``
   with the team's token) at ``--status-rate`` per second, open loop (each request
   goes out on schedule, whether or not earlier ones have answered), for
   ``--duration`` seconds; every request has a 5 s timeout;
5. prints and writes p50/p90/p99/max latency, achieved requests/s, errors, and how
   much of the window a judge was running.

Bounded: at most (rate + status-rate) x duration requests, a deadline on every wait.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ORG = "load-test-organizer-token-0123456789abcdef"
PHASE = "load"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ct_dataset() -> Path:
    from benchmarks.task1 import dataset

    dataset(12, 7)
    return HERE / "cache" / "ct-12-seed7"


class Server:
    def __init__(self, data: Path, workers: int) -> None:
        self.data = data
        self.workers = workers
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> None:
        env = {
            **os.environ,
            "HECKTOR_ORGANIZER_TOKEN": ORG,
            "HECKTOR_DAILY_LIMIT": "100000",
            "HECKTOR_PROGRESS_INTERVAL": "0.5",
            "PYTHONPATH": str(REPO),
        }
        self.log = open(self.data.parent / "server.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app",
                "serve",
                "--data-dir",
                str(self.data),
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=self.data.parent,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited; see {self.data.parent / 'server.log'}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start in time")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.log.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def upload(c: httpx.Client, token: str, task: int, path: Path) -> int:
    r = c.post(
        "/api/v1/submissions",
        data={"phase": PHASE, "task": str(task)},
        files={"file": (path.name, path.read_bytes())},
        headers=auth(token),
    )
    r.raise_for_status()
    return int(r.json()["id"])


def wait(c: httpx.Client, token: str, sid: int, timeout: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = c.get(f"/api/v1/submissions/{sid}", headers=auth(token))
        if r.status_code != 200:
            raise RuntimeError(f"status of submission {sid}: {r.status_code} {r.text[:300]}")
        doc = r.json()
        if doc["status"] in ("scored", "failed"):
            return doc
        if time.monotonic() > deadline:
            raise RuntimeError(f"submission {sid} still {doc['status']} after {timeout} s")
        time.sleep(0.1)


def setup(server: Server, root: Path, n_teams: int, task1_subs: int) -> dict[str, Any]:
    subs = root / "submissions" / "good"
    with httpx.Client(base_url=server.base, timeout=120) as c:
        r = c.post(
            "/api/v1/admin/phases",
            json={"name": PHASE, "ground_truth": str(root / "ground_truth")},
            headers=auth(ORG),
        )
        r.raise_for_status()
        tokens = []
        for i in range(n_teams):
            r = c.post("/api/v1/admin/teams", json={"name": f"team-{i:03d}"}, headers=auth(ORG))
            r.raise_for_status()
            tokens.append(r.json()["token"])
        ids: list[tuple[str, int]] = []
        for i, tok in enumerate(tokens):
            for task, name in ((2, "task2.csv"), (3, "task3.csv")):
                ids.append((tok, upload(c, tok, task, subs / name)))
            if i < task1_subs:
                ids.append((tok, upload(c, tok, 1, subs / "task1.zip")))
        for tok, sid in ids:
            doc = wait(c, tok, sid)
            if doc["status"] != "scored":
                raise RuntimeError(f"setup submission {sid} failed: {doc['errors']}")
    return {"tokens": tokens, "ids": ids}


def judge_loop(base: str, token: str, archive: str, seconds: float, out: Any) -> None:
    """In its own process (so that its work never stalls the load generator's loop):
    keep two Task 1 archives in the queue (one being judged, the next waiting) for
    ``seconds``; put the list of judged jobs (or the error) on ``out``."""
    jobs: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + seconds
        with httpx.Client(base_url=base, timeout=60) as c:
            pending = [upload(c, token, 1, Path(archive)) for _ in range(2)]
            out.put(("started", pending[0]))
            while pending:
                doc = wait(c, token, pending.pop(0))
                jobs.append(
                    {
                        "id": doc["id"],
                        "status": doc["status"],
                        "started_at": doc["started_at"],
                        "finished_at": doc["finished_at"],
                    }
                )
                if time.monotonic() < deadline:
                    pending.append(upload(c, token, 1, Path(archive)))
        out.put(("ok", jobs))
    except BaseException as e:
        out.put(("error", repr(e)))


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def busy_fraction(jobs: list[dict[str, Any]], start: float, end: float) -> float:
    busy = 0.0
    for j in jobs:
        if j["started_at"] and j["finished_at"]:
            a, b = max(start, _ts(j["started_at"])), min(end, _ts(j["finished_at"]))
            busy += max(0.0, b - a)
    return busy / (end - start)


class Conn:
    """One keep-alive HTTP/1.1 connection: raw requests, minimal response parsing (a
    load generator must cost far less than the server it measures)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def get(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status


def _schedule(
    rate: float,
    status_rate: float,
    span: float,
    warmup: float,
    status_targets: list[tuple[str, int]],
    request: Callable[..., bytes],
) -> list[tuple[float, str, bytes]]:
    """Every request of the run as (due time, kind, raw bytes), in due order: board reads
    at ``rate``, status reads at ``status_rate``; those due before ``warmup`` are
    "warmup"."""
    schedule: list[tuple[float, str, bytes]] = []
    for i in range(int(rate * span)):
        path = f"/api/v1/leaderboards/{PHASE}/{1 + i % 3}"
        at = i / rate
        schedule.append((at, "leaderboard" if at >= warmup else "warmup", request(path)))
    for i in range(int(status_rate * span)):
        tok, sid = status_targets[i % len(status_targets)]
        at = i / status_rate
        raw = request(f"/api/v1/submissions/{sid}", tok)
        schedule.append((at, "status" if at >= warmup else "warmup", raw))
    schedule.sort(key=lambda x: x[0])
    return schedule


async def drive(
    base: str,
    rate: float,
    status_rate: float,
    duration: float,
    status_targets: list[tuple[str, int]],
    *,
    warmup: float = 0.0,
    max_connections: int = 64,
) -> dict[str, Any]:
    """Open loop: request i is due at i / rate; its latency runs from when it was due
    (waiting for a free connection counts) to the end of the response body. The first
    ``warmup`` seconds run at the same rates and are not counted."""
    host, port = base.removeprefix("http://").split(":")
    results: dict[str, list[float]] = {"leaderboard": [], "status": [], "warmup": []}
    errors: dict[str, list[str]] = {"leaderboard": [], "status": [], "warmup": []}
    idle: asyncio.LifoQueue[Conn] = asyncio.LifoQueue()
    opened: list[Conn] = []
    slots = asyncio.Semaphore(max_connections)

    def request(path: str, token: str | None = None) -> bytes:
        head = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        return (head + "\r\n").encode()

    async def one(kind: str, due: float, raw: bytes) -> None:
        loop = asyncio.get_running_loop()
        async with slots:
            conn = None

            async def fresh() -> Conn:
                reader, writer = await asyncio.open_connection(host, int(port))
                opened.append(Conn(reader, writer))
                return opened[-1]

            try:
                conn = idle.get_nowait() if not idle.empty() else None
                if conn is None:
                    conn = await fresh()
                    status = await asyncio.wait_for(conn.get(raw), timeout=5.0)
                else:
                    try:
                        status = await asyncio.wait_for(conn.get(raw), timeout=5.0)
                    except (asyncio.IncompleteReadError, ConnectionError):
                        # the server closed the idle keep-alive connection: retry once
                        conn.writer.close()
                        conn = await fresh()
                        status = await asyncio.wait_for(conn.get(raw), timeout=5.0)
                dt = loop.time() - due
                if status != 200:
                    errors[kind].append(f"{status} {raw[:60]!r}")
                else:
                    results[kind].append(dt)
                idle.put_nowait(conn)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as e:
                errors[kind].append(f"{type(e).__name__} {raw[:60]!r}")
                if conn is not None:
                    conn.writer.close()

    schedule = _schedule(rate, status_rate, warmup + duration, warmup, status_targets, request)

    loop = asyncio.get_running_loop()
    tasks = []
    t_start = loop.time()
    wall_start = time.time() + warmup
    for at, kind, raw in schedule:
        due = t_start + at
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(kind, due, raw)))
    sent_for = loop.time() - t_start
    _, pending = await asyncio.wait(tasks, timeout=30)
    for t in pending:  # not answered 30 s after the last request was due
        t.cancel()
    errors["leaderboard"] += ["unanswered"] * len(pending)
    for conn in opened:
        conn.writer.close()
    return {
        "results": results,
        "errors": errors,
        "elapsed": max(sent_for - warmup, duration),
        "wall_start": wall_start,
        "wall_end": time.time(),
        "connections": len(opened),
    }


def summary(samples: list[float], n_errors: int, elapsed: float) -> dict[str, Any]:
    ms = sorted(x * 1000 for x in samples)
    if not ms:
        return {"requests": 0, "errors": n_errors}

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, round(p / 100 * (len(ms) - 1)))], 2)

    return {
        "requests": len(ms) + n_errors,
        "ok": len(ms),
        "errors": n_errors,
        "achieved_rps": round((len(ms) + n_errors) / elapsed, 1),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": round(ms[-1], 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rate", type=float, default=100.0, help="leaderboard reads per second")
    ap.add_argument("--status-rate", type=float, default=20.0, help="status reads per second")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of load measured")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of load first, not measured")
    ap.add_argument("--teams", type=int, default=30)
    ap.add_argument("--task1-subs", type=int, default=4, help="Task 1 rows scored before the load")
    ap.add_argument("--workers", type=int, default=1, help="judging processes of the server")
    ap.add_argument("--target-p99-ms", type=float, default=50.0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "load.json")
    args = ap.parse_args(argv)
    if args.duration > 120 or args.rate * args.duration > 20_000:
        ap.error("bounded run: at most 120 s and 20,000 leaderboard requests")

    root = ct_dataset()
    with tempfile.TemporaryDirectory(prefix="hecktor-load-") as tmp:
        server = Server(Path(tmp) / "data", args.workers)
        print(f"starting the server on {server.base} ...", flush=True)
        server.start()
        try:
            t0 = time.monotonic()
            state = setup(server, root, args.teams, args.task1_subs)
            print(
                f"setup: {len(state['tokens'])} teams, {len(state['ids'])} submissions scored "
                f"in {time.monotonic() - t0:.1f} s",
                flush=True,
            )
            ctx = multiprocessing.get_context("spawn")
            out = ctx.Queue()
            archive = root / "submissions" / "good" / "task1.zip"
            token = state["tokens"][0]
            judge = ctx.Process(
                target=judge_loop,
                args=(server.base, token, str(archive), args.warmup + args.duration + 1.0, out),
            )
            judge.start()
            if out.get(timeout=120)[0] != "started":
                raise RuntimeError("the judging driver did not start")
            time.sleep(0.5)  # the first archive is being judged
            print(
                f"load: {args.rate:g} leaderboard + {args.status_rate:g} status reads/s "
                f"for {args.duration:g} s while Task 1 archives are judged ...",
                flush=True,
            )
            run = asyncio.run(
                drive(
                    server.base,
                    args.rate,
                    args.status_rate,
                    args.duration,
                    state["ids"],
                    warmup=args.warmup,
                )
            )
            kind, jobs = out.get(timeout=300)
            judge.join(timeout=60)
            judge_error = None
            if kind != "ok":  # e.g. the server stopped answering it: reported, not fatal
                judge_error, jobs = str(jobs), []
        finally:
            server.stop()
    busy = busy_fraction(jobs, run["wall_start"], run["wall_end"])
    lb = summary(run["results"]["leaderboard"], len(run["errors"]["leaderboard"]), run["elapsed"])
    st = summary(run["results"]["status"], len(run["errors"]["status"]), run["elapsed"])
    report = {
        "benchmark": "load",
        "offered": {
            "leaderboard_rps": args.rate,
            "status_rps": args.status_rate,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
        },
        "leaderboard": lb,
        "status": st,
        "judge": {
            "workers": args.workers,
            "task1_archives_judged_during_load": sum(1 for j in jobs if j["status"] == "scored"),
            "busy_fraction": round(busy, 3),
            "driver_error": judge_error,
            "case_grid": "512x512x~200 (12 cases per archive)",
        },
        "board_rows": {"teams": args.teams, "submissions_before_load": len(state["ids"])},
        "target_p99_ms": args.target_p99_ms,
        "target_met": bool(lb.get("p99_ms", 1e9) < args.target_p99_ms and not lb["errors"]),
        "error_samples": (run["errors"]["leaderboard"] + run["errors"]["status"])[:10],
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(f"{'':14}{'req/s':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}")
    for name, s in (("leaderboard", lb), ("status", st)):
        print(
            f"{name:14}{s.get('achieved_rps', 0):>8}{s.get('p50_ms', 0):>9}{s.get('p90_ms', 0):>9}"
            f"{s.get('p99_ms', 0):>9}{s.get('max_ms', 0):>9}{s['errors']:>8}"
        )
    print(
        f"judge busy {busy:.0%} of the window; "
        f"{report['judge']['task1_archives_judged_during_load']} CT-size archives judged"
    )
    print(f"target p99 < {args.target_p99_ms:g} ms: {'met' if report['target_met'] else 'MISSED'}")
    print(f"written to {args.out}")
    return 0 if report["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
