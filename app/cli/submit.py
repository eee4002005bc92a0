"""``submit``: the participants' client. Uploads a prediction archive over HTTP, shows
the upload and judging progress on stderr, and prints the outcome.

Exit codes: 0 scored or valid (or queued with ``--no-wait``), 2 the submission was
rejected (failed its checks, or the server refused the upload as malformed, too large or
of the wrong type), 1 anything else (a missing token or file, the phase, the quota, a server that cannot
be reached, a timeout).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from app.cli.common import EXIT_ERROR, EXIT_OK, EXIT_REJECTED, command, err

# HTTP statuses that mean the upload itself was refused
REJECTED_STATUSES = (400, 413, 415, 422)


def add_submit(subparsers: Any) -> None:
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
    command(sb, "submit", cmd_submit)


def cmd_submit(args: argparse.Namespace) -> int:
    from app.cli import client as api

    if not args.token:
        err("a team token is needed: --token or $HECKTOR_TOKEN")
        return EXIT_ERROR
    if not args.archive.is_file():
        err(f"{args.archive}: no such file")
        return EXIT_ERROR
    try:
        doc = _upload_and_wait(args)
    except api.ApiError as exc:
        return _refused(exc)
    except (TimeoutError, OSError) as exc:
        err(str(exc))
        return EXIT_ERROR
    except Exception as exc:  # httpx transport errors
        err(f"cannot reach {args.server}: {exc}")
        return EXIT_ERROR
    if doc is None:
        return EXIT_OK
    return _print_outcome(args, doc)


def _upload_and_wait(args: argparse.Namespace) -> dict[str, Any] | None:
    """Upload, then wait for the final status document (``None`` with ``--no-wait``,
    after printing the submission id)."""
    from app.cli import client as api
    from app.cli.console import console

    progress = console(stderr=True)
    show = sys.stderr.isatty() and not args.json
    with api.make_client(args.server, args.token) as http:
        accepted = _upload(http, args, progress, show)
        sid = accepted["id"]
        progress.print(
            f"submission {sid} accepted ({'dry run, ' if args.dry_run else ''}"
            f"sha256 {accepted['sha256'][:16]}…), queued"
        )
        if args.no_wait:
            print(sid)
            return None
        return _wait(http, sid, args, progress, show)


def _upload(http: Any, args: argparse.Namespace, progress: Any, show: bool) -> dict[str, Any]:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from app.cli import client as api

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=progress,
        disable=not show,
    ) as bar:
        t = bar.add_task(f"uploading {args.archive.name}", total=args.archive.stat().st_size)
        return api.upload(
            http,
            phase=args.phase,
            task=args.task,
            archive=args.archive,
            dry_run=args.dry_run,
            progress=lambda done, total: bar.update(t, completed=done, total=total),
        )


def _wait(
    http: Any, sid: int, args: argparse.Namespace, progress: Any, show: bool
) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress

    from app.cli import client as api

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        console=progress,
        disable=not show,
    ) as bar:
        t = bar.add_task("judging", total=None)
        return api.wait(
            http,
            sid,
            timeout=args.timeout,
            progress=lambda d, n: bar.update(t, completed=d, total=n or None),
        )


def _refused(exc: Any) -> int:
    """Print the server's refusal and its problems; the exit code it means."""
    err(exc.detail)
    for e in exc.errors:
        if e.get("message") and e.get("message") != exc.detail:
            print(
                f"  - {str(e['case']) + ': ' if e.get('case') else ''}{e['message']}",
                file=sys.stderr,
            )
    return EXIT_REJECTED if exc.status in REJECTED_STATUSES else EXIT_ERROR


def _print_outcome(args: argparse.Namespace, doc: dict[str, Any]) -> int:
    from app.cli.console import console, errors_table, metrics_table

    out = console()
    if args.json:
        import json

        print(json.dumps(doc, indent=2, default=str))
    status = doc["status"]
    if status == "failed":
        if not args.json:
            out.print(errors_table(doc.get("errors") or []))
        return EXIT_REJECTED
    if args.json:
        return EXIT_OK
    if status == "valid":
        out.print(f"submission {doc['id']}: valid — every check passed; nothing was scored")
    elif doc.get("scores_hidden"):
        out.print(f"submission {doc['id']}: scored; the scores of this phase are hidden")
    else:
        metrics = (doc.get("result") or {}).get("metrics") or {}
        out.print(metrics_table(metrics, title=f"Submission {doc['id']} · task {doc['task']}"))
        out.print(f"per-case results: {args.server.rstrip('/')}/submissions/{doc['id']}")
    return EXIT_OK
