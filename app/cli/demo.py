"""``make demo``: a synthetic challenge judged end to end through the HTTP API.

1. a small synthetic challenge (``evaluator.synth.generate_challenge``, the function
   behind ``hecktor-eval synth --small``), unless ``--challenge`` names one;
2. the service on SQLite with the local dispatcher, in a fresh data folder;
3. the demo phase and one team per synthetic team, created over HTTP (organizer API);
4. each team's three archives uploaded over HTTP with the team's own token;
5. waits until every submission is judged and prints the three leaderboards;
6. keeps serving http://HOST:PORT until Ctrl-C (or exits at once with ``--exit`` /
   ``DEMO_EXIT=1``).
"""

from __future__ import annotations

import itertools
import secrets
import shutil
import signal
import socket
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from rich.console import Console

from app.cli import client as api
from app.cli.console import leaderboard_table

MARKER = ".hecktor-demo"
TASK_FILES = {
    1: ("task1.zip", "task1.tar.gz", "task1.tar"),
    2: ("task2.csv", "task2.json"),
    3: ("task3.csv", "task3.json"),
}
EXPECTED_ORDER = ("perfect", "good", "mediocre", "poor")


def _fresh_data_dir(out: Path) -> Path:
    """``out/hecktor-data``, emptied if an earlier demo made it; never someone else's folder."""
    data = out / "hecktor-data"
    if data.exists():
        if (data / MARKER).exists():
            shutil.rmtree(data)
        else:
            data = out / f"hecktor-data-{datetime.now():%Y%m%d-%H%M%S}"
    data.mkdir(parents=True)
    (data / MARKER).write_text("made by `make demo`; removed by the next demo run\n")
    return data


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class ServerThread:
    """uvicorn in a background thread (the main thread keeps Ctrl-C)."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def start(self, timeout: float = 60.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server stopped during start-up (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start within 60 s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _find_archives(team_dir: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for task, names in TASK_FILES.items():
        for name in names:
            if (team_dir / name).is_file():
                found[task] = team_dir / name
                break
    return found


def _order_note(board: dict[str, Any]) -> str:
    teams = [r["team"] for r in board["rows"]]
    expected = [t for t in EXPECTED_ORDER if t in teams]
    if not expected:
        return ""
    ranks = {r["team"]: r["rank"] for r in board["rows"]}
    ok = all(ranks[a] <= ranks[b] for a, b in itertools.pairwise(expected))
    strict = all(ranks[a] < ranks[b] for a, b in itertools.pairwise(expected))
    if strict:
        return "[green]✓ synthetic teams in their quality order[/]"
    if ok:
        return "[yellow]✓ quality order respected (with ties)[/]"
    return "[red]✗ synthetic teams NOT in their quality order[/]"


def run_demo(
    *,
    out: Path,
    challenge: Path | None,
    host: str,
    port: int,
    n_cases: int | None,
    seed: int,
    workers: int | None,
    exit_after: bool,
    started: float,
) -> int:
    _stop_on_sigterm()
    con = Console(highlight=False)
    if not con.is_terminal:
        con = Console(highlight=False, width=160)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    challenge = _challenge(con, challenge, out, seed=seed, n_cases=n_cases)
    team_dirs = sorted(p for p in (challenge / "submissions").iterdir() if p.is_dir())
    if not _port_free(host, port):
        con.print(
            f"[red]error:[/] {host}:{port} is in use; stop what runs there or pass --port "
            "(make demo DEMO_PORT=8001)"
        )
        return 1
    data_dir = _fresh_data_dir(out)
    organizer = secrets.token_urlsafe(32)
    server = _start_service(con, data_dir, organizer, host=host, port=port, workers=workers)
    base = f"http://{host}:{port}"
    try:
        tokens = _phase_and_teams(con, base, organizer, challenge / "ground_truth", team_dirs)
        pending = _upload_all(con, base, tokens, team_dirs)
        failures = _wait_all(con, base, tokens, pending)
        _print_leaderboards(con, base)
        wall = time.monotonic() - started
        con.print(f"demo wall time: [bold]{wall:.1f} s[/] ({failures} submission(s) not scored)")
        con.print(f"data folder:    {data_dir}")
        con.print(f"leaderboards:   {base}/  (e.g. {base}/leaderboards/demo/1)")
        con.print(
            f"organizer token for this run (the teams' tokens are in the DB, hashed): {organizer}"
        )
        if not exit_after:
            _serve_until_interrupted(con, server)
        return 0 if failures == 0 else 1
    finally:
        server.stop()
        con.print(f"the demo's data stays in {data_dir}")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> None:
    """SIGTERM (``kill``, a service manager, a container stop) stops the demo as Ctrl-C
    does: the server shuts down, and with it the judging processes, instead of the
    process dying with its judges left running."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def _challenge(
    con: Console, challenge: Path | None, out: Path, *, seed: int, n_cases: int | None
) -> Path:
    """Step 1: the synthetic challenge given, or a small one generated under ``out``."""
    if challenge is not None and (Path(challenge) / "ground_truth").is_dir():
        challenge = Path(challenge).resolve()
        con.print(f"[bold]1/5[/] synthetic challenge: using {challenge}")
        return challenge
    from evaluator.synth import generate_challenge

    challenge = (Path(challenge) if challenge is not None else out / "challenge").resolve()
    con.print(f"[bold]1/5[/] generating a small synthetic challenge in {challenge} …")
    generate_challenge(challenge, seed=seed, small=True, n_cases=n_cases)
    return challenge


def _start_service(
    con: Console, data_dir: Path, organizer: str, *, host: str, port: int, workers: int | None
) -> ServerThread:
    """Step 2: the service on SQLite with the local dispatcher, started in a thread."""
    from app.main import create_app
    from app.settings import Settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        database_url=None,
        dispatcher="local",
        organizer_token=SecretStr(organizer),
        workers=workers or 0,
        progress_interval=0.2,
        sweep_interval=5.0,
        log_level="warning",
        public_url=f"http://{host}:{port}",
    )
    server = ServerThread(create_app(settings), host, port)
    con.print(
        f"[bold]2/5[/] starting the service on http://{host}:{port} "
        f"(SQLite, {settings.n_workers} judging process(es)) …"
    )
    server.start()
    return server


def _phase_and_teams(
    con: Console, base: str, organizer: str, gt_dir: Path, team_dirs: list[Path]
) -> dict[str, str]:
    """Step 3: the demo phase and one team per synthetic team, through the organizer
    API; the teams' tokens by name."""
    with api.make_client(base, organizer, timeout=600) as org:
        r = org.post(
            "/api/v1/admin/phases",
            json={
                "name": "demo",
                "title": "HECKTOR 2025 demo (synthetic data)",
                "ground_truth": str(gt_dir),
                "tasks": [1, 2, 3],
            },
        )
        api.raise_for_api(r)
        phase = r.json()
        cases = ", ".join(f"task {t['task']}: {t['n_cases']}" for t in phase["task_details"])
        con.print(f"[bold]3/5[/] phase 'demo' created over HTTP (cases — {cases})")
        tokens: dict[str, str] = {}
        for d in team_dirs:
            r = org.post("/api/v1/admin/teams", json={"name": d.name})
            api.raise_for_api(r)
            tokens[d.name] = r.json()["token"]
        con.print(f"      teams: {', '.join(tokens)}")
    return tokens


def _upload_all(
    con: Console, base: str, tokens: dict[str, str], team_dirs: list[Path]
) -> list[tuple[str, int, int]]:
    """Step 4: each team's archives, uploaded with the team's token; (team, task, id)."""
    pending: list[tuple[str, int, int]] = []
    for d in team_dirs:
        with api.make_client(base, tokens[d.name]) as http:
            for task, path in sorted(_find_archives(d).items()):
                acc = api.upload(http, phase="demo", task=task, archive=path)
                pending.append((d.name, task, acc["id"]))
    con.print(f"[bold]4/5[/] uploaded {len(pending)} archives over HTTP; judging …")
    return pending


def _wait_all(
    con: Console, base: str, tokens: dict[str, str], pending: list[tuple[str, int, int]]
) -> int:
    """Step 5a: wait for every submission; how many were not scored."""
    failures = 0
    for team, task, sid in pending:
        with api.make_client(base, tokens[team]) as http:
            doc = api.wait(http, sid, timeout=1800, interval=0.25)
        if doc["status"] != "scored":
            failures += 1
            msgs = "; ".join(e["message"] for e in (doc.get("errors") or [])[:3])
            con.print(f"[red]  {team} task {task}: {doc['status']}[/] {msgs}")
    return failures


def _print_leaderboards(con: Console, base: str) -> None:
    """Step 5b: the three leaderboards, read anonymously, each with its order note."""
    con.print("[bold]5/5[/] leaderboards (GET /api/v1/leaderboards/demo/{1,2,3}):\n")
    with api.make_client(base, None) as anon:
        for task in (1, 2, 3):
            board = api.leaderboard(anon, "demo", task)
            con.print(leaderboard_table(board))
            note = _order_note(board)
            if note:
                con.print(note)
            con.print()


def _serve_until_interrupted(con: Console, server: ServerThread) -> None:
    try:  # the notice inside: a signal sent as soon as it is read stops the demo here
        con.print("serving; press Ctrl-C to stop")
        while server.thread.is_alive():
            server.thread.join(0.5)
    except KeyboardInterrupt:
        con.print("\nstopping …")
