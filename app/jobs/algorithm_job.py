"""Judging an algorithm submission: its image run once per hidden case, the outputs
checked as grand-challenge checks them, then scored like a prediction archive.

:func:`run_cases` runs in the judging job's own process (never in the limited child:
the runtime client and the containers must not inherit its address-space limit):

- the runtime is found (:func:`app.algorithms.runtime.detect_runtime`); none working is
  a platform failure, refunded;
- the image tarball is loaded once into the bounded image store
  (:mod:`app.algorithms.image_store`) and removed when judging ends, whatever happened;
  a dry run stops after loading and inspecting it;
- an optional model tarball beside it is extracted once, read-only for every case;
- each case of the task's ground truth runs in its own container on its converted
  inputs (the phase's hidden ``inputs_dir``), ``parallel_cases`` at once, with the
  phase's limits, its ``/output`` a size-capped volume of its own;
- each case's outcome is classified (non-zero exit, memory, time, output limit, missing,
  extra or invalid outputs); with ``fail_fast`` the first failed case fails the
  submission and the cases not yet started are not run; otherwise every case runs and
  every failure is reported;
- the valid outputs are staged in the layout ``hecktor-eval score`` reads, in the job's
  folder; the caller scores that folder in the limited child, as it scores an archive.

What a participant is told names the case by its number in the run and the limit or
rule it broke; in a hidden phase (a test phase) only the limit or rule. The runtime's
full logs go to the submission's ``algorithm.log`` (capped), for organizers only.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.jobs.claims import AlgorithmRef, Claim
from app.jobs.limits import format_duration
from app.jobs.outcomes import Verdict, error, platform_error
from app.settings import Settings
from app.storage import absolute

log = logging.getLogger(__name__)

ALGORITHM = "algorithm"  # the error kind of a case the algorithm failed
LOG_NAME = "algorithm.log"
LOG_CAP = 4 << 20  # bytes of runtime logs kept per submission
CASE_LOG_CAP = 64 << 10
MODEL_NAMES = ("model.tar.gz", "model.tar")
LAST_LINE_CHARS = 300


@dataclass(frozen=True, kw_only=True)
class CaseFailure:
    """One case the algorithm failed: its number in the run (1-based), the limit or rule
    it broke and what to tell a participant about it."""

    number: int
    rule: str  # exit | memory | time | pids | output | missing | extra | invalid
    message: str  # shown outside hidden phases
    rule_message: str  # shown in hidden phases: the limit or rule only


@dataclass(frozen=True, kw_only=True)
class CasesRun:
    """What running the cases gave: the staged folder to score (None when the
    submission failed or was a dry run) or the verdict to store."""

    stage: Path | None
    verdict: Verdict | None
    seconds: float = 0.0


class _Log:
    """The submission's runtime log, capped at :data:`LOG_CAP` bytes (later cases are
    named, their output dropped)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.written = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")

    def add(self, header: str, body: str = "") -> None:
        text = f"== {header}\n{body.rstrip()}\n" if body.strip() else f"== {header}\n"
        with self.lock:
            data = text.encode("utf-8", "replace")
            if self.written + len(data) > LOG_CAP:
                data = f"== {header} (output not kept: log cap reached)\n".encode()
                if self.written + len(data) > LOG_CAP + 4096:
                    return
            with open(self.path, "ab") as f:
                f.write(data)
            self.written += len(data)


def _failed(*errors: dict[str, str]) -> CasesRun:
    """The run of a submission that failed before or while its cases ran."""
    return CasesRun(stage=None, verdict=Verdict(status="failed", errors=list(errors)))


def log_path(settings: Settings, claim: Claim) -> Path:
    """Where the runtime log of the claimed submission is kept (beside its upload)."""
    return absolute(settings, claim.archive_path).parent / LOG_NAME


def _limits(ref: AlgorithmRef) -> Any:
    from app.algorithms.runtime import CaseLimits

    return CaseLimits.from_phase(ref)  # the reference carries the phase's case_* limits


def _mb(n: int) -> str:
    return f"{n / 1024:g} GB" if n >= 1024 and n % 1024 == 0 else f"{n} MB"


def _failure(number: int, total: int, rule: str, detail: str, rule_text: str) -> CaseFailure:
    return CaseFailure(
        number=number,
        rule=rule,
        message=f"case {number} of {total}: {detail}",
        rule_message=f"a case failed: {rule_text}",
    )


def classify(
    outcome: Any, *, number: int, total: int, ref: AlgorithmRef, output_full: bool
) -> CaseFailure | None:
    """The failure a container's outcome is, or None when it exited 0 (its outputs are
    checked next). ``output_full``: the case's output volume is full."""
    limit_time = format_duration(ref.case_seconds)
    if outcome.kind == "memory":
        text = (
            f"the algorithm went over the memory limit of {_mb(ref.case_memory_mb)} per case "
            "and was killed; use less memory (smaller batches or patches, free what you no "
            "longer need)"
        )
        return _failure(number, total, "memory", text, f"memory limit ({_mb(ref.case_memory_mb)})")
    pids = getattr(outcome, "pids_limit_hit", False)
    if pids and outcome.kind in ("time", "exited") and outcome.exit_code != 0:
        what = "ran past the time limit" if outcome.kind == "time" else "failed"
        text = (
            f"the algorithm kept starting processes up to the process limit of "
            f"{ref.case_pids} per case and {what} (a fork loop, or a pool of "
            "workers too large: start fewer processes)"
        )
        return _failure(number, total, "pids", text, f"process limit ({ref.case_pids})")
    if outcome.kind == "time":
        text = (
            f"the algorithm ran longer than the time limit of {limit_time} per case and was "
            "stopped; make it faster or ask the organizers about the limit"
        )
        return _failure(number, total, "time", text, f"time limit ({limit_time} per case)")
    if output_full:
        text = (
            f"the algorithm wrote more than the output limit of {_mb(ref.case_output_mb)} to "
            "/output; write only the declared outputs there (scratch files belong in /tmp)"
        )
        return _failure(
            number, total, "output", text, f"output size limit ({_mb(ref.case_output_mb)})"
        )
    if outcome.exit_code not in (0, None):
        last = (outcome.last_stderr_line or "").strip()[:LAST_LINE_CHARS]
        said = f"; its last line on stderr: {last!r}" if last else " (nothing on stderr)"
        text = f"the algorithm exited with code {outcome.exit_code}{said}"
        return _failure(number, total, "exit", text, "the algorithm exited with an error")
    return None


def _output_failures(problems: list[Any], *, number: int, total: int) -> CaseFailure | None:
    if not problems:
        return None
    first = problems[0]
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    rules = {"missing": "a required output is missing", "extra": "an undeclared output"}
    rule_text = rules.get(first.rule, "an output is invalid") + f" ({first.path})"
    return _failure(number, total, first.rule, f"{first.message}{more}", rule_text)


def _model_dir(settings: Settings, claim: Claim, tmp: Path, image_cap: int) -> Path | None:
    """The model tarball beside the upload, extracted once (read-only for the cases)."""
    from app.algorithms.tarball import extract_model

    folder = absolute(settings, claim.archive_path).parent
    tarball = next((folder / n for n in MODEL_NAMES if (folder / n).is_file()), None)
    if tarball is None:
        return None
    dest = tmp / "model"
    extract_model(tarball, dest, max_bytes=image_cap)
    for p in [dest, *dest.rglob("*")]:  # readable by the container's unprivileged user
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


def instance_tag(data_dir: Path) -> str:
    """A short name of this service (its data folder), in the names of its containers
    and images, so that services sharing one runtime never take each other's for their
    own leftovers."""
    return hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:8]


def container_prefix(data_dir: Path, submission_id: int) -> str:
    """The names of a submission's case containers start with this."""
    return f"hecktor-{instance_tag(data_dir)}-s{int(submission_id)}-c"


def image_repository(data_dir: Path) -> str:
    """The repository this service's loaded submission images are tagged in."""
    return f"localhost/hecktor-algorithm-{instance_tag(data_dir)}"


def _remove_leftover_containers(runtime: Any, prefix: str) -> None:
    """Containers named ``prefix...``: those of an earlier attempt whose judge died (a
    killed client leaves its container running), or whose removal the runtime had not
    finished."""
    res = runtime.command(
        "ps", "-a", "--filter", f"name=^{prefix}", "--format", "{{.Names}}", check=False
    )
    for name in res.stdout.split():
        if name.startswith(prefix):
            log.warning("removing the leftover container %s", name)
            runtime.remove_container(name)


_runtimes: dict[str, Any] = {}
_runtimes_lock = threading.Lock()


def runtime_for(settings: Settings) -> Any:
    """The container runtime of ``settings``, checked once per process (a check runs
    ``<runtime> info``, about half a second); raises RuntimeUnavailable."""
    from app.algorithms.runtime import detect_runtime

    with _runtimes_lock:
        found = _runtimes.get(settings.container_runtime)
    if found is None:
        found = detect_runtime(settings.container_runtime)
        with _runtimes_lock:
            _runtimes[settings.container_runtime] = found
    return found


CDI_SPECS = (Path("/etc/cdi"), Path("/var/run/cdi"))


def host_has_gpu(runtime: Any) -> bool:
    """Whether ``runtime`` can give a container the host's NVIDIA GPUs: podman through a
    CDI spec (``nvidia-ctk cdi generate``), docker through the NVIDIA container runtime."""
    if runtime.name == "docker":
        return shutil.which("nvidia-container-runtime") is not None
    for folder in CDI_SPECS:
        try:
            specs = list(folder.glob("*.yaml")) + list(folder.glob("*.json"))
        except OSError:
            continue
        for spec in specs:
            with contextlib.suppress(OSError):
                if "nvidia.com/gpu" in spec.read_text(errors="replace"):
                    return True
    return False


@contextlib.contextmanager
def _image(runtime: Any, settings: Settings, claim: Claim) -> Iterator[str]:
    """The submission's image, loaded into the bounded store for the block; leftover
    images of submissions no judge holds any longer are removed first."""
    from app.algorithms.image_store import ImageStore

    store = ImageStore(
        directory=settings.data_dir / "images",
        slots=settings.container_image_store,
        repository=image_repository(settings.data_dir),
    )
    with contextlib.suppress(Exception):
        store.sweep(runtime, keep={claim.submission_id})
    with store.loaded(
        runtime, absolute(settings, claim.archive_path), claim.submission_id
    ) as image:
        yield image


def run_cases(
    settings: Settings,
    claim: Claim,
    case_ids: tuple[str, ...],
    tmp: Path,
    *,
    progress: Callable[[int, int], None],
    note: Callable[[str], None],
) -> CasesRun:
    """Run the claimed algorithm on every case of ``case_ids``; see the module text."""
    from app.algorithms.runtime import RuntimeFailure, RuntimeUnavailable
    from app.algorithms.tarball import TarballProblem

    ref = claim.algorithm
    assert ref is not None
    sid = claim.submission_id
    started = time.monotonic()
    try:
        runtime = runtime_for(settings)
    except RuntimeUnavailable as e:
        log.error("submission %d: no container runtime: %s", sid, e)
        return _failed(
            platform_error(
                "the server cannot run algorithm containers right now; the organizers "
                "have been notified; this does not count against your quota"
            )
        )
    if ref.case_gpu and not host_has_gpu(runtime):
        log.error(
            "submission %d: its phase runs algorithms on a GPU and this machine has none "
            "(no CDI spec for nvidia.com/gpu; see the README's GPU notes)",
            sid,
        )
        msg = (
            "this phase runs algorithms on a GPU and the worker that took your submission has "
            "none; the organizers have been notified; this does not count against your quota"
        )
        return _failed(platform_error(msg))
    prefix = container_prefix(settings.data_dir, sid)
    _remove_leftover_containers(runtime, prefix)
    logbook = _Log(log_path(settings, claim))
    note("loading the image")
    try:
        with _image(runtime, settings, claim) as image:
            info = runtime.inspect(image)
            logbook.add(
                f"image {info.id[:19]} loaded: {info.size_bytes} bytes, {info.os}/"
                f"{info.architecture}, entrypoint {info.entrypoint} cmd {info.cmd}, "
                f"user {info.user or '(root)'}"
            )
            if claim.dry_run:
                return CasesRun(stage=None, verdict=_dry_run_verdict(claim, info, len(case_ids)))
            model = _model_dir(settings, claim, tmp, ref.image_max_bytes)
            try:
                return _run_all(
                    runtime,
                    settings,
                    claim,
                    image,
                    model,
                    case_ids,
                    tmp,
                    logbook,
                    progress=progress,
                    note=note,
                    started=started,
                )
            finally:  # the runtime may still be removing a finished case's container
                _remove_leftover_containers(runtime, prefix)
    except TarballProblem as e:
        logbook.add("the image or model could not be used", str(e))
        return _failed(error("image", str(e)))
    except RuntimeFailure as e:
        # the tarball passed its checks before it was queued: a load or start that fails
        # now is the server's problem more often than the image's
        log.error("submission %d: the runtime failed: %s", sid, e)
        logbook.add("the runtime failed", str(e))
        return _failed(
            platform_error(
                "the container runtime could not load or start the image; the "
                "organizers have been notified; this does not count against your "
                "quota. Check that `docker load -i <your tarball>` and `docker run "
                "--rm --network none <image>` work on your machine, then submit again"
            )
        )


def _dry_run_verdict(claim: Claim, info: Any, n_cases: int) -> Verdict:
    doc = {
        "status": "valid",
        "task": claim.task,
        "n_cases": n_cases,
        "notes": {
            "image": (
                f"loaded: {info.os}/{info.architecture}, {info.size_bytes} bytes, "
                f"entrypoint {info.entrypoint or '-'}, cmd {info.cmd or '-'}; a dry run "
                f"runs nothing: a submission runs it on {n_cases} case(s)"
            )
        },
    }
    return Verdict(status="valid", doc=doc)


class _Cases:
    """One run of an algorithm over the cases: the shared state of the case threads."""

    def __init__(
        self,
        runtime: Any,
        claim: Claim,
        image: str,
        model: Path | None,
        index: dict[str, Path],
        tmp: Path,
        logbook: _Log,
        note: Callable[[str], None],
        prefix: str,
    ) -> None:
        from evaluator.protocol import Protocol

        assert claim.algorithm is not None and claim.ground_truth is not None
        self.runtime, self.claim, self.image, self.model = runtime, claim, image, model
        self.ref: AlgorithmRef = claim.algorithm
        self.protocol = Protocol.from_json(claim.ground_truth.protocol_json)
        self.index, self.logbook, self.note = index, logbook, note
        self.limits = _limits(self.ref)
        self.stage = tmp / "stage"
        self.outputs = tmp / "outputs"
        self.stage.mkdir()
        self.outputs.mkdir()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.failures: list[CaseFailure] = []
        self.platform: list[str] = []
        self.running: set[int] = set()
        self.started = 0
        self.done = 0
        self.total = 0
        self.tag = secrets.token_hex(3)
        self.prefix = prefix

    def show(self) -> None:
        with self.lock:
            numbers = sorted(self.running)
            done = self.done
        if numbers:
            names = ", ".join(str(n) for n in numbers)
            self.note(f"running case {names} of {self.total} ({done} done)")

    def one(self, i: int, pid: str) -> None:
        number = i + 1
        if self.stop.is_set():
            return
        with self.lock:
            self.running.add(number)
            self.started += 1
        self.show()
        try:
            failure = self._case(number, pid)
        finally:
            with self.lock:
                self.running.discard(number)
        if failure is not None:
            self.logbook.add(f"case {number} of {self.total} ({pid}) failed", failure.message)
            with self.lock:
                self.failures.append(failure)
            if self.ref.fail_fast:
                self.stop.set()

    def _case(self, number: int, pid: str) -> CaseFailure | None:
        from app.algorithms.output_volume import full, sized_output
        from app.algorithms.runtime import CaseRun
        from evaluator.gc.validate import stage_case_outputs, validate_case_outputs

        with sized_output(self.outputs / str(number), self.ref.case_output_mb << 20) as out:
            outcome = self.runtime.run_case(
                CaseRun(
                    image=self.image,
                    input_dir=self.index[pid],
                    output_dir=out,
                    model_dir=self.model,
                    limits=self.limits,
                    name=f"{self.prefix}{number}-{self.tag}",
                )
            )
            self.logbook.add(
                f"case {number} of {self.total} ({pid}): {outcome.kind}, exit code "
                f"{outcome.exit_code}, {outcome.seconds:.1f} s",
                outcome.log[:CASE_LOG_CAP],
            )
            if outcome.kind == "runtime":
                with self.lock:
                    self.platform.append(f"case {number}: {outcome.last_stderr_line}")
                self.stop.set()
                return None
            # a full volume is the cause only of a case that failed: one that exited 0
            # with valid outputs merely came close to the limit
            is_full = outcome.output_full or full(out)
            failure = classify(
                outcome,
                number=number,
                total=self.total,
                ref=self.ref,
                output_full=is_full and not outcome.ok,
            )
            if failure is not None:
                return failure
            problems = validate_case_outputs(out, self.claim.task, self.protocol)
            if problems and is_full:
                return classify(
                    outcome, number=number, total=self.total, ref=self.ref, output_full=True
                )
            failure = _output_failures(problems, number=number, total=self.total)
            if failure is None:
                stage_case_outputs(out, self.claim.task, self.protocol, pid, self.stage)
            return failure

    def run(self, case_ids: tuple[str, ...], progress: Callable[[int, int], None]) -> None:
        self.total = len(case_ids)
        workers = max(1, min(self.ref.parallel_cases, self.total or 1))
        self.note(f"running {self.total} case(s), {workers} at once")
        progress(0, self.total)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="case") as pool:
            pending: set[Future[None]] = {
                pool.submit(self.one, i, pid) for i, pid in enumerate(case_ids)
            }
            try:
                while pending:
                    finished, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                    for f in finished:
                        f.result()  # an error of the judge itself (not of a case) propagates
                    if finished:
                        with self.lock:
                            self.done += len(finished)
                        progress(self.done, self.total)
                        self.show()
                    if self.stop.is_set():
                        for f in pending:
                            f.cancel()
            except BaseException:
                self.stop.set()
                for f in pending:
                    f.cancel()
                raise

    def verdict(self) -> Verdict | None:
        """The failed submission's verdict, or None when every case passed."""
        if self.platform:
            log.error(
                "submission %d: the runtime failed: %s", self.claim.submission_id, self.platform[0]
            )
            msg = (
                "the container runtime failed while running your algorithm; the organizers "
                "have been notified; this does not count against your quota, resubmit later"
            )
            return Verdict(status="failed", errors=[platform_error(msg)])
        if not self.failures:
            return None
        failures = sorted(self.failures, key=lambda f: f.number)
        hidden = self.ref.hidden
        shown = failures[:1] if hidden else failures
        errors = [error(ALGORITHM, f.rule_message if hidden else f.message) for f in shown]
        not_run = self.total - self.started
        if not_run and not hidden:
            errors.append(
                error(
                    ALGORITHM,
                    f"one failed case fails the submission: {not_run} case(s) were not run",
                )
            )
        return Verdict(status="failed", errors=errors)


def _run_all(
    runtime: Any,
    settings: Settings,
    claim: Claim,
    image: str,
    model: Path | None,
    case_ids: tuple[str, ...],
    tmp: Path,
    logbook: _Log,
    *,
    progress: Callable[[int, int], None],
    note: Callable[[str], None],
    started: float,
) -> CasesRun:
    from evaluator.gc.inputs import read_input_index

    ref = claim.algorithm
    assert ref is not None
    index = read_input_index(absolute(settings, ref.inputs_dir))
    missing = [pid for pid in case_ids if pid not in index]
    if missing:
        log.error(
            "submission %d: %d case(s) of task %d have no inputs (e.g. %s)",
            claim.submission_id,
            len(missing),
            claim.task,
            missing[0],
        )
        msg = (
            "the phase's case inputs are incomplete; the organizers have been notified "
            f"(reference: submission {claim.submission_id})"
        )
        return _failed(error("internal", msg))
    prefix = container_prefix(settings.data_dir, claim.submission_id)
    cases = _Cases(runtime, claim, image, model, index, tmp, logbook, note, prefix)
    cases.run(case_ids, progress)
    seconds = time.monotonic() - started
    verdict = cases.verdict()
    if verdict is not None:
        return CasesRun(stage=None, verdict=verdict, seconds=seconds)
    note("scoring the outputs")
    log.info(
        "submission %d: %d case(s) run in %.1f s (%d at once)",
        claim.submission_id,
        len(case_ids),
        seconds,
        ref.parallel_cases,
    )
    return CasesRun(stage=cases.stage, verdict=None, seconds=seconds)


def name_cases(errors: list[dict[str, Any]] | None, case_ids: tuple[str, ...]) -> None:
    """The scorer's problems with an algorithm's staged outputs told by case number, as
    the run's own messages are: a hidden case's PatientID is never shown (in place)."""
    if not errors or not case_ids:
        return
    total = len(case_ids)
    numbers = {pid: i + 1 for i, pid in enumerate(case_ids)}
    pattern = re.compile(
        r"(?<![\w.-])("
        + "|".join(re.escape(p) for p in sorted(numbers, key=len, reverse=True))
        + r")(?:\.mha|/[\w.-]+\.json)?(?![\w-])"
    )

    def sub(m: re.Match[str]) -> str:
        return f"case {numbers[m.group(1)]} of {total}"

    for item in errors:
        for key in ("case", "message"):
            if isinstance(item.get(key), str):
                item[key] = pattern.sub(sub, item[key])


def remove_stage(stage: Path | None) -> None:
    if stage is not None:
        shutil.rmtree(stage, ignore_errors=True)
