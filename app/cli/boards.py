"""A phase's leaderboards as output: ``admin leaderboard export|show`` and ``report``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.common import EXIT_OK, command, load_settings, open_db, settings_args

if TYPE_CHECKING:
    from app.services.records import Board


# -- parsers ----------------------------------------------------------------------------
def add_leaderboard_commands(admin_subparsers: Any) -> None:
    lbp = admin_subparsers.add_parser("leaderboard", help="show or export a leaderboard")
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
    command(le, "admin.leaderboard.export", cmd_leaderboard_export)
    ls = lbs.add_parser("show", help="print a leaderboard")
    ls.add_argument("--phase", required=True)
    ls.add_argument("--task", type=int, choices=(1, 2, 3), required=True)
    ls.add_argument("--selection", choices=("best", "latest"))
    ls.add_argument("--live", action="store_true", help="the live board of a frozen phase")
    command(ls, "admin.leaderboard.show", cmd_leaderboard_show)


def add_report_command(subparsers: Any) -> None:
    rp = subparsers.add_parser(
        "report",
        help="write a phase's report (leaderboards, intervals, plots) as one HTML file",
    )
    settings_args(rp)
    rp.add_argument("--phase", required=True)
    rp.add_argument(
        "--output", type=Path, help="HTML file (default report-<phase>.html; '-' for stdout)"
    )
    rp.add_argument("--resamples", type=int, help="bootstrap resamples (default: the phase's)")
    rp.add_argument("--seed", type=int, help="bootstrap seed (default: the phase's)")
    rp.add_argument(
        "--live", action="store_true", help="the live leaderboards even if the phase is frozen"
    )
    command(rp, "report", cmd_report)


# -- commands ---------------------------------------------------------------------------
def _board(args: argparse.Namespace) -> Board:
    from app.security import ORGANIZER_PRINCIPAL
    from app.services.leaderboards import leaderboard

    with open_db(load_settings(args))() as s:
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
    text = leaderboard_csv(args.task, board["rows"], board.get("protocol"))
    if str(args.output) == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(args.output, text)
        print(f"wrote {len(board['rows'])} row(s) to {args.output}")
    return EXIT_OK


def _export_per_center(args: argparse.Namespace) -> int:
    from app.security import ORGANIZER_PRINCIPAL
    from app.services.board_centers import leaderboard_centers
    from app.services.exports import per_center_csv
    from app.storage import atomic_write_text

    with open_db(load_settings(args))() as s:
        doc = leaderboard_centers(
            s, args.phase, args.task, ORGANIZER_PRINCIPAL, selection=args.selection, live=args.live
        )
    text = per_center_csv(args.task, doc["rows"], protocol=doc["protocol"])
    if str(args.output) == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(args.output, text)
        print(
            f"wrote the per-centre results of {len(doc['rows'])} row(s), "
            f"{len(doc['centers'])} centre(s) to {args.output}"
        )
    return EXIT_OK


def cmd_leaderboard_show(args: argparse.Namespace) -> int:
    from app.cli.console import console, leaderboard_table

    console().print(leaderboard_table(_board(args)))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from app.report.phase_report import build_phase_report
    from app.storage import atomic_write_text

    with open_db(load_settings(args))() as s:
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
