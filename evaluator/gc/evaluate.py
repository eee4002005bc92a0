"""One grand-challenge evaluation: settings from flags and environment, then
predictions.json -> jobs -> patients -> staged outputs -> scores -> metrics.json.

Each setting is taken from its command-line flag, else its environment variable, else
its default (:data:`ENV`), so one image serves every phase. The protocol may also come
from ``protocol.json`` in the ground-truth folder (after the flag and the variable).
``--task auto`` scores every task of the protocol whose ground-truth folder
(``<ground truth>/Task N``) exists, ``all`` requires each of them; without ``--task``,
hecktor2025 means ``auto`` (one task per phase) and hecktor2026 ``all`` (one container
writes every output).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluator.errors import GroundTruthError, SubmissionRejected
from evaluator.gc.collect import StagedTask, job_message, stage_task
from evaluator.gc.errors import GCInputError
from evaluator.gc.mapping import (
    DEFAULT_CASE_PATTERN,
    MANIFEST_NAME,
    CaseMap,
    compile_pattern,
    map_jobs,
    read_manifest,
)
from evaluator.gc.metrics_json import metrics_document
from evaluator.gc.predictions import Job, read_jobs
from evaluator.gc.sockets import ProtocolSockets, sockets_for
from evaluator.io.task1_truth import Task1GroundTruth
from evaluator.pipeline.result import ResultDocument
from evaluator.protocol import HECKTOR2025, Protocol
from evaluator.protocol import resolve_protocol as resolve_named_or_file
from evaluator.scoring import GroundTruth, load_ground_truth, score_submission

__all__ = ["ENV", "GCSettings", "evaluate", "resolve_settings", "write_metrics"]

ENV: Mapping[str, str] = {
    "task": "HECKTOR_TASK",
    "protocol": "HECKTOR_PROTOCOL",
    "input_dir": "HECKTOR_INPUT_DIR",
    "output_dir": "HECKTOR_OUTPUT_DIR",
    "ground_truth_dir": "HECKTOR_GROUND_TRUTH_DIR",
    "per_case": "HECKTOR_PER_CASE",
    "case_pattern": "HECKTOR_CASE_PATTERN",
    "workers": "HECKTOR_WORKERS",
}
DEFAULTS: Mapping[str, str] = {
    "input_dir": "/input",
    "output_dir": "/output",
    "ground_truth_dir": "/opt/ml/input/data/ground_truth",
    "per_case": "false",
    "case_pattern": DEFAULT_CASE_PATTERN,
}
TASK_CHOICES = ("1", "2", "3", "all", "auto")
PROTOCOL_FILE = "protocol.json"
PREDICTIONS = "predictions.json"
METRICS = "metrics.json"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True, kw_only=True)
class GCSettings:
    task: str | None  # one of TASK_CHOICES; None: the protocol's default (auto or all)
    protocol: str | None  # a protocol name or a protocol file; None: protocol.json or hecktor2025
    input_dir: Path
    output_dir: Path
    ground_truth_dir: Path
    per_case: bool
    case_pattern: str
    workers: int


def _default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 4))


def _flag_or_env(key: str, flags: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    value = flags.get(key)
    if value is not None:
        return value
    return env.get(ENV[key], DEFAULTS.get(key))


def _boolean(text: object, name: str) -> bool:
    if isinstance(text, bool):
        return text
    low = str(text).strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise GCInputError([f"{name}={text!r}: expected true or false (1/0, yes/no)"])


def _workers(value: object) -> int:
    if value is None:
        return _default_workers()
    try:
        n = int(str(value))
    except ValueError:
        n = 0
    if n < 1:
        raise GCInputError([f"{ENV['workers']}={value!r}: expected a whole number >= 1"])
    return n


def resolve_settings(flags: Mapping[str, Any], env: Mapping[str, str]) -> GCSettings:
    """The settings of a run: each flag that was given, else its environment variable,
    else its default. Raises :class:`GCInputError` for a value out of range."""
    given = _flag_or_env("task", flags, env)
    task = str(given).strip().lower() if given is not None else None
    if task is not None and task not in TASK_CHOICES:
        raise GCInputError([f"{ENV['task']}={task!r}: expected one of {', '.join(TASK_CHOICES)}"])
    protocol = _flag_or_env("protocol", flags, env)
    return GCSettings(
        task=task,
        protocol=str(protocol) if protocol else None,
        input_dir=Path(_flag_or_env("input_dir", flags, env)),
        output_dir=Path(_flag_or_env("output_dir", flags, env)),
        ground_truth_dir=Path(_flag_or_env("ground_truth_dir", flags, env)),
        per_case=_boolean(_flag_or_env("per_case", flags, env), ENV["per_case"]),
        case_pattern=str(_flag_or_env("case_pattern", flags, env)),
        workers=_workers(_flag_or_env("workers", flags, env)),
    )


# --- protocol and tasks -------------------------------------------------------------


def resolve_protocol(spec: str | None, ground_truth_dir: Path) -> Protocol:
    """The built-in protocol named ``spec``, or read from the file ``spec``; without
    ``spec``, the ground truth's protocol.json when there is one, else hecktor2025."""
    if spec is None:
        path = ground_truth_dir / PROTOCOL_FILE
        if not path.is_file():
            return HECKTOR2025
        spec = str(path)
    try:
        return resolve_named_or_file(spec)
    except (OSError, ValueError, TypeError) as exc:
        raise GCInputError([f"protocol {spec}: {exc}"]) from None


def resolve_tasks(
    task: str | None, sockets: ProtocolSockets, ground_truth_dir: Path
) -> tuple[int, ...]:
    """The tasks to score; each must be a task of the protocol with a ground truth."""
    known = tuple(sorted(sockets.tasks))
    task = task or sockets.default_task
    if task == "auto":
        found = tuple(t for t in known if task_truth(ground_truth_dir, t).exists())
        if not found:
            raise GCInputError(
                [
                    f"{ground_truth_dir}: holds none of "
                    f"{', '.join(repr(task_truth(ground_truth_dir, t).name) for t in known)}; "
                    "the phase's ground-truth tarball holds one folder per task"
                ]
            )
        return found
    wanted = known if task == "all" else (int(task),)
    problems = [
        f"task {t}: protocol {sockets.protocol} has no task {t} (tasks: {known})"
        for t in wanted
        if t not in sockets.tasks
    ]
    problems += [
        f"task {t}: no ground truth at {task_truth(ground_truth_dir, t)}; the phase's "
        f"ground-truth tarball must hold 'Task {t}/'"
        for t in wanted
        if t in sockets.tasks and not task_truth(ground_truth_dir, t).exists()
    ]
    if problems:
        raise GCInputError(problems)
    return wanted


def task_truth(ground_truth_dir: Path, task: int) -> Path:
    return ground_truth_dir / f"Task {task}"


# --- the run ---------------------------------------------------------------------------


def _case_sets(gt: GroundTruth) -> tuple[set[str], set[str]]:
    """(cases a job may name, cases that need a job) of one task's ground truth; a
    table's cases of unknown target may have a job, which is not scored."""
    if isinstance(gt, Task1GroundTruth):
        return set(gt.cases), set(gt.cases)
    return set(gt.ids) | set(gt.unknown_ids), set(gt.ids)


def _load_truths(
    tasks: tuple[int, ...], ground_truth_dir: Path, protocol: Protocol
) -> dict[int, GroundTruth]:
    truths: dict[int, GroundTruth] = {}
    problems: list[str] = []
    for t in tasks:
        path = task_truth(ground_truth_dir, t)
        try:
            truths[t] = load_ground_truth(t, path, protocol=protocol)
        except GroundTruthError as exc:
            problems += [f"ground truth {path}: {p}" for p in exc.problems]
    if problems:
        raise GCInputError(problems)
    return truths


def _map(
    jobs: list[Job],
    truths: Mapping[int, GroundTruth],
    sockets: ProtocolSockets,
    settings: GCSettings,
) -> tuple[CaseMap, dict[int, set[str]]]:
    """The patient of every job, and the patients each task scores."""
    known_by_task = {t: _case_sets(gt) for t, gt in truths.items()}
    known = set().union(*(k for k, _ in known_by_task.values()))
    required = set().union(*(r for _, r in known_by_task.values()))
    cases = map_jobs(
        jobs,
        sockets=sockets,
        known=known,
        required=required,
        manifest=read_manifest(settings.ground_truth_dir / MANIFEST_NAME),
        pattern=compile_pattern(settings.case_pattern),
    )
    return cases, {t: set(cases.jobs) & k for t, (k, _) in known_by_task.items()}


def _score(
    staged: Mapping[int, StagedTask],
    truths: Mapping[int, GroundTruth],
    protocol: Protocol,
    workers: int,
) -> dict[int, ResultDocument]:
    results: dict[int, ResultDocument] = {}
    problems: list[str] = []
    for t, st in staged.items():
        try:
            doc = score_submission(t, truths[t], st.root, protocol=protocol, workers=workers)
        except SubmissionRejected as exc:
            problems += [job_message(p, st) for p in exc.problems]
            continue
        assert doc["status"] == "scored"
        results[t] = doc
    if problems:
        raise GCInputError(problems)
    return results


def write_metrics(path: Path, document: Mapping[str, Any]) -> None:
    """``document`` as JSON at ``path`` (written beside it, then renamed); NaN refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def evaluate(settings: GCSettings) -> dict[str, Any]:
    """Score the submission described by ``settings.input_dir`` and write
    ``metrics.json`` to ``settings.output_dir``; returns the document written.

    Raises :class:`GCInputError` listing every problem of the input, the jobs' outputs
    or the ground truth; nothing is written then.
    """
    protocol = resolve_protocol(settings.protocol, settings.ground_truth_dir)
    try:
        sockets = sockets_for(protocol)
    except KeyError as exc:
        raise GCInputError([str(exc.args[0])]) from None
    tasks = resolve_tasks(settings.task, sockets, settings.ground_truth_dir)
    jobs = read_jobs(settings.input_dir / PREDICTIONS)
    truths = _load_truths(tasks, settings.ground_truth_dir, protocol)
    cases, patients = _map(jobs, truths, sockets, settings)
    with tempfile.TemporaryDirectory(prefix="hecktor-gc-") as tmp:
        staged: dict[int, StagedTask] = {}
        problems: list[str] = []
        for t in tasks:
            staged[t], found = stage_task(
                t,
                sockets.tasks[t],
                cases,
                patients[t],
                input_dir=settings.input_dir,
                stage_dir=Path(tmp),
            )
            problems += found
        if problems:
            raise GCInputError(problems)
        results = _score(staged, truths, protocol, settings.workers)
    document = metrics_document(results, cases=cases, per_case=settings.per_case)
    write_metrics(settings.output_dir / METRICS, document)
    return document
