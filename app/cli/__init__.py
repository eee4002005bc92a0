"""Organizer and participant commands: ``serve``, ``admin``, ``submit``, ``demo``.

``register(subparsers)`` adds them to the ``hecktor-eval`` parser (the evaluator's CLI
loads it as a plugin, never importing ``app`` directly); ``python -m app ...`` runs
them without the script. Each command group builds its own parsers: :mod:`app.cli.service`
(serve, worker, demo, admin init/migrate/purge), :mod:`app.cli.admin` (admin, admin team),
:mod:`app.cli.admin_phases` (admin phase), :mod:`app.cli.boards` (admin leaderboard,
report) and :mod:`app.cli.submit`. Each leaf parser sets ``func=run`` and its handler;
:func:`app.cli.common.run` dispatches.

Organizer commands talk to the database of the data dir directly (same settings as
the server: ``HECKTOR_DATA_DIR``, ``HECKTOR_DATABASE_URL``, or ``--data-dir`` /
``--database-url``). The participant command talks HTTP only.
"""

from __future__ import annotations

import argparse
from typing import Any

from app.cli.admin import add_admin
from app.cli.boards import add_report_command
from app.cli.common import run
from app.cli.service import add_demo, add_serve, add_worker
from app.cli.submit import add_submit


def register(subparsers: Any) -> None:
    """Add ``serve``, ``worker``, ``admin``, ``submit``, ``demo`` and ``report`` to an
    argparse subparsers object."""
    add_serve(subparsers)
    add_worker(subparsers)
    add_admin(subparsers)
    add_submit(subparsers)
    add_demo(subparsers)
    add_report_command(subparsers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app", description="hecktor-eval service commands"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run(args)
