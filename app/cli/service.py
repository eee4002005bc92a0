"""Running the service and keeping its data: ``serve``, ``worker``, ``demo`` and
``admin init|migrate|purge``."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    command,
    err,
    load_settings,
    open_db,
    settings_args,
    setup_logging,
)

if TYPE_CHECKING:
    from app.settings import Settings


# -- parsers ----------------------------------------------------------------------------
def add_data_commands(admin_subparsers: Any) -> None:
    """``admin init``, ``admin migrate`` and ``admin purge``."""
    init = admin_subparsers.add_parser(
        "init", help="create the data folder and database; print an organizer token"
    )
    init.add_argument(
        "--rotate-token",
        action="store_true",
        help="revoke stored organizer tokens, issue a new one",
    )
    command(init, "admin.init", cmd_init)

    mg = admin_subparsers.add_parser(
        "migrate", help="create or upgrade the database schema (Alembic migrations), then exit"
    )
    mg.add_argument(
        "--wait", type=float, default=30.0, help="seconds to wait for the database (default 30)"
    )
    command(mg, "admin.migrate", cmd_migrate)

    pg = admin_subparsers.add_parser(
        "purge",
        help="delete the uploads of failed submissions and dry runs older than their "
        "phase's retention_days (the service also does it every HECKTOR_RETENTION_INTERVAL s)",
    )
    pg.add_argument("--dry-run", action="store_true", help="list what would be deleted only")
    command(pg, "admin.purge", cmd_purge)


def add_serve(subparsers: Any) -> None:
    sv = subparsers.add_parser("serve", help="run the evaluation service (API + pages + judges)")
    settings_args(sv)
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--workers", type=int, help="judging processes (default: one per core)")
    sv.add_argument("--log-level", default="info", choices=("debug", "info", "warning"))
    command(sv, "serve", cmd_serve)


def add_worker(subparsers: Any) -> None:
    wk = subparsers.add_parser(
        "worker", help="run a Celery judging worker (HECKTOR_DISPATCHER=celery, PostgreSQL, Redis)"
    )
    settings_args(wk)
    wk.add_argument(
        "--concurrency",
        type=int,
        help="judging processes (default: $HECKTOR_WORKERS, else one per core)",
    )
    wk.add_argument(
        "--loglevel",
        "--log-level",
        dest="loglevel",
        default="info",
        choices=("debug", "info", "warning", "error"),
    )
    wk.add_argument("--hostname", help="node name, unique per worker (default celery@<host>)")
    wk.add_argument(
        "--takes",
        choices=("all", "predictions", "algorithms"),
        default="all",
        help="which submissions this worker judges: prediction archives (queue "
        "$HECKTOR_CELERY_QUEUE), algorithm containers (queue $HECKTOR_ALGORITHM_QUEUE; "
        "needs podman or docker) or all (default: algorithms too when a runtime works)",
    )
    command(wk, "worker", cmd_worker)


def add_demo(subparsers: Any) -> None:
    dm = subparsers.add_parser(
        "demo", help="synthetic challenge end to end: serve, submit over HTTP, print leaderboards"
    )
    dm.add_argument("--out", type=Path, default=Path("demo-data"), help="demo folder")
    dm.add_argument(
        "--challenge", type=Path, help="existing synthetic challenge (default: generate)"
    )
    dm.add_argument("--host", default="127.0.0.1")
    dm.add_argument("--port", type=int, default=8000)
    dm.add_argument("--cases", type=int, default=None, help="patients (default: synth's small)")
    dm.add_argument("--seed", type=int, default=0)
    dm.add_argument("--workers", type=int, help="judging processes (default: one per core)")
    dm.add_argument("--exit", action="store_true", help="exit after printing (also DEMO_EXIT=1)")
    command(dm, "demo", cmd_demo)


# -- commands ---------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app

    setup_logging(getattr(args, "verbose", False), args.log_level)
    settings = load_settings(args, workers=args.workers)
    app = create_app(settings)
    print(f"hecktor-eval: serving http://{args.host}:{args.port}/ (data in {settings.data_dir})")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return EXIT_OK


def worker_queues(settings: Settings, takes: str) -> list[str]:
    """The queues a worker listens on; algorithms only where a container runtime works
    (said on stderr when it does not)."""
    if takes == "predictions":
        return [settings.celery_queue]
    from app.algorithms.runtime import RuntimeUnavailable, detect_runtime

    try:
        runtime = detect_runtime(settings.container_runtime)
    except RuntimeUnavailable as exc:
        if takes == "algorithms":
            raise SystemExit(f"hecktor-eval worker: error: {exc}") from None
        err(f"this worker judges no algorithm submissions: {exc}")
        return [settings.celery_queue]
    print(f"hecktor-eval worker: algorithm containers run with {runtime.name}", flush=True)
    queues = [settings.algorithm_queue]
    return queues if takes == "algorithms" else [settings.celery_queue, *queues]


def cmd_worker(args: argparse.Namespace) -> int:
    from app.jobs.celery_app import make_celery_app
    from app.jobs.celery_dispatcher import require_postgresql
    from app.jobs.judge_cache import preload_scorer

    setup_logging(getattr(args, "verbose", False), args.loglevel)
    settings = load_settings(args)
    try:
        require_postgresql(settings)
    except RuntimeError as exc:
        err(str(exc))
        return EXIT_ERROR
    preload_scorer()  # once, before the pool forks: every judging process starts warm
    celery = make_celery_app(settings)
    argv = [
        "worker",
        "--pool=prefork",
        f"--concurrency={args.concurrency or settings.n_workers}",
        f"--loglevel={args.loglevel.upper()}",
        f"--queues={','.join(worker_queues(settings, args.takes))}",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    celery.worker_main(argv)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from app.cli.demo import run_demo

    exit_after = args.exit or os.environ.get("DEMO_EXIT", "") not in ("", "0", "false", "no")
    t0 = time.monotonic()
    return run_demo(
        out=args.out,
        challenge=args.challenge,
        host=args.host,
        port=args.port,
        n_cases=args.cases,
        seed=args.seed,
        workers=args.workers,
        exit_after=exit_after,
        started=t0,
    )


def cmd_init(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from app.db.models import ApiToken
    from app.security import ORGANIZER
    from app.services.teams import init_organizer_token

    settings = load_settings(args)
    sf = open_db(settings)
    with sf() as s:
        existing = s.scalars(
            select(ApiToken).where(ApiToken.role == ORGANIZER, ApiToken.revoked_at.is_(None))
        ).first()
        print(f"data folder: {settings.data_dir}")
        print(f"database:    {settings.db_url_display}")
        if existing is not None and not args.rotate_token:
            print(
                "already initialised; an organizer token exists (use --rotate-token for a new one)"
            )
            return EXIT_OK
        token = init_organizer_token(s)
        s.commit()
    print("organizer token (shown once; store it, e.g. as HECKTOR_ORGANIZER_TOKEN for clients):")
    print(token)
    return EXIT_OK


def _wait_for_database(engine: Any, wait: float) -> bool:
    """Whether the database answers within ``wait`` seconds (polled once a second)."""
    from sqlalchemy.exc import OperationalError

    deadline = time.monotonic() + max(0.0, wait)
    while True:
        try:
            with engine.connect():
                return True
        except OperationalError as exc:
            if time.monotonic() >= deadline:
                err(f"cannot reach the database: {exc}")
                return False
            time.sleep(1.0)


def cmd_migrate(args: argparse.Namespace) -> int:
    from alembic.runtime.migration import MigrationContext

    from app.db.migrate import upgrade
    from app.db.session import make_engine

    settings = load_settings(args)
    settings.ensure_dirs()
    engine = make_engine(settings.db_url)
    try:
        if not _wait_for_database(engine, args.wait):
            return EXIT_ERROR
        upgrade(engine)
        with engine.connect() as conn:
            rev = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    print(f"database {engine.url.render_as_string(hide_password=True)} at revision {rev}")
    return EXIT_OK


def _print_purged(report: Any, verb: str) -> None:
    from evaluator.io.sizes import human_size

    for p in report.purged:
        kind = "dry run" if p.dry_run else "failed submission"
        ended = p.ended_at.isoformat(timespec="seconds").replace("+00:00", "Z")
        print(
            f"  {verb} {p.path}: {kind} {p.submission_id} of team {p.team!r}, phase "
            f"{p.phase!r}, task {p.task} ({p.status}, ended {ended}, "
            f"{human_size(p.size_bytes)})"
        )
    for sid, reason in report.failed:
        err(f"submission {sid}: upload not deleted: {reason}")


def cmd_purge(args: argparse.Namespace) -> int:
    from app.jobs.retention import purge
    from evaluator.io.sizes import human_size

    settings = load_settings(args)
    sessions = open_db(settings)
    verb = "would delete" if args.dry_run else "deleted"
    total, size, kept = 0, 0, 0
    limit = 1_000_000 if args.dry_run else settings.retention_batch
    while True:  # passes of retention_batch uploads until none is due
        report = purge(sessions, settings, limit=limit, dry_run=args.dry_run)
        _print_purged(report, verb)
        total += len(report.purged)
        size += report.bytes
        kept += len(report.failed)
        if args.dry_run or not report.more or not report.purged:
            break
    print(
        f"{verb} {total} upload(s) of failed submissions and dry runs past their phase's "
        f"retention ({human_size(size)})"
    )
    return EXIT_ERROR if kept else EXIT_OK
