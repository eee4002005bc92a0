"""``hecktor-eval``: the offline scorer, the synthetic challenge generator, the
grand-challenge evaluation entry point and, when the service is installed, the
organizer and participant commands.

Exit codes of ``score`` and ``gc-evaluate``: 0 scored, 2 submission (or input)
rejected, 1 internal error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from evaluator import __version__

if TYPE_CHECKING:
    from evaluator.protocol import Protocol
    from evaluator.scoring import GroundTruth

EXIT_OK, EXIT_ERROR, EXIT_REJECTED = 0, 1, 2


@contextmanager
def progress_bar(label: str, *, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr when it is a terminal; otherwise nothing."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
        auto_refresh=False,  # no refresh thread: worker processes can then be forked
    ) as bar:
        task_id = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task_id, completed=done, total=total)
            bar.refresh()

        yield update


def _write_json(doc: Mapping[str, object], output: Path | None) -> None:
    text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(output)


def _ground_truth(args: argparse.Namespace, protocol: Protocol) -> GroundTruth:
    """The ground truth of ``score``: Task 1's prepared form from the user's cache
    folder when it holds this ground truth (kept there for the next run), unless
    ``--no-cache``; without a usable cache folder, read as it is."""
    from evaluator.io.gt_cache import user_cache_dir
    from evaluator.scoring import load_ground_truth

    if args.no_cache or args.task != 1:
        return load_ground_truth(args.task, args.ground_truth, protocol=protocol)
    cache = user_cache_dir()
    try:
        return load_ground_truth(
            args.task, args.ground_truth, protocol=protocol, shared_cache=cache
        )
    except OSError as exc:
        print(f"note: the ground-truth cache {cache} is not usable ({exc})", file=sys.stderr)
        return load_ground_truth(args.task, args.ground_truth, protocol=protocol)


def cmd_score(args: argparse.Namespace) -> int:
    from evaluator.errors import (
        GroundTruthError,
        ScoringError,
        ScoringProcessError,
        SubmissionRejected,
    )
    from evaluator.pipeline.result import cases_csv
    from evaluator.protocol import HECKTOR2025, resolve_protocol
    from evaluator.scoring import score_submission

    try:
        protocol = resolve_protocol(args.protocol) if args.protocol else HECKTOR2025
    except (OSError, ValueError) as exc:
        print(f"error: cannot use protocol {args.protocol}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    show = sys.stderr.isatty() and not args.quiet
    try:
        gt = _ground_truth(args, protocol)
    except GroundTruthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        with progress_bar(f"Task {args.task}", enabled=show) as progress:
            doc = score_submission(
                args.task,
                gt,
                args.predictions,
                protocol=protocol,
                workers=args.workers,
                progress=progress,
                dry_run=args.dry_run,
            )
    except SubmissionRejected as exc:
        _write_json(exc.as_document(), args.output)
        print(f"Submission rejected: {exc.n_problems} problem(s):", file=sys.stderr)
        for p in exc.problems:
            print(f"  - {p}", file=sys.stderr)
        return EXIT_REJECTED
    except ScoringError as exc:
        print(f"error: cannot score: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (ScoringProcessError, MemoryError) as exc:
        print(
            f"error: scoring stopped, no score was computed: {str(exc) or type(exc).__name__}"
            f"\n  (out of memory? with --workers N, N cases are in memory at once: try "
            f"fewer workers)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    _write_json(doc, args.output)
    for warning in doc.get("warnings", []):
        print(f"warning: {warning['message']}", file=sys.stderr)
    if args.cases and doc["status"] == "scored":
        args.cases.write_text(cases_csv(doc["cases"]), encoding="utf-8")
    return EXIT_OK


def cmd_synth(args: argparse.Namespace) -> int:
    from evaluator.synth import generate_challenge

    show = sys.stderr.isatty()
    try:
        with progress_bar("synth", enabled=show) as progress:
            summary = generate_challenge(
                args.out,
                seed=args.seed,
                n_cases=args.cases,
                small=args.small,
                progress=progress,
                edition=args.edition,
            )
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"ground truth: {summary.ground_truth_dir}")
    print(f"submissions:  {summary.submissions_dir} (teams: {', '.join(summary.teams)})")
    print(f"inputs:       {summary.inputs_dir} (CT, PET and ehr.json per case)")
    print(f"cases:        {len(summary.case_ids)}")
    return EXIT_OK


def cmd_gc_evaluate(args: argparse.Namespace) -> int:
    from evaluator.errors import ScoringError, ScoringProcessError
    from evaluator.gc.errors import GCInputError
    from evaluator.gc.evaluate import evaluate, resolve_settings

    flags = {
        "task": args.task,
        "protocol": args.protocol,
        "input_dir": args.input,
        "output_dir": args.output,
        "ground_truth_dir": args.ground_truth,
        "per_case": args.per_case,
        "case_pattern": args.case_pattern,
        "workers": args.workers,
    }
    try:
        document = evaluate(resolve_settings(flags, os.environ))
    except GCInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    except ScoringError as exc:
        print(f"error: cannot score: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    except (ScoringProcessError, MemoryError) as exc:
        print(f"error: scoring stopped: {str(exc) or type(exc).__name__}", file=sys.stderr)
        return EXIT_ERROR
    for note in document.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    return EXIT_OK


def _workers(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("--workers must be >= 1")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hecktor-eval", description="Exact scoring for HECKTOR-style PET/CT challenges."
    )
    parser.add_argument("--version", action="version", version=f"hecktor-eval {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    sc = sub.add_parser("score", help="score one submission offline (as the server does)")
    sc.add_argument("--task", type=int, choices=(1, 2, 3), required=True)
    sc.add_argument("--ground-truth", type=Path, required=True, help="task folder or CSV")
    sc.add_argument(
        "--predictions", type=Path, required=True, help="folder, archive or (Task 2/3) table"
    )
    sc.add_argument("--output", type=Path, help="write the JSON result here (default stdout)")
    sc.add_argument("--cases", type=Path, help="write the per-case records as CSV here")
    sc.add_argument("--workers", type=_workers, default=1, help="processes over cases")
    sc.add_argument(
        "--protocol",
        help="a built-in protocol (hecktor2025, hecktor2026) or a protocol JSON file "
        "(default: hecktor2025)",
    )
    sc.add_argument("--dry-run", action="store_true", help="validate only, do not score")
    sc.add_argument(
        "--no-cache",
        action="store_true",
        help="read the Task 1 ground truth afresh; do not use or fill the prepared copy kept "
        "in $XDG_CACHE_HOME/hecktor-eval (default ~/.cache/hecktor-eval)",
    )
    sc.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sc.set_defaults(func=cmd_score)

    sy = sub.add_parser(
        "synth", help="write a seeded synthetic challenge (truth, inputs, team archives)"
    )
    sy.add_argument("--out", type=Path, required=True)
    sy.add_argument("--seed", type=int, default=0)
    sy.add_argument("--cases", type=int, default=None, help="number of patients")
    sy.add_argument("--small", action="store_true", help="small grids and few cases (fast)")
    sy.add_argument(
        "--edition",
        type=int,
        choices=(2025, 2026),
        default=2025,
        help="the rules the files follow (2026: staging and the 2026 layouts)",
    )
    sy.set_defaults(func=cmd_synth)

    gc = sub.add_parser(
        "gc-evaluate",
        help="the grand-challenge evaluation container: /input/predictions.json -> "
        "/output/metrics.json",
        description="Score a grand-challenge submission. Each option falls back to its "
        "environment variable (HECKTOR_TASK, HECKTOR_PROTOCOL, HECKTOR_INPUT_DIR, "
        "HECKTOR_OUTPUT_DIR, HECKTOR_GROUND_TRUTH_DIR, HECKTOR_PER_CASE, "
        "HECKTOR_CASE_PATTERN, HECKTOR_WORKERS), then to its default. Exit codes: 0 "
        "scored, 2 input rejected, 1 internal error.",
    )
    gc.add_argument(
        "--task",
        choices=("1", "2", "3", "all", "auto"),
        help="default: auto (the tasks with a ground truth) for hecktor2025, all for hecktor2026",
    )
    gc.add_argument("--protocol", help="protocol name or file (default: hecktor2025)")
    gc.add_argument("--input", type=Path, help="default: /input")
    gc.add_argument("--output", type=Path, help="default: /output")
    gc.add_argument("--ground-truth", type=Path, help="default: /opt/ml/input/data/ground_truth")
    gc.add_argument(
        "--per-case",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write per-case entries into metrics.json (default: no)",
    )
    gc.add_argument("--case-pattern", help="regex on the CT image name; group 'patient'")
    gc.add_argument("--workers", type=_workers, help="processes over cases (default: CPUs, <= 4)")
    gc.set_defaults(func=cmd_gc_evaluate)

    # Commands of other packages (the service's admin/serve/submit/demo) plug in through
    # the "hecktor_eval.commands" entry-point group: the evaluator never imports them.
    from importlib.metadata import entry_points

    for ep in entry_points(group="hecktor_eval.commands"):
        try:
            register = ep.load()
        except ImportError as exc:  # optional part not installed or broken
            logging.getLogger(__name__).debug("command plugin %s unavailable: %s", ep.name, exc)
            continue
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # last resort: a message, not a traceback, unless -v
        if args.verbose or os.environ.get("HECKTOR_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
