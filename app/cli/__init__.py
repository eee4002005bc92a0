"""Organizer and participant commands: ``serve``, ``admin``, ``submit``, ``demo``.

``register(subparsers)`` adds them to the ``hecktor-eval`` parser (the evaluator's CLI
loads it as a plugin, never importing ``app`` directly); ``python -m app ...`` runs
them without the script. Each subcommand sets ``func=run``; ``run(args)`` dispatches.

Organizer commands talk to the database of the data dir directly (same settings as
the server: ``HECKTOR_DATA_DIR``, ``HECKTOR_DATABASE_URL``, or ``--data-dir`` /
``--database-url``). The participant command talks HTTP only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_ERROR, EXIT_REJECTED = 0, 1, 2
log = logging.getLogger(__name__)


# -- parser -----------------------------------------------------------------------------
def _settings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="data folder (default $HECKTOR_DATA_DIR)")
    p.add_argument("--database-url", help="SQLAlchemy URL (default $HECKTOR_DATABASE_URL)")


def _tasks(text: str) -> list[int]:
    try:
        tasks = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tasks takes e.g. 1,2,3, not {text!r}") from None
    if not tasks or any(t not in (1, 2, 3) for t in tasks):
        raise argparse.ArgumentTypeError(f"--tasks takes tasks among 1,2,3, not {text!r}")
    return tasks


def register(subparsers: Any) -> None:
    """Add ``serve``, ``admin``, ``submit`` and ``demo`` to an argparse subparsers object."""
    sv = subparsers.add_parser("serve", help="run the evaluation service (API + pages + judges)")
    _settings_args(sv)
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--workers", type=int, help="judging processes (default: one per core)")
    sv.add_argument("--log-level", default="info", choices=("debug", "info", "warning"))
    sv.set_defaults(func=run, app_command="serve")

    wk = subparsers.add_parser(
        "worker", help="run a Celery judging worker (HECKTOR_DISPATCHER=celery, PostgreSQL, Redis)"
    )
    _settings_args(wk)
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
    wk.set_defaults(func=run, app_command="worker")

    ad = subparsers.add_parser("admin", help="organizer operations on the service's database")
    _settings_args(ad)
    ads = ad.add_subparsers(dest="admin_command", required=True)

    init = ads.add_parser(
        "init", help="create the data folder and database; print an organizer token"
    )
    init.add_argument(
        "--rotate-token",
        action="store_true",
        help="revoke stored organizer tokens, issue a new one",
    )
    init.set_defaults(func=run, app_command="admin.init")

    mg = ads.add_parser(
        "migrate", help="create or upgrade the database schema (Alembic migrations), then exit"
    )
    mg.add_argument(
        "--wait", type=float, default=30.0, help="seconds to wait for the database (default 30)"
    )
    mg.set_defaults(func=run, app_command="admin.migrate")

    pg = ads.add_parser(
        "purge",
        help="delete the uploads of failed submissions and dry runs older than their "
        "phase's retention_days (the service also does it every HECKTOR_RETENTION_INTERVAL s)",
    )
    pg.add_argument("--dry-run", action="store_true", help="list what would be deleted only")
    pg.set_defaults(func=run, app_command="admin.purge")

    ph = ads.add_parser("phase", help="create, open, close, re-score phases")
    phs = ph.add_subparsers(dest="phase_command", required=True)
    pc = phs.add_parser("create", help="create a phase and import its ground truth")
    pc.add_argument("--name", required=True)
    pc.add_argument(
        "--ground-truth", type=Path, required=True, help="folder with 'Task 1', 'Task 2', 'Task 3'"
    )
    pc.add_argument("--tasks", type=_tasks, default=[1, 2, 3], help="e.g. 1,2,3 (default)")
    pc.add_argument("--title", default="")
    pc.add_argument(
        "--hidden", action="store_true", help="teams see status and errors, never scores"
    )
    lb = pc.add_mutually_exclusive_group()
    lb.add_argument(
        "--public-leaderboard",
        dest="leaderboard_public",
        action="store_true",
        default=None,
        help="leaderboard readable by anyone (default unless --hidden)",
    )
    lb.add_argument(
        "--private-leaderboard",
        dest="leaderboard_public",
        action="store_false",
        help="leaderboard for organizers only (default with --hidden)",
    )
    pc.add_argument("--daily-limit", type=int, help="submissions per team, task and 24 h")
    pc.add_argument("--selection", choices=("best", "latest"), default="best")
    pc.add_argument("--protocol", type=Path, help="protocol JSON (default: hecktor2025)")
    pc.add_argument("--closed", action="store_true", help="create it closed")
    _phase_setting_flags(pc)
    pc.set_defaults(func=run, app_command="admin.phase.create")
    pup = phs.add_parser(
        "update", help="change a phase's settings (visibility, limits, allowances, retention)"
    )
    pup.add_argument("name")
    pup.add_argument("--title")
    pup.add_argument("--daily-limit", type=int, help="submissions per team, task and 24 h")
    pup.add_argument("--selection", choices=("best", "latest"))
    vis = pup.add_mutually_exclusive_group()
    vis.add_argument("--hidden", dest="hidden", action="store_true", default=None)
    vis.add_argument("--visible", dest="hidden", action="store_false", help="scores visible")
    lbu = pup.add_mutually_exclusive_group()
    lbu.add_argument(
        "--public-leaderboard", dest="leaderboard_public", action="store_true", default=None
    )
    lbu.add_argument("--private-leaderboard", dest="leaderboard_public", action="store_false")
    _phase_setting_flags(pup)
    pup.set_defaults(func=run, app_command="admin.phase.update")
    for verb in ("open", "close"):
        pv = phs.add_parser(verb, help=f"{verb} a phase for submissions")
        pv.add_argument("name")
        pv.set_defaults(func=run, app_command=f"admin.phase.{verb}")
    pr = phs.add_parser("rescore", help="queue every finished submission of a phase again")
    pr.add_argument("name")
    pr.add_argument("--task", type=int, choices=(1, 2, 3))
    pr.add_argument(
        "--run", action="store_true", help="judge them in this process now (no server needed)"
    )
    pr.set_defaults(func=run, app_command="admin.phase.rescore")
    pl = phs.add_parser("list", help="list phases")
    pl.set_defaults(func=run, app_command="admin.phase.list")
    pf = phs.add_parser(
        "freeze", help="freeze a phase's leaderboards (served unchanged until unfrozen)"
    )
    pf.add_argument("--name", required=True)
    pf.add_argument("--refreeze", action="store_true", help="replace the current snapshot")
    pf.add_argument("--force", action="store_true", help="even while submissions are judged")
    pf.add_argument("--note", default="", help="stored with the snapshot")
    pf.add_argument("--resamples", type=int, help="bootstrap resamples (default: the phase's)")
    pf.add_argument("--seed", type=int, help="bootstrap seed (default: the phase's)")
    pf.set_defaults(func=run, app_command="admin.phase.freeze")
    pu = phs.add_parser("unfreeze", help="serve a phase's live leaderboards again")
    pu.add_argument("--name", required=True)
    pu.set_defaults(func=run, app_command="admin.phase.unfreeze")

    tm = ads.add_parser("team", help="create teams and their tokens")
    tms = tm.add_subparsers(dest="team_command", required=True)
    tc = tms.add_parser("create", help="create a team; its token is the last line of stdout")
    tc.add_argument("--name", required=True)
    tc.set_defaults(func=run, app_command="admin.team.create")
    tt = tms.add_parser("token", help="revoke a team's tokens and print a new one")
    tt.add_argument("--name", required=True)
    tt.set_defaults(func=run, app_command="admin.team.token")
    tl = tms.add_parser("list", help="list teams")
    tl.set_defaults(func=run, app_command="admin.team.list")

    lbp = ads.add_parser("leaderboard", help="show or export a leaderboard")
    lbs = lbp.add_subparsers(dest="leaderboard_command", required=True)
    le = lbs.add_parser("export", help="write a leaderboard as CSV")
    le.add_argument("--phase", required=True)
    le.add_argument("--task", type=int, choices=(1, 2, 3), required=True)
    le.add_argument("--output", type=Path, required=True, help="CSV file ('-' for stdout)")
    le.add_argument("--selection", choices=("best", "latest"))
    le.add_argument(
        "--per-center",
        action="store_true",
        help="one line per team and centre, every metric per centre",
    )
    le.add_argument("--live", action="store_true", help="the live board of a frozen phase")
    le.set_defaults(func=run, app_command="admin.leaderboard.export")
    ls = lbs.add_parser("show", help="print a leaderboard")
    ls.add_argument("--phase", required=True)
    ls.add_argument("--task", type=int, choices=(1, 2, 3), required=True)
    ls.add_argument("--selection", choices=("best", "latest"))
    ls.add_argument("--live", action="store_true", help="the live board of a frozen phase")
    ls.set_defaults(func=run, app_command="admin.leaderboard.show")

    sb = subparsers.add_parser("submit", help="upload a prediction archive and wait for its score")
    sb.add_argument("--server", default=os.environ.get("HECKTOR_SERVER", "http://127.0.0.1:8000"))
    sb.add_argument(
        "--token",
        default=os.environ.get("HECKTOR_TOKEN"),
        help="team token (default $HECKTOR_TOKEN)",
    )
    sb.add_argument("--phase", required=True)
    sb.add_argument("--task", type=int, choices=(1, 2, 3), required=True)
    sb.add_argument("--dry-run", action="store_true", help="validate only; uses no quota")
    sb.add_argument("--no-wait", action="store_true", help="print the submission id and return")
    sb.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the result")
    sb.add_argument("--json", action="store_true", help="print the final status document as JSON")
    sb.add_argument("archive", type=Path)
    sb.set_defaults(func=run, app_command="submit")

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
    dm.set_defaults(func=run, app_command="demo")

    rp = subparsers.add_parser(
        "report",
        help="write a phase's report (leaderboards, intervals, plots) as one HTML file",
    )
    _settings_args(rp)
    rp.add_argument("--phase", required=True)
    rp.add_argument(
        "--output", type=Path, help="HTML file (default report-<phase>.html; '-' for stdout)"
    )
    rp.add_argument("--resamples", type=int, help="bootstrap resamples (default: the phase's)")
    rp.add_argument("--seed", type=int, help="bootstrap seed (default: the phase's)")
    rp.add_argument(
        "--live", action="store_true", help="the live leaderboards even if the phase is frozen"
    )
    rp.set_defaults(func=run, app_command="report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app", description="hecktor-eval service commands"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    return parser


# -- helpers ----------------------------------------------------------------------------
def _settings(args: argparse.Namespace, **extra: Any) -> Any:
    from pydantic import ValidationError

    from app.settings import Settings

    overrides: dict[str, Any] = {k: v for k, v in extra.items() if v is not None}
    if getattr(args, "data_dir", None) is not None:
        overrides["data_dir"] = args.data_dir
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    try:
        return Settings(**overrides)
    except ValidationError as exc:  # the messages only: the input may hold secrets
        for e in exc.errors():
            where = ".".join(f"HECKTOR_{x}".upper() for x in e.get("loc", ()))
            msg = str(e.get("msg", "")).removeprefix("Value error, ")
            _err(f"invalid settings: {where + ': ' if where else ''}{msg}")
        raise SystemExit(EXIT_ERROR) from None


def _db(settings: Any) -> Any:
    """A session factory on a migrated database."""
    from app.db.migrate import upgrade
    from app.db.session import make_engine, session_factory

    settings.ensure_dirs()
    engine = make_engine(settings.db_url)
    upgrade(engine)
    return session_factory(engine)


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def _print_service_error(exc: Any) -> None:
    _err(exc.detail)
    for e in exc.errors[:50]:
        print(f"  - {e.get('message', e)}", file=sys.stderr)
    if len(exc.errors) > 50:
        print(f"  ... and {len(exc.errors) - 50} more", file=sys.stderr)


def _logging(verbose: bool, level: str = "warning") -> None:
    lvl = logging.DEBUG if verbose else getattr(logging, level.upper())
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(lvl)
    logging.getLogger("app").setLevel(lvl)


# -- commands ---------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    """Run the command chosen by ``register``'s parsers. Returns the exit code."""
    from app.errors import ServiceError

    cmd = getattr(args, "app_command", None)
    handlers = {
        "serve": cmd_serve,
        "worker": cmd_worker,
        "admin.migrate": cmd_migrate,
        "admin.purge": cmd_purge,
        "admin.init": cmd_init,
        "admin.phase.create": cmd_phase_create,
        "admin.phase.update": cmd_phase_update,
        "admin.phase.open": cmd_phase_open_close,
        "admin.phase.close": cmd_phase_open_close,
        "admin.phase.rescore": cmd_phase_rescore,
        "admin.phase.list": cmd_phase_list,
        "admin.team.create": cmd_team_create,
        "admin.team.token": cmd_team_token,
        "admin.team.list": cmd_team_list,
        "admin.leaderboard.export": cmd_leaderboard_export,
        "admin.leaderboard.show": cmd_leaderboard_show,
        "admin.phase.freeze": cmd_phase_freeze,
        "admin.phase.unfreeze": cmd_phase_unfreeze,
        "report": cmd_report,
        "submit": cmd_submit,
        "demo": cmd_demo,
    }
    handler = handlers.get(cmd or "")
    if handler is None:
        _err(f"unknown command {cmd!r}")
        return EXIT_ERROR
    if cmd not in ("serve", "demo", "worker"):
        _logging(getattr(args, "verbose", False))
    try:
        return handler(args)
    except ServiceError as exc:
        _print_service_error(exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.jobs.runner import test_hooks_problem
    from app.main import create_app

    _logging(getattr(args, "verbose", False), args.log_level)
    settings = _settings(args, workers=args.workers)
    if (why := test_hooks_problem(settings)) is not None:
        _err(why)
        return EXIT_ERROR
    app = create_app(settings)
    print(f"hecktor-eval: serving http://{args.host}:{args.port}/ (data in {settings.data_dir})")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from app.jobs.celery_app import make_celery_app
    from app.jobs.celery_dispatcher import require_postgresql
    from app.jobs.runner import test_hooks_problem

    _logging(getattr(args, "verbose", False), args.loglevel)
    settings = _settings(args)
    if (why := test_hooks_problem(settings)) is not None:
        _err(why)
        return EXIT_ERROR
    try:
        require_postgresql(settings)
    except RuntimeError as exc:
        _err(str(exc))
        return EXIT_ERROR
    for mod in ("evaluator.scoring", "evaluator.task1", "evaluator.tabular"):
        __import__(mod)  # once, before the pool forks: every judging process starts warm
    celery = make_celery_app(settings)
    argv = [
        "worker",
        "--pool=prefork",
        f"--concurrency={args.concurrency or settings.n_workers}",
        f"--loglevel={args.loglevel.upper()}",
        f"--queues={settings.celery_queue}",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    celery.worker_main(argv)
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.exc import OperationalError

    from app.db.migrate import upgrade
    from app.db.session import make_engine

    settings = _settings(args)
    settings.ensure_dirs()
    engine = make_engine(settings.db_url)
    deadline = time.monotonic() + max(0.0, args.wait)
    try:
        while True:
            try:
                with engine.connect():
                    break
            except OperationalError as exc:
                if time.monotonic() >= deadline:
                    _err(f"cannot reach the database: {exc}")
                    return EXIT_ERROR
                time.sleep(1.0)
        upgrade(engine)
        with engine.connect() as conn:
            rev = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    print(f"database {engine.url.render_as_string(hide_password=True)} at revision {rev}")
    return EXIT_OK


def cmd_purge(args: argparse.Namespace) -> int:
    from app.jobs.retention import purge
    from app.storage import human_size

    settings = _settings(args)
    sessions = _db(settings)
    verb = "would delete" if args.dry_run else "deleted"
    total, size, kept = 0, 0, 0
    limit = 1_000_000 if args.dry_run else settings.retention_batch
    while True:  # passes of retention_batch uploads until none is due
        report = purge(sessions, settings, limit=limit, dry_run=args.dry_run)
        for p in report.purged:
            kind = "dry run" if p.dry_run else "failed submission"
            ended = p.ended_at.isoformat(timespec="seconds").replace("+00:00", "Z")
            print(
                f"  {verb} {p.path}: {kind} {p.submission_id} of team {p.team!r}, phase "
                f"{p.phase!r}, task {p.task} ({p.status}, ended {ended}, "
                f"{human_size(p.size_bytes)})"
            )
        for sid, reason in report.failed:
            _err(f"submission {sid}: upload not deleted: {reason}")
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


def cmd_init(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from app.db.models import ApiToken
    from app.security import ORGANIZER
    from app.services.teams import init_organizer_token

    settings = _settings(args)
    sf = _db(settings)
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


def cmd_phase_create(args: argparse.Namespace) -> int:
    from app.services.phases import create_phase, phase_detail
    from evaluator.protocol import Protocol

    settings = _settings(args)
    protocol = None
    if args.protocol:
        try:
            protocol = Protocol.load(args.protocol)
        except (OSError, ValueError) as exc:
            _err(f"cannot use protocol file {args.protocol}: {exc}")
            return EXIT_ERROR
    sf = _db(settings)
    with sf() as s:
        phase = create_phase(
            s,
            settings,
            name=args.name,
            ground_truth=args.ground_truth,
            tasks=args.tasks,
            title=args.title,
            hidden=args.hidden,
            leaderboard_public=args.leaderboard_public,
            daily_limit=args.daily_limit,
            selection=args.selection,
            is_open=not args.closed,
            protocol=protocol,
            **_phase_settings(args),
        )
        s.commit()
        d = phase_detail(phase)
    print(
        f"phase {d['name']!r} created ({'open' if d['is_open'] else 'closed'}, "
        f"{'scores hidden' if d['hidden'] else 'scores visible'}, leaderboard "
        f"{'public' if d['leaderboard_public'] else 'organizers only'}, "
        f"{d['daily_limit']} per team, task and 24 h, {d['selection']} per team)"
    )
    print(
        f"  per-case rows for teams: {d['case_rows']}; centres under {d['min_center_cases']} "
        f"cases withheld from teams; dry runs {d['dry_run_limit']}, failed "
        f"{d['failed_limit']} per team, task and 24 h; failed uploads and dry runs kept "
        f"{d['retention_days']} day(s)"
    )
    for t in d["task_details"]:
        print(
            f"  task {t['task']}: {t['n_cases']} cases, ground truth {t['ground_truth_sha256'][:16]}…, "
            f"protocol {t['protocol']['name']} {t['protocol']['version']} {t['protocol_sha256'][:16]}…"
        )
    return EXIT_OK


def _phase_setting_flags(parser: argparse.ArgumentParser) -> None:
    """``--case-rows``, ``--min-center-cases``, the dry-run and failed-submission
    allowances and ``--retention-days`` (unset: the default, or unchanged)."""
    parser.add_argument(
        "--case-rows",
        choices=("scores", "none"),
        help="per-case rows teams see: their predictions and per-case scores (scores, the "
        "default) or none (aggregate scores only; recommended for test phases)",
    )
    parser.add_argument(
        "--min-center-cases",
        type=int,
        help="centres with fewer cases are shown to organizers only (default 5)",
    )
    parser.add_argument("--dry-run-limit", type=int, help="dry runs per team, task, 24 h (20)")
    parser.add_argument(
        "--dry-run-bytes", type=int, help="dry-run bytes per team, task, 24 h (8 GiB)"
    )
    parser.add_argument(
        "--failed-limit", type=int, help="failed submissions per team, task, 24 h (10)"
    )
    parser.add_argument("--failed-bytes", type=int, help="failed bytes per team, task, 24 h")
    parser.add_argument(
        "--retention-days", type=int, help="days failed uploads and dry runs are kept (7)"
    )


def _phase_settings(args: argparse.Namespace) -> dict[str, Any]:
    from app.services.phases import PHASE_SETTINGS

    return {k: getattr(args, k) for k in PHASE_SETTINGS if getattr(args, k, None) is not None}


def cmd_phase_update(args: argparse.Namespace) -> int:
    from app.services.phases import phase_detail, update_phase

    changes = {
        k: getattr(args, k)
        for k in ("title", "daily_limit", "selection", "hidden", "leaderboard_public")
        if getattr(args, k, None) is not None
    }
    changes.update(_phase_settings(args))
    if not changes:
        _err("nothing to change: give at least one setting, e.g. --case-rows none")
        return EXIT_ERROR
    with _db(_settings(args))() as s:
        phase = update_phase(s, args.name, **changes)
        s.commit()
        d = phase_detail(phase)
    print(f"phase {d['name']!r} updated:")
    for k in sorted(changes):
        print(f"  {k} = {d[k]}")
    return EXIT_OK


def cmd_phase_open_close(args: argparse.Namespace) -> int:
    from app.services.phases import update_phase

    settings = _settings(args)
    is_open = args.app_command.endswith(".open")
    with _db(settings)() as s:
        update_phase(s, args.name, is_open=is_open)
        s.commit()
    print(f"phase {args.name!r} is {'open' if is_open else 'closed'}")
    return EXIT_OK


def cmd_phase_rescore(args: argparse.Namespace) -> int:
    from app.services.submissions import rescore

    settings = _settings(args)
    with _db(settings)() as s:
        ids = rescore(s, args.name, args.task)
        s.commit()
    print(f"queued {len(ids)} submission(s) of phase {args.name!r} for re-scoring")
    if not ids:
        return EXIT_OK
    if not args.run and settings.dispatcher == "celery":
        from app.jobs.celery_dispatcher import CeleryDispatcher

        d = CeleryDispatcher(settings)
        for sid in ids:
            d.submit(sid)
        if d.unsent:
            _err(f"could not publish {len(d.unsent)} job(s); the server sends them at its start")
            return EXIT_ERROR
        print(f"published {len(ids)} job(s) to the Celery workers")
        return EXIT_OK
    if not args.run:
        print("a running server picks them up within its sweep interval (or at its next start)")
        return EXIT_OK
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from app.jobs.runner import run_job

    with ProcessPoolExecutor(max_workers=settings.n_workers) as pool:
        futs = {pool.submit(run_job, sid, settings.to_dict()): sid for sid in ids}
        for fut in as_completed(futs):
            print(f"  submission {futs[fut]}: {fut.result()}")
    return EXIT_OK


def cmd_phase_list(args: argparse.Namespace) -> int:
    from app.services.phases import list_phases, phase_public

    with _db(_settings(args))() as s:
        for p in list_phases(s):
            d = phase_public(p)
            print(
                f"{d['name']}\t{'open' if d['is_open'] else 'closed'}\ttasks "
                f"{','.join(map(str, d['tasks']))}\t{'hidden' if d['hidden'] else 'visible'}"
                f"\tleaderboard {'public' if d['leaderboard_public'] else 'organizers'}"
            )
    return EXIT_OK


def cmd_team_create(args: argparse.Namespace) -> int:
    from app.services.teams import create_team

    with _db(_settings(args))() as s:
        team, token = create_team(s, args.name)
        s.commit()
        print(f"team {team.name!r} created (id {team.id}); its token, shown once:")
    print(token)
    return EXIT_OK


def cmd_team_token(args: argparse.Namespace) -> int:
    from app.services.teams import rotate_team_token

    with _db(_settings(args))() as s:
        token = rotate_team_token(s, args.name)
        s.commit()
    print(f"team {args.name!r}: earlier tokens revoked; the new token, shown once:")
    print(token)
    return EXIT_OK


def cmd_team_list(args: argparse.Namespace) -> int:
    from app.services.teams import list_teams

    with _db(_settings(args))() as s:
        for t in list_teams(s):
            print(f"{t['name']}\t{t['submissions']} submission(s)")
    return EXIT_OK


def _board(args: argparse.Namespace) -> dict[str, Any]:
    from app.security import ORGANIZER_PRINCIPAL
    from app.services.leaderboards import leaderboard

    with _db(_settings(args))() as s:
        return leaderboard(
            s,
            args.phase,
            args.task,
            ORGANIZER_PRINCIPAL,
            selection=args.selection,
            live=getattr(args, "live", False),
        )


def cmd_leaderboard_export(args: argparse.Namespace) -> int:
    from app.services.exports import leaderboard_csv
    from app.storage import atomic_write_text

    if getattr(args, "per_center", False):
        return _export_per_center(args)
    board = _board(args)
    text = leaderboard_csv(args.task, board["rows"])
    if str(args.output) == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(args.output, text)
        print(f"wrote {len(board['rows'])} row(s) to {args.output}")
    return EXIT_OK


def cmd_leaderboard_show(args: argparse.Namespace) -> int:
    from app.cli.console import console, leaderboard_table

    console().print(leaderboard_table(_board(args)))
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TransferSpeedColumn,
    )

    from app.cli import client as api
    from app.cli.console import console, errors_table, metrics_table

    out = console()
    err = console(stderr=True)
    if not args.token:
        _err("a team token is needed: --token or $HECKTOR_TOKEN")
        return EXIT_ERROR
    if not args.archive.is_file():
        _err(f"{args.archive}: no such file")
        return EXIT_ERROR
    show = sys.stderr.isatty() and not args.json
    try:
        with api.make_client(args.server, args.token) as http:
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=err,
                disable=not show,
            ) as bar:
                t = bar.add_task(
                    f"uploading {args.archive.name}", total=args.archive.stat().st_size
                )
                accepted = api.upload(
                    http,
                    phase=args.phase,
                    task=args.task,
                    archive=args.archive,
                    dry_run=args.dry_run,
                    progress=lambda done, total: bar.update(t, completed=done, total=total),
                )
            sid = accepted["id"]
            err.print(
                f"submission {sid} accepted ({'dry run, ' if args.dry_run else ''}"
                f"sha256 {accepted['sha256'][:16]}…), queued"
            )
            if args.no_wait:
                print(sid)
                return EXIT_OK
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                console=err,
                disable=not show,
            ) as bar:
                t = bar.add_task("judging", total=None)
                doc = api.wait(
                    http,
                    sid,
                    timeout=args.timeout,
                    progress=lambda d, n: bar.update(t, completed=d, total=n or None),
                )
    except api.ApiError as exc:
        _err(exc.detail)
        for e in exc.errors:
            if e.get("message") and e.get("message") != exc.detail:
                print(
                    f"  - {str(e['case']) + ': ' if e.get('case') else ''}{e['message']}",
                    file=sys.stderr,
                )
        return EXIT_REJECTED if exc.status in (400, 413, 415, 422) else EXIT_ERROR
    except (TimeoutError, OSError) as exc:
        _err(str(exc))
        return EXIT_ERROR
    except Exception as exc:  # httpx transport errors
        _err(f"cannot reach {args.server}: {exc}")
        return EXIT_ERROR
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    status = doc["status"]
    if status == "failed":
        if not args.json:
            out.print(errors_table(doc.get("errors") or []))
        return EXIT_REJECTED
    if not args.json:
        if status == "valid":
            out.print(f"submission {doc['id']}: valid — every check passed; nothing was scored")
        elif doc.get("scores_hidden"):
            out.print(f"submission {doc['id']}: scored; the scores of this phase are hidden")
        else:
            metrics = (doc.get("result") or {}).get("metrics") or {}
            out.print(metrics_table(metrics, title=f"Submission {doc['id']} · task {doc['task']}"))
            out.print(f"per-case results: {args.server.rstrip('/')}/submissions/{doc['id']}")
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


def _export_per_center(args: argparse.Namespace) -> int:
    from app.security import ORGANIZER_PRINCIPAL
    from app.services.board_analysis import leaderboard_centers
    from app.services.exports import per_center_csv
    from app.storage import atomic_write_text

    with _db(_settings(args))() as s:
        doc = leaderboard_centers(
            s, args.phase, args.task, ORGANIZER_PRINCIPAL, selection=args.selection, live=args.live
        )
    text = per_center_csv(args.task, doc["rows"])
    if str(args.output) == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(args.output, text)
        print(
            f"wrote the per-centre results of {len(doc['rows'])} row(s), "
            f"{len(doc['centers'])} centre(s) to {args.output}"
        )
    return EXIT_OK


def cmd_phase_freeze(args: argparse.Namespace) -> int:
    from app.services.freeze import freeze_phase_commit

    with _db(_settings(args))() as s:
        created = freeze_phase_commit(
            s,
            args.name,
            refreeze=args.refreeze,
            force=args.force,
            note=args.note,
            n_resamples=args.resamples,
            seed=args.seed,
        )
        print(f"phase {args.name!r}: leaderboards frozen")
        for snap in created:
            analysis = snap.analysis or {}
            print(
                f"  task {snap.task}: {len(snap.board.get('rows', []))} row(s), "
                f"{analysis.get('n_resamples', 0)} resamples (seed {analysis.get('seed', 0)}), "
                f"snapshot {snap.content_sha256[:16]}…"
            )
    return EXIT_OK


def cmd_phase_unfreeze(args: argparse.Namespace) -> int:
    from app.services.freeze import unfreeze_phase

    with _db(_settings(args))() as s:
        done = unfreeze_phase(s, args.name)
        s.commit()
    print(f"phase {args.name!r}: unfrozen ({len(done)} snapshot(s) kept as history)")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from app.report.phase_report import build_phase_report
    from app.storage import atomic_write_text

    with _db(_settings(args))() as s:
        html = build_phase_report(
            s, args.phase, live=args.live, n_resamples=args.resamples, seed=args.seed
        )
    output = args.output or Path(f"report-{args.phase}.html")
    if str(output) == "-":
        sys.stdout.write(html)
    else:
        atomic_write_text(output, html)
        print(f"wrote the report of phase {args.phase!r} to {output} ({len(html) // 1024} KiB)")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run(args)
