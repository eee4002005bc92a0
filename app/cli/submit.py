"""``submit``: the participants' client. Asks the server for the phase's limits (size
cap, accepted types, quota left), checks the file against them, uploads it over HTTP,
shows the upload and judging progress on stderr, and prints the outcome. For a phase
that judges algorithms the file is a container image tarball (``docker save`` output),
with an optional ``--model`` tarball.

Exit codes: 0 scored or valid (or queued with ``--no-wait``); 2 the submission was
refused: before sending (larger than the server's limit, not a type the task accepts,
no such file), by the server (a bad token, an unknown or closed phase, the quota, a
malformed upload) or by the judge (failed its checks); 1 anything else (no token given,
a server that cannot be reached or answers with an error of its own, a timeout).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from app.cli.common import EXIT_ERROR, EXIT_OK, EXIT_REJECTED, command, err

# how many bytes of the file name its type (as the server reads them); an image
# tarball's first member is told from more
HEAD_BYTES = 512
SNIFF_BYTES = 4096


class LocalRefusal(Exception):
    """The file would be refused by the server: it is not sent."""


def add_submit(subparsers: Any) -> None:
    sb = subparsers.add_parser(
        "submit",
        help="upload a prediction archive (or an algorithm's image tarball) and wait for its score",
    )
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
    sb.add_argument(
        "--model",
        type=Path,
        metavar="FILE",
        help="algorithm phases: a .tar/.tar.gz of the model files, mounted read-only at "
        "/opt/ml/model in every case's container",
    )
    sb.add_argument(
        "archive",
        type=Path,
        help="the prediction archive or table, or for an algorithm phase the image tarball "
        "(`docker save myalgo:latest -o algo.tar`, .tar or .tar.gz)",
    )
    command(sb, "submit", cmd_submit)


def cmd_submit(args: argparse.Namespace) -> int:
    from app.cli import client as api

    if not args.token:
        err("a team token is needed: --token or $HECKTOR_TOKEN")
        return EXIT_ERROR
    if not args.archive.is_file():
        err(f"{args.archive}: no such file (give the archive or table file to upload)")
        return EXIT_REJECTED
    if args.model is not None and not args.model.is_file():
        err(f"{args.model}: no such file (give the model tarball, .tar or .tar.gz)")
        return EXIT_REJECTED
    try:
        doc = _upload_and_wait(args)
    except LocalRefusal as exc:
        err(f"{exc} Nothing was sent.")
        return EXIT_REJECTED
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
        _check_limits(http, args)
        accepted = _upload(http, args, progress, show)
        sid = accepted["id"]
        progress.print(
            f"submission {sid} accepted ({'dry run, ' if args.dry_run else ''}"
            f"sha256 {accepted['sha256'][:16]}…), queued"
        )
        if accepted.get("note"):
            progress.print(f"note: {accepted['note']}")
        if args.no_wait:
            print(sid)
            return None
        return _wait(http, sid, args, progress, show)


def _check_limits(http: Any, args: argparse.Namespace) -> None:
    """Ask the server what it accepts and refuse what it would refuse, before sending:
    its answer is the refusal (:class:`app.cli.client.ApiError`) for a bad token, an
    unknown or closed phase, the quota; the file's size and type are checked here
    against its limits. A server without the limits route is asked nothing."""
    from app.algorithms.tarball import describe_upload, sniff_image_tarball
    from app.cli import client as api
    from evaluator.io.sizes import human_size
    from evaluator.io.sniff import UnsupportedUpload, sniff_type

    size = args.archive.stat().st_size
    model_size = args.model.stat().st_size if args.model is not None else 0
    try:
        limits = api.limits(
            http, phase=args.phase, task=args.task, dry_run=args.dry_run, size=size + model_size
        )
    except api.ApiError as exc:
        if exc.status in (404, 405) and exc.detail == "Not Found":  # an older server
            return
        raise
    with open(args.archive, "rb") as f:
        head = f.read(SNIFF_BYTES)
    if sniff_image_tarball(head) is not None:
        _check_image_limits(args, limits, size, model_size)
        return
    if limits.get("max_image_bytes") is not None and limits.get("max_archive_bytes") is None:
        raise LocalRefusal(
            f"{args.archive.name}: is {describe_upload(head)}, not a container image "
            f"tarball; phase {args.phase!r} judges algorithms: save your algorithm's image "
            "with `docker save myalgo:latest -o algo.tar` and submit that."
        )
    if args.model is not None:
        raise LocalRefusal(
            f"{args.model.name}: a model goes with an algorithm's image tarball only; "
            f"{args.archive.name} is a prediction upload: submit it without --model."
        )
    cap = int(limits.get("max_archive_bytes") or limits["max_upload_bytes"])
    if size > cap:
        raise LocalRefusal(
            f"{args.archive.name}: {human_size(size)} is larger than the server's upload "
            f"limit of {human_size(cap)}. Upload only the predictions (no images, no "
            "model files), or ask the organizers."
        )
    try:
        sniff_type(head[:HEAD_BYTES], args.task)
    except UnsupportedUpload as exc:
        raise LocalRefusal(f"{args.archive.name}: {exc.message}") from None


def _check_image_limits(
    args: argparse.Namespace, limits: dict[str, Any], size: int, model_size: int
) -> None:
    """An image tarball (and model) against an algorithm phase's limits. A server that
    does not state image limits is left to decide."""
    from evaluator.io.sizes import human_size
    from evaluator.io.sniff import archive_kind

    if "kind" not in limits:
        return
    image_cap = limits.get("max_image_bytes")
    if image_cap is None:
        raise LocalRefusal(
            f"{args.archive.name}: is a container image tarball; phase {args.phase!r} takes "
            "prediction archives and tables, not algorithms: submit your predictions."
        )
    if size > int(image_cap):
        raise LocalRefusal(
            f"{args.archive.name}: {human_size(size)} is larger than the phase's image limit "
            f"of {human_size(int(image_cap))}; make the image smaller (a slimmer base, no "
            "build caches, no data baked in)."
        )
    if args.model is None:
        return
    model_cap = int(limits.get("max_model_bytes") or image_cap)
    if model_size > model_cap:
        raise LocalRefusal(
            f"{args.model.name}: {human_size(model_size)} is larger than the phase's model "
            f"limit of {human_size(model_cap)}; make the model smaller."
        )
    with open(args.model, "rb") as f:
        if archive_kind(f.read(HEAD_BYTES)) not in ("tar", "tar.gz"):
            raise LocalRefusal(
                f"{args.model.name}: the model must be a .tar or .tar.gz archive of the model "
                "files: pack it with `tar -czf model.tar.gz -C model .`"
            )


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
        total = args.archive.stat().st_size + (
            args.model.stat().st_size if args.model is not None else 0
        )
        what = args.archive.name + (f" and {args.model.name}" if args.model is not None else "")
        t = bar.add_task(f"uploading {what}", total=total)
        return api.upload(
            http,
            phase=args.phase,
            task=args.task,
            archive=args.archive,
            dry_run=args.dry_run,
            progress=lambda done, total: bar.update(t, completed=done, total=total),
            model=args.model,
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
    return EXIT_REJECTED if 400 <= exc.status < 500 else EXIT_ERROR


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
    for w in doc.get("warnings") or []:
        print(f"warning: {w['message']}", file=sys.stderr)
    if status == "valid":
        out.print(f"submission {doc['id']}: valid — every check passed; nothing was scored")
    elif doc.get("scores_hidden"):
        out.print(f"submission {doc['id']}: scored; the scores of this phase are hidden")
    else:
        metrics = (doc.get("result") or {}).get("metrics") or {}
        out.print(metrics_table(metrics, title=f"Submission {doc['id']} · task {doc['task']}"))
        out.print(
            f"per-case results: {args.server.rstrip('/')}/submissions/{doc['id']} "
            "(sign in there with your team token)"
        )
    return EXIT_OK
