"""What every service command shares: exit codes, the settings flags, a migrated
database, error output, logging and :func:`run`, which dispatches a parsed command.

A leaf parser names its command with :func:`command`; :func:`run` calls the handler it
stored, inside the error handling all commands have in common.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_ERROR, EXIT_REJECTED = 0, 1, 2
# commands that set up logging themselves, at their own --log-level
OWN_LOGGING = ("serve", "demo", "worker")

Handler = Callable[[argparse.Namespace], int]


def command(parser: argparse.ArgumentParser, name: str, handler: Handler) -> None:
    """Make ``parser`` run ``handler`` as the command ``name`` (``args.app_command``)."""
    parser.set_defaults(func=run, app_command=name, handler=handler)


def settings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="data folder (default $HECKTOR_DATA_DIR)")
    p.add_argument("--database-url", help="SQLAlchemy URL (default $HECKTOR_DATABASE_URL)")


def load_settings(args: argparse.Namespace, **extra: Any) -> Any:
    """The service's settings with ``--data-dir``/``--database-url`` and ``extra`` applied;
    invalid settings are reported (messages only) and end the command."""
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
            err(f"invalid settings: {where + ': ' if where else ''}{msg}")
        raise SystemExit(EXIT_ERROR) from None


def open_db(settings: Any) -> Any:
    """A session factory on a migrated database."""
    from app.db.migrate import upgrade
    from app.db.session import make_engine, session_factory

    settings.ensure_dirs()
    engine = make_engine(settings.db_url)
    upgrade(engine)
    return session_factory(engine)


def err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def print_service_error(exc: Any) -> None:
    err(exc.detail)
    # a problem that only repeats the detail (a one-problem error) is not printed again
    errors = [e for e in exc.errors if e.get("message", e) != exc.detail]
    for e in errors[:50]:
        print(f"  - {e.get('message', e)}", file=sys.stderr)
    if len(errors) > 50:
        print(f"  ... and {len(errors) - 50} more", file=sys.stderr)


def setup_logging(verbose: bool, level: str = "warning") -> None:
    import logging

    lvl = logging.DEBUG if verbose else getattr(logging, level.upper())
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(lvl)
    logging.getLogger("app").setLevel(lvl)


def run(args: argparse.Namespace) -> int:
    """Run the command chosen by the parsers of :func:`app.cli.register`. Returns the
    exit code."""
    from app.errors import ServiceError

    cmd = getattr(args, "app_command", None)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        err(f"unknown command {cmd!r}")
        return EXIT_ERROR
    if cmd not in OWN_LOGGING:
        setup_logging(getattr(args, "verbose", False))
    try:
        return handler(args)
    except ServiceError as exc:
        print_service_error(exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
