"""``admin phase create|update|inputs|open|close|rescore|list|freeze|unfreeze``."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.cli.common import EXIT_ERROR, EXIT_OK, command, err, load_settings, open_db


# -- parsers ----------------------------------------------------------------------------
def tasks_arg(text: str) -> list[int]:
    """``--tasks``: a comma-separated set of tasks among 1, 2 and 3, sorted."""
    try:
        tasks = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tasks takes e.g. 1,2,3, not {text!r}") from None
    if not tasks or any(t not in (1, 2, 3) for t in tasks):
        raise argparse.ArgumentTypeError(f"--tasks takes tasks among 1,2,3, not {text!r}")
    return tasks


def add_phase_commands(admin_subparsers: Any) -> None:
    ph = admin_subparsers.add_parser("phase", help="create, open, close, re-score phases")
    phs = ph.add_subparsers(dest="phase_command", required=True)
    _add_create(phs)
    _add_update(phs)
    pi = phs.add_parser(
        "inputs", help="replace an algorithm phase's case inputs (CT, PET, ehr.json per case)"
    )
    pi.add_argument("name")
    pi.add_argument("--inputs", type=Path, required=True, help=_INPUTS_HELP)
    command(pi, "admin.phase.inputs", cmd_phase_inputs)
    for verb in ("open", "close"):
        pv = phs.add_parser(verb, help=f"{verb} a phase for submissions")
        pv.add_argument("name")
        command(pv, f"admin.phase.{verb}", cmd_phase_open_close)
    pr = phs.add_parser("rescore", help="queue every finished submission of a phase again")
    pr.add_argument("name")
    pr.add_argument("--task", type=int, choices=(1, 2, 3))
    pr.add_argument(
        "--run", action="store_true", help="judge them in this process now (no server needed)"
    )
    command(pr, "admin.phase.rescore", cmd_phase_rescore)
    pl = phs.add_parser("list", help="list phases")
    command(pl, "admin.phase.list", cmd_phase_list)
    _add_freeze(phs)


def _add_create(phs: Any) -> None:
    pc = phs.add_parser("create", help="create a phase and import its ground truth")
    pc.add_argument("--name", required=True)
    pc.add_argument(
        "--ground-truth", type=Path, required=True, help="folder with 'Task 1', 'Task 2', 'Task 3'"
    )
    pc.add_argument("--tasks", type=tasks_arg, default=[1, 2, 3], help="e.g. 1,2,3 (default)")
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
    pc.add_argument(
        "--protocol",
        help="a built-in protocol (hecktor2025, hecktor2026) or a protocol JSON file "
        "(default: hecktor2025)",
    )
    pc.add_argument("--closed", action="store_true", help="create it closed")
    pc.add_argument(
        "--kind",
        choices=("predictions", "algorithm", "both"),
        help="what teams upload: prediction archives (predictions, the default), an "
        "inference container run on each hidden case (algorithm; needs --inputs), or both",
    )
    pc.add_argument("--inputs", type=Path, help=_INPUTS_HELP)
    _phase_setting_flags(pc)
    _algorithm_flags(pc)
    command(pc, "admin.phase.create", cmd_phase_create)


def _add_update(phs: Any) -> None:
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
    pup.add_argument(
        "--kind",
        choices=("predictions", "algorithm", "both"),
        help="what teams upload (algorithm and both need the phase's inputs)",
    )
    _phase_setting_flags(pup)
    _algorithm_flags(pup)
    command(pup, "admin.phase.update", cmd_phase_update)


def _add_freeze(phs: Any) -> None:
    pf = phs.add_parser(
        "freeze", help="freeze a phase's leaderboards (served unchanged until unfrozen)"
    )
    pf.add_argument("--name", required=True)
    pf.add_argument("--refreeze", action="store_true", help="replace the current snapshot")
    pf.add_argument("--force", action="store_true", help="even while submissions are judged")
    pf.add_argument("--note", default="", help="stored with the snapshot")
    pf.add_argument("--resamples", type=int, help="bootstrap resamples (default: the phase's)")
    pf.add_argument("--seed", type=int, help="bootstrap seed (default: the phase's)")
    command(pf, "admin.phase.freeze", cmd_phase_freeze)
    pu = phs.add_parser("unfreeze", help="serve a phase's live leaderboards again")
    pu.add_argument("--name", required=True)
    command(pu, "admin.phase.unfreeze", cmd_phase_unfreeze)


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


_INPUTS_HELP = (
    "folder on this machine with each case's inputs: <PatientID>/<PatientID>__CT.nii.gz, "
    "<PatientID>__PT.nii.gz and ehr.json (hecktor-eval synth writes them under inputs/)"
)


def _algorithm_flags(parser: argparse.ArgumentParser) -> None:
    """The per-case limits of an algorithm phase (unset: the default, or unchanged)."""
    g = parser.add_argument_group("algorithm limits (phases of kind algorithm or both)")
    g.add_argument("--case-seconds", type=int, help="time per case, seconds (600)")
    g.add_argument("--case-memory-mb", type=int, help="memory per case, MiB, swap included (4096)")
    g.add_argument("--case-cpus", type=float, help="CPUs per case (1)")
    g.add_argument("--case-pids", type=int, help="processes and threads per case (128)")
    gpu = g.add_mutually_exclusive_group()
    gpu.add_argument("--case-gpu", dest="case_gpu", action="store_true", default=None)
    gpu.add_argument("--no-case-gpu", dest="case_gpu", action="store_false", help="(default)")
    g.add_argument("--case-tmp-mb", type=int, help="size of /tmp per case, MiB (512)")
    g.add_argument("--case-output-mb", type=int, help="size of /output per case, MiB (1024)")
    g.add_argument(
        "--image-max-bytes", type=int, help="largest container image, bytes uncompressed (10 GiB)"
    )
    g.add_argument("--parallel-cases", type=int, help="cases of a submission run at once (2)")
    ff = g.add_mutually_exclusive_group()
    ff.add_argument(
        "--fail-fast",
        dest="fail_fast",
        action="store_true",
        default=None,
        help="the first failed case fails the submission (default)",
    )
    ff.add_argument("--no-fail-fast", dest="fail_fast", action="store_false")


def _phase_settings(args: argparse.Namespace) -> dict[str, Any]:
    from app.services.phases import ALGORITHM_SETTINGS, PHASE_SETTINGS

    keys = [*PHASE_SETTINGS, *ALGORITHM_SETTINGS, "kind"]
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


# -- commands ---------------------------------------------------------------------------
def cmd_phase_create(args: argparse.Namespace) -> int:
    from app.services.phases import create_phase, phase_detail
    from evaluator.protocol import resolve_protocol

    settings = load_settings(args)
    protocol = None
    if args.protocol:
        try:
            protocol = resolve_protocol(args.protocol)
        except (OSError, ValueError) as exc:
            err(f"cannot use protocol {args.protocol}: {exc}")
            return EXIT_ERROR
    sf = open_db(settings)
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
            inputs=args.inputs,
            **_phase_settings(args),
        )
        s.commit()
        d = phase_detail(phase)
    _print_created(d)
    return EXIT_OK


def _print_created(d: Mapping[str, Any]) -> None:
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
    if d["kind"] != "predictions":
        _print_algorithm(d)


def _print_algorithm(d: Mapping[str, Any]) -> None:
    print(
        f"  kind {d['kind']}: inputs of {d['n_inputs']} case(s) "
        f"({(d['inputs_sha256'] or '')[:16]}…); per case {d['case_seconds']} s, "
        f"{d['case_memory_mb']} MiB, {d['case_cpus']:g} CPU(s), "
        f"{'a GPU' if d['case_gpu'] else 'no GPU'}, {d['case_pids']} processes, /tmp "
        f"{d['case_tmp_mb']} MiB, /output {d['case_output_mb']} MiB; images up to "
        f"{d['image_max_bytes']:,} bytes; {d['parallel_cases']} case(s) at once, "
        f"{'first failure fails all' if d['fail_fast'] else 'every case run'}"
    )


def cmd_phase_inputs(args: argparse.Namespace) -> int:
    from app.services.algorithm_inputs import import_inputs
    from app.services.phases import get_phase, phase_detail

    settings = load_settings(args)
    with open_db(settings)() as s:
        phase = get_phase(s, args.name)
        import_inputs(s, settings, phase, args.inputs)
        s.commit()
        d = phase_detail(phase)
    print(f"phase {d['name']!r}: inputs of {d['n_inputs']} case(s) imported")
    print(f"  inputs {(d['inputs_sha256'] or '')[:16]}… (nothing re-judged)")
    return EXIT_OK


def cmd_phase_update(args: argparse.Namespace) -> int:
    from app.services.phases import phase_detail, update_phase

    changes = {
        k: getattr(args, k)
        for k in ("title", "daily_limit", "selection", "hidden", "leaderboard_public")
        if getattr(args, k, None) is not None
    }
    changes.update(_phase_settings(args))
    if not changes:
        err("nothing to change: give at least one setting, e.g. --case-rows none")
        return EXIT_ERROR
    with open_db(load_settings(args))() as s:
        phase = update_phase(s, args.name, **changes)
        s.commit()
        d: Mapping[str, Any] = phase_detail(phase)
    print(f"phase {d['name']!r} updated:")
    for k in sorted(changes):
        print(f"  {k} = {d[k]}")
    return EXIT_OK


def cmd_phase_open_close(args: argparse.Namespace) -> int:
    from app.services.phases import update_phase

    settings = load_settings(args)
    is_open = args.app_command.endswith(".open")
    with open_db(settings)() as s:
        update_phase(s, args.name, is_open=is_open)
        s.commit()
    print(f"phase {args.name!r} is {'open' if is_open else 'closed'}")
    return EXIT_OK


def cmd_phase_rescore(args: argparse.Namespace) -> int:
    from app.services.submissions import rescore

    settings = load_settings(args)
    with open_db(settings)() as s:
        ids = rescore(s, args.name, args.task)
        s.commit()
    print(f"queued {len(ids)} submission(s) of phase {args.name!r} for re-scoring")
    if not ids:
        return EXIT_OK
    if not args.run and settings.dispatcher == "celery":
        return _publish(settings, ids)
    if not args.run:
        print("a running server picks them up within its sweep interval (or at its next start)")
        return EXIT_OK
    _judge_here(settings, ids)
    return EXIT_OK


def _publish(settings: Any, ids: list[int]) -> int:
    """Send the re-scoring jobs to the Celery workers."""
    from app.jobs.celery_dispatcher import CeleryDispatcher

    d = CeleryDispatcher(settings)
    for sid in ids:
        d.submit(sid)
    if d.unsent:
        err(f"could not publish {len(d.unsent)} job(s); the server sends them at its start")
        return EXIT_ERROR
    print(f"published {len(ids)} job(s) to the Celery workers")
    return EXIT_OK


def _judge_here(settings: Any, ids: list[int]) -> None:
    """Judge the submissions in a process pool of this process, printing each outcome."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from app.jobs.runner import run_job

    with ProcessPoolExecutor(max_workers=settings.n_workers) as pool:
        futs = {pool.submit(run_job, sid, settings.to_dict()): sid for sid in ids}
        for fut in as_completed(futs):
            print(f"  submission {futs[fut]}: {fut.result()}")


def cmd_phase_list(args: argparse.Namespace) -> int:
    from app.services.phases import list_phases, phase_public

    with open_db(load_settings(args))() as s:
        for p in list_phases(s):
            d = phase_public(p)
            print(
                f"{d['name']}\t{'open' if d['is_open'] else 'closed'}\ttasks "
                f"{','.join(map(str, d['tasks']))}\t{'hidden' if d['hidden'] else 'visible'}"
                f"\tleaderboard {'public' if d['leaderboard_public'] else 'organizers'}"
            )
    return EXIT_OK


def cmd_phase_freeze(args: argparse.Namespace) -> int:
    from app.services.freeze import freeze_phase_commit

    with open_db(load_settings(args))() as s:
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

    with open_db(load_settings(args))() as s:
        done = unfreeze_phase(s, args.name)
        s.commit()
    print(f"phase {args.name!r}: unfrozen ({len(done)} snapshot(s) kept as history)")
    return EXIT_OK
