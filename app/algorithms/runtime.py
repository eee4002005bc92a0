"""The container runtime that runs participants' algorithms: podman, or docker with the
same command-line flags.

One case is one ``run`` of the image, isolated as /work/shared/CONTAINERS.md section 5
measured: no network, read-only root, a sized /tmp, /input read-only, /output writable,
memory without swap, a pids cap, a CPU quota, no capabilities, no new privileges,
uid 65534. The time limit is enforced by the runtime (podman ``--timeout``; docker has
none, so the container is killed through the runtime at the limit, never only the
client). Every other runtime command runs with a timeout of its own.

The run's stdout and stderr are read as they come, kept capped (head and tail), never
buffered whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import io
import json
import logging
import os
import re
import selectors
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

from app.algorithms.output_volume import full as output_full

log = logging.getLogger(__name__)

EXECUTABLES = ("podman", "docker")
CONTAINER_USER = "65534:65534"
LOG_CAP_BYTES = 64 * 1024
LAST_LINE_CHARS = 300
# commands other than the run: inspect, tag, rm, kill (load has its own, larger one)
COMMAND_SECONDS = 60.0
LOAD_SECONDS = 1800.0
# a run still going this long after its time limit is stopped by force
KILL_GRACE_SECONDS = 20.0
# podman exits 125 when it fails itself (the run never started)
_RUNTIME_ERROR_EXIT = 125
_TIMEOUT_EXIT = 255
# the image's entrypoint could not be run (the runtime's convention)
_NOT_RUN = {
    126: "the image's entrypoint/command could not be executed (check its permissions)",
    127: "the image's entrypoint/command was not found in the image",
}
_SIGKILL_EXIT = 137
_EVENTS_LOG = Path("/run/libpod/events/events.log")
_SAFE_CHARS = re.compile(r"[^\x20-\x7e\u00a0-\uffff]")

OutcomeKind = Literal["exited", "memory", "time", "runtime"]


@dataclass(frozen=True, kw_only=True)
class CaseLimits:
    seconds: int
    memory_mb: int
    cpus: float
    pids: int
    gpu: bool = False
    tmp_mb: int
    output_mb: int

    @classmethod
    def from_phase(cls, phase: Any) -> CaseLimits:
        """The limits a phase row declares (its ``case_*`` columns)."""
        return cls(
            seconds=int(phase.case_seconds),
            memory_mb=int(phase.case_memory_mb),
            cpus=float(phase.case_cpus),
            pids=int(phase.case_pids),
            gpu=bool(phase.case_gpu),
            tmp_mb=int(phase.case_tmp_mb),
            output_mb=int(phase.case_output_mb),
        )

    @property
    def output_bytes(self) -> int:
        return self.output_mb * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class CaseRun:
    image: str  # image id (or a local reference)
    input_dir: Path  # -> /input:ro
    output_dir: Path  # -> /output:rw, prepared by output_volume.sized_output
    model_dir: Path | None = None  # -> /opt/ml/model:ro
    limits: CaseLimits
    name: str  # container name, unique


@dataclass(frozen=True, kw_only=True)
class CaseOutcome:
    kind: OutcomeKind  # "exited" (see exit_code) | "memory" | "time" | "runtime"
    exit_code: int | None
    seconds: float  # wall time of the run command
    last_stderr_line: str  # last non-empty stderr line, <= 300 printable characters
    log: str  # stdout + stderr as they came, capped: head and tail with a marker
    overhead_seconds: float  # wall minus the container's own run time when known, else 0
    # what happened, in words fit for the participant (never the runtime's own words:
    # those are in last_stderr_line and log)
    message: str = ""
    output_full: bool = False  # /output was (nearly) full when the run ended
    memory_evidence: str = ""  # "kernel" (an OOM-kill line of this container) or ""
    # a fork failed at the pids limit while it ran (its cgroup's pids.events said so)
    pids_limit_hit: bool = False

    @property
    def ok(self) -> bool:
        return self.kind == "exited" and self.exit_code == 0


@dataclass(frozen=True, kw_only=True)
class ImageInfo:
    id: str
    size_bytes: int
    architecture: str
    os: str
    user: str
    entrypoint: list[str]
    cmd: list[str]


class RuntimeUnavailable(Exception):
    """No usable container runtime; the message says what is missing and how to fix it."""


class RuntimeFailure(Exception):
    """A runtime command failed (load, inspect, tag, the start of a run): a platform
    failure, not the participant's."""


def _printable(text: str) -> str:
    return _SAFE_CHARS.sub("?", text)


class _Capture:
    """stdout and stderr as they arrive, whole lines at a time (a line longer than 8 KiB
    in pieces): the first and last ``cap / 2`` bytes kept, the bytes between counted;
    the tail of stderr kept for its last line."""

    LINE_MAX = 8192

    def __init__(self, cap: int = LOG_CAP_BYTES) -> None:
        self.half = cap // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.omitted = 0
        self.stderr_tail = bytearray()
        self.pending = {False: bytearray(), True: bytearray()}

    def add(self, data: bytes, *, stderr: bool) -> None:
        if stderr:
            self.stderr_tail += data
            if len(self.stderr_tail) > 2 * self.LINE_MAX:
                del self.stderr_tail[: -self.LINE_MAX]
        pending = self.pending[stderr]
        pending += data
        cut = pending.rfind(b"\n") + 1
        if cut == 0 and len(pending) > self.LINE_MAX:
            cut = len(pending)
        if cut:
            self._keep(bytes(pending[:cut]))
            del pending[:cut]

    def finish(self) -> None:
        for pending in self.pending.values():
            if pending:
                self._keep(bytes(pending))
                pending.clear()

    def _keep(self, data: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            extra = len(self.tail) - self.half
            if extra > 0:
                del self.tail[:extra]
                self.omitted += extra

    def text(self) -> str:
        if not self.omitted:
            return (self.head + self.tail).decode(errors="replace")
        marker = f"\n[... {self.omitted} bytes of output left out ...]\n"
        return self.head.decode(errors="replace") + marker + self.tail.decode(errors="replace")

    def last_stderr_line(self) -> str:
        for line in reversed(self.stderr_tail.decode(errors="replace").splitlines()):
            line = line.strip()
            if line:
                return _printable(line)[:LAST_LINE_CHARS]
        return ""


def _parse_time(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def _container_seconds(events: bytes, cid: str) -> float | None:
    """The container's own run time (start to died) from podman's event log lines."""
    start = died = None
    for line in events.splitlines():
        if cid.encode() not in line:
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("ID") != cid:
            continue
        if ev.get("Status") == "start":
            start = _parse_time(ev.get("Time", ""))
        elif ev.get("Status") == "died":
            died = _parse_time(ev.get("Time", ""))
    if start is None or died is None or died < start:
        return None
    return died - start


def _strip_names(member: tarfile.TarInfo, data: bytes) -> bytes | None:
    """The metadata file of an image tarball without the image names it carries (None:
    leave the member out). A loaded image is then known by its id only and cannot take
    over the name of another image of this machine."""
    if member.name.lstrip("./") == "repositories":
        return None
    if member.name.lstrip("./") == "manifest.json":
        doc = json.loads(data)
        if isinstance(doc, list):
            for entry in doc:
                if isinstance(entry, dict):
                    entry["RepoTags"] = None
            return json.dumps(doc).encode()
    if member.name.lstrip("./") == "index.json":
        doc = json.loads(data)
        for man in doc.get("manifests", []) if isinstance(doc, dict) else []:
            annotations = man.get("annotations") if isinstance(man, dict) else None
            if isinstance(annotations, dict):
                annotations.pop("org.opencontainers.image.ref.name", None)
                annotations.pop("io.containerd.image.name", None)
        return json.dumps(doc).encode()
    return data


_METADATA = {"repositories", "manifest.json", "index.json"}


def _copy_without_names(src: IO[bytes], dst: IO[bytes]) -> None:
    """Stream the image tarball ``src`` to ``dst`` member by member, names removed."""
    with (
        tarfile.open(fileobj=src, mode="r|*", bufsize=1 << 20) as tin,
        tarfile.open(fileobj=dst, mode="w|", bufsize=1 << 20, format=tarfile.PAX_FORMAT) as tout,
    ):
        for member in tin:
            if member.isfile() and member.name.lstrip("./") in _METADATA:
                fh = tin.extractfile(member)
                raw = fh.read() if fh is not None else b""
                try:
                    data = _strip_names(member, raw)
                except ValueError:
                    data = raw
                if data is None:
                    continue
                member.size = len(data)
                tout.addfile(member, io.BytesIO(data))
            elif member.isfile():
                tout.addfile(member, tin.extractfile(member))
            else:
                tout.addfile(member)


# where a running container's pids cgroup is (cgroup v1 and v2; podman's cgroupfs and
# systemd managers, docker's)
_PIDS_EVENTS = (
    "/sys/fs/cgroup/pids/*/libpod-{cid}*/pids.events",
    "/sys/fs/cgroup/pids/*/{cid}/pids.events",
    "/sys/fs/cgroup/pids/*/docker-{cid}.scope/pids.events",
    "/sys/fs/cgroup/*/libpod-{cid}*/pids.events",
    "/sys/fs/cgroup/*/docker-{cid}.scope/pids.events",
    "/sys/fs/cgroup/*/{cid}/pids.events",
)


class _PidsWatch:
    """Whether a fork of the running container failed at its pids limit: its cgroup's
    ``pids.events`` counts them (``max N``). Looked at while the run goes on (the
    cgroup goes with the container); best effort: no cgroup found, nothing seen."""

    def __init__(self, cidfile: Path) -> None:
        self.cidfile = cidfile
        self.events: Path | None = None
        self.hit = False
        self._looked = 0

    def poll(self) -> None:
        if self.hit:
            return
        if self.events is None:
            self._looked += 1
            if self._looked > 20:
                return
            try:
                cid = self.cidfile.read_text().strip()
            except OSError:
                return
            if not re.fullmatch(r"[0-9a-f]{12,64}", cid):
                return
            for pattern in _PIDS_EVENTS:
                found = glob.glob(pattern.format(cid=cid))
                if found:
                    self.events = Path(found[0])
                    break
            if self.events is None:
                return
        try:
            text = self.events.read_text()
        except OSError:
            return
        m = re.search(r"^max (\d+)", text, re.MULTILINE)
        self.hit = bool(m and int(m.group(1)) > 0)


@dataclass
class ContainerRuntime:
    """``executable`` is "podman" or "docker"; both take the same flags."""

    name: Literal["podman", "docker"]
    executable: str = ""
    env: Mapping[str, str] | None = None  # extra environment of its commands (DOCKER_HOST)
    kill_grace_seconds: float = KILL_GRACE_SECONDS
    _events_log: Path | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.name not in EXECUTABLES:
            raise ValueError(f"unknown container runtime {self.name!r}: podman or docker")
        if not self.executable:
            self.executable = shutil.which(self.name) or self.name
        if self.name == "podman" and self._events_log is None:
            self._events_log = _EVENTS_LOG  # may appear with the first event

    # --- commands other than the run -------------------------------------------------------

    def _environ(self) -> dict[str, str] | None:
        if not self.env:
            return None
        return {**os.environ, **self.env}

    def command(
        self, *args: str, timeout: float = COMMAND_SECONDS, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``<executable> args...`` with its output captured and a timeout."""
        cmd = [self.executable, *args]
        try:
            res = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                env=self._environ(),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeFailure(
                f"`{self.name} {args[0]}` did not answer in {timeout:.0f} s"
            ) from exc
        except OSError as exc:
            raise RuntimeFailure(f"`{self.name}` could not be started: {exc.strerror}") from exc
        if check and res.returncode != 0:
            raise RuntimeFailure(
                f"`{self.name} {' '.join(args[:2])}` failed (exit {res.returncode}): "
                f"{_printable(res.stderr.strip())[-500:]}"
            )
        return res

    def info(self) -> dict[str, Any]:
        res = self.command("info", "--format", "{{json .}}", timeout=30)
        try:
            doc = json.loads(res.stdout)
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}

    def load(self, tarball: Path) -> str:
        """Load an image tarball (docker-save layout or OCI archive, .tar or .tar.gz) and
        return the image id. The names inside the tarball are not applied: the image is
        known by its id only (tag it with ``tag``)."""
        tarball = Path(tarball)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(
                    [self.executable, "load"],
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=err,
                    env=self._environ(),
                )
            except OSError as exc:
                raise RuntimeFailure(f"`{self.name}` could not be started: {exc.strerror}") from exc
            assert proc.stdin is not None
            # the runtime may stop reading: the watchdog ends it, which ends the writing
            watchdog = threading.Timer(LOAD_SECONDS, proc.kill)
            watchdog.start()
            problem = None
            try:
                with open(tarball, "rb") as src:
                    _copy_without_names(src, proc.stdin)
            except (tarfile.TarError, EOFError, zlib.error) as exc:
                problem = f"{tarball.name} could not be read as an image tarball: {exc}"
            except OSError as exc:
                problem = f"{tarball.name} could not be passed to `{self.name} load`: {exc}"
            finally:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
                rc = proc.wait()
                watchdog.cancel()
            out.seek(0)
            said = out.read(20000).decode(errors="replace")
            err.seek(0)
            stderr = err.read(20000).decode(errors="replace").strip()
        if rc < 0:
            raise RuntimeFailure(f"`{self.name} load` did not finish in {LOAD_SECONDS:.0f} s")
        if rc != 0:
            raise RuntimeFailure(
                f"`{self.name} load` of {tarball.name} failed (exit {rc}): "
                f"{_printable(stderr)[-500:]}"
            )
        if problem:
            raise RuntimeFailure(problem)
        ids = re.findall(r"(?:sha256:)?([0-9a-f]{64})", said)
        if len(set(ids)) != 1:
            raise RuntimeFailure(
                f"`{self.name} load` of {tarball.name}: expected one image, the runtime said "
                f"{_printable(said.strip())[:300]!r}"
            )
        return ids[0]

    def inspect(self, image: str) -> ImageInfo:
        res = self.command("image", "inspect", image)
        try:
            doc = json.loads(res.stdout)
            item = doc[0]
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise RuntimeFailure(f"`{self.name} image inspect {image}` gave no image") from exc
        config = item.get("Config") or {}
        return ImageInfo(
            id=str(item.get("Id", "")).removeprefix("sha256:"),
            size_bytes=int(item.get("Size") or 0),
            architecture=str(item.get("Architecture", "")),
            os=str(item.get("Os", "")),
            user=str(config.get("User") or ""),
            entrypoint=list(config.get("Entrypoint") or []),
            cmd=list(config.get("Cmd") or []),
        )

    def exists(self, image: str) -> bool:
        return self.command("image", "inspect", image, check=False).returncode == 0

    def tag(self, image: str, ref: str) -> None:
        self.command("tag", image, ref)

    def untag(self, ref: str) -> None:
        """Remove the name ``ref``; the image itself goes when no name or container holds it."""
        self.command("rmi", ref)

    def remove(self, ref_or_id: str, *, force: bool = False) -> None:
        self.command("rmi", *(["--force"] if force else []), ref_or_id)

    def images(self, repository: str) -> dict[str, str]:
        """``{"repository:tag": image id}`` of the local images of ``repository``."""
        res = self.command("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", repository)
        found: dict[str, str] = {}
        for line in res.stdout.splitlines():
            ref, _, image_id = line.strip().rpartition(" ")
            if ref.startswith(repository + ":"):
                found[ref] = image_id
        return found

    def container_exists(self, name: str) -> bool:
        res = self.command("ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.Names}}")
        return name in res.stdout.split()

    def remove_container(self, name: str) -> None:
        """Remove the container ``name`` whatever its state; nothing when it is gone."""
        res = self.command("rm", "--force", name, check=False)
        if res.returncode != 0 and "no such container" not in res.stderr.lower():
            log.warning("%s rm %s: %s", self.name, name, res.stderr.strip()[:300])

    # --- the run ---------------------------------------------------------------------------

    def run_command(self, run: CaseRun, cidfile: Path) -> list[str]:
        lim = run.limits
        cmd = [self.executable, "run"]
        if self.name == "podman":
            # docker's client through podman's API loses the exit code with --rm: the
            # container is removed after the run there
            cmd.append("--rm")
        cmd += [
            "--pull=never",
            "--log-driver=none",
            "--network=none",
            "--read-only",
            "--tmpfs",
            f"/tmp:rw,size={lim.tmp_mb}m,mode=1777",
            "-v",
            f"{Path(run.input_dir).resolve()}:/input:ro",
            "-v",
            f"{Path(run.output_dir).resolve()}:/output:rw",
        ]
        if run.model_dir is not None:
            cmd += ["-v", f"{Path(run.model_dir).resolve()}:/opt/ml/model:ro"]
        cmd += [
            "--memory",
            f"{lim.memory_mb}m",
            "--memory-swap",
            f"{lim.memory_mb}m",
            "--pids-limit",
            str(lim.pids),
            "--cpus",
            f"{lim.cpus:g}",
            "--security-opt",
            "no-new-privileges",
            "--cap-drop",
            "ALL",
            "--user",
            CONTAINER_USER,
            "--stop-timeout",
            "0",
            "--cidfile",
            str(cidfile),
            "--name",
            run.name,
            "--env",
            "HOME=/tmp",
        ]
        if self.name == "podman":
            cmd += ["--timeout", str(lim.seconds)]
        if lim.gpu:
            cmd += (
                ["--device", "nvidia.com/gpu=all"] if self.name == "podman" else ["--gpus", "all"]
            )
        cmd.append(run.image)
        return cmd

    def _kill(self, name: str) -> None:
        res = self.command("kill", name, check=False, timeout=30)
        if res.returncode != 0:
            log.info("%s kill %s: %s", self.name, name, res.stderr.strip()[:200])

    def _pump(
        self,
        proc: subprocess.Popen[bytes],
        capture: _Capture,
        run: CaseRun,
        pids: _PidsWatch | None = None,
    ) -> bool:
        """Read the run's output until it ends; kill it through the runtime at the limit
        (docker) or when the runtime's own limit did not end it (podman). True when this
        process stopped the container."""
        started = time.monotonic()
        limit = run.limits.seconds
        kill_at = started + (limit if self.name == "docker" else limit + self.kill_grace_seconds)
        force_at: float | None = None
        killed = False
        sel = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None
        for stream, is_err in ((proc.stdout, False), (proc.stderr, True)):
            os.set_blocking(stream.fileno(), False)
            sel.register(stream.fileno(), selectors.EVENT_READ, is_err)
        try:
            while True:
                now = time.monotonic()
                if pids is not None:
                    pids.poll()
                if not killed and now >= kill_at:
                    self._kill(run.name)
                    killed = True
                    force_at = time.monotonic() + self.kill_grace_seconds
                elif force_at is not None and now >= force_at:
                    proc.kill()
                    force_at = None
                wake = force_at if killed else kill_at
                wait = max(0.0, min(1.0, (wake or now + 1.0) - now))
                if sel.get_map():
                    for key, _ in sel.select(timeout=wait):
                        try:
                            data = os.read(key.fd, 65536)
                        except BlockingIOError:
                            continue
                        if data:
                            capture.add(data, stderr=key.data)
                        else:
                            sel.unregister(key.fd)
                    if sel.get_map():
                        continue
                try:
                    proc.wait(timeout=wait if proc.poll() is None else 0)
                    return killed
                except subprocess.TimeoutExpired:
                    continue
        finally:
            sel.close()

    def _events_offset(self) -> int | None:
        if self._events_log is None:
            return None
        try:
            return self._events_log.stat().st_size
        except OSError:
            return 0  # no event yet: the run's are the first

    def _events_since(self, offset: int | None) -> bytes:
        if self._events_log is None or offset is None:
            return b""
        try:
            with open(self._events_log, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                fh.seek(offset if size >= offset else 0)
                return fh.read(4 * 1024 * 1024)
        except OSError:
            return b""

    def _oom_killed(self, cid: str) -> bool:
        """Whether the kernel logged an out-of-memory kill in this container's cgroup."""
        if not cid:
            return False
        try:
            res = subprocess.run(
                ["dmesg"], capture_output=True, timeout=10, stdin=subprocess.DEVNULL, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return any(
            cid.encode() in line and b"oom" in line.lower() for line in res.stdout.splitlines()
        )

    def run_case(self, run: CaseRun) -> CaseOutcome:
        """Run the image once on ``run.input_dir``; the container is gone afterwards."""
        tmp = Path(tempfile.mkdtemp(prefix="hecktor-run-"))
        cidfile = tmp / "cid"
        offset = self._events_offset()
        capture = _Capture()
        started = time.monotonic()
        proc: subprocess.Popen[bytes] | None = None
        settled = False
        try:
            try:
                proc = subprocess.Popen(
                    self.run_command(run, cidfile),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=self._environ(),
                    # conmon leaves a file named "oom" in its working folder when the
                    # container runs out of memory: in the run's own folder, not ours
                    cwd=tmp,
                )
            except OSError as exc:
                raise RuntimeFailure(
                    f"`{self.name} run` could not be started: {exc.strerror}"
                ) from exc
            pids = _PidsWatch(cidfile)
            killed = self._pump(proc, capture, run, pids)
            wall = time.monotonic() - started
            rc = proc.returncode
            settled = self.name == "podman" and not killed
            try:
                cid = cidfile.read_text().strip()
            except OSError:
                cid = ""
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            if not settled:
                with contextlib.suppress(RuntimeFailure):
                    self.remove_container(run.name)
            shutil.rmtree(tmp, ignore_errors=True)
        capture.finish()
        own = _container_seconds(self._events_since(offset), cid) if cid else None
        outcome = self._outcome(run, rc, wall, killed, cid, capture, own)
        return dataclasses.replace(outcome, pids_limit_hit=pids.hit) if pids.hit else outcome

    def _outcome(
        self,
        run: CaseRun,
        rc: int,
        wall: float,
        killed: bool,
        cid: str,
        capture: _Capture,
        own_seconds: float | None,
    ) -> CaseOutcome:
        lim = run.limits
        last = capture.last_stderr_line()
        common: dict[str, Any] = {
            "exit_code": rc,
            "seconds": wall,
            "last_stderr_line": last,
            "log": capture.text(),
            "overhead_seconds": max(0.0, wall - own_seconds) if own_seconds is not None else 0.0,
            "output_full": output_full(run.output_dir),
        }
        timed_out = killed or (
            self.name == "podman" and rc == _TIMEOUT_EXIT and wall >= lim.seconds - 0.5
        )
        if timed_out:
            return CaseOutcome(
                kind="time",
                message=f"did not finish within the time limit of {lim.seconds} s and was stopped",
                **common,
            )
        if rc == _SIGKILL_EXIT or rc == -9:
            if self._oom_killed(cid):
                return CaseOutcome(
                    kind="memory",
                    memory_evidence="kernel",
                    message=f"went over the memory limit of {lim.memory_mb} MB and was killed",
                    **common,
                )
            return CaseOutcome(
                kind="memory",
                message=(
                    f"was killed by SIGKILL, most likely over the memory limit of {lim.memory_mb} MB"
                ),
                **common,
            )
        # 125 is the runtime's own failure, unless the container ran (the event log has
        # its run time): then the algorithm itself exited 125, which is its fault
        runtime_failed = rc == _RUNTIME_ERROR_EXIT and own_seconds is None
        if runtime_failed or (rc < 0 and not killed):
            return CaseOutcome(
                kind="runtime",
                # the runtime's own words (last_stderr_line, log) may name host paths:
                # for the organizers only
                message="the container runtime failed to start the container (a platform failure)",
                **common,
            )
        if common["output_full"] and rc != 0:
            message = (
                f"exited with code {rc} with /output full: output size limit of "
                f"{lim.output_mb} MB exceeded"
            )
        elif rc in _NOT_RUN:
            message = f"exited with code {rc}: {_NOT_RUN[rc]}"
        else:
            message = f"exited with code {rc}"
        return CaseOutcome(kind="exited", message=message, **common)


def detect_runtime(
    choice: str = "auto", *, env: Mapping[str, str] | None = None
) -> ContainerRuntime:
    """The runtime ``choice`` names ("auto": podman, else docker), checked with
    ``<exe> info``; RuntimeUnavailable says what is missing and how to fix it."""
    if choice == "none":
        raise RuntimeUnavailable(
            "algorithm submissions are switched off here (HECKTOR_CONTAINER_RUNTIME=none); "
            "set it to auto, podman or docker on a machine with a container runtime"
        )
    if choice not in ("auto", *EXECUTABLES):
        raise RuntimeUnavailable(
            f"unknown container runtime {choice!r}: set HECKTOR_CONTAINER_RUNTIME to auto, podman or docker"
        )
    names = EXECUTABLES if choice == "auto" else (choice,)
    problems = []
    for name in names:
        exe = shutil.which(name)
        if exe is None:
            problems.append(f"{name} is not installed")
            continue
        rt = ContainerRuntime(name=name, executable=exe, env=env)  # type: ignore[arg-type]
        try:
            rt.command("info", timeout=30)
        except RuntimeFailure as exc:
            problems.append(f"{name} is installed but does not answer ({exc})")
            continue
        return rt
    hint = (
        "install podman (docker/local/setup-runtime.sh up sets it up as the service expects), "
        "or start the docker daemon (for docker through podman's socket: "
        "DOCKER_HOST=unix:///run/podman/podman.sock), "
        "or set HECKTOR_CONTAINER_RUNTIME to the runtime that works here"
    )
    raise RuntimeUnavailable(
        "no container runtime works: " + "; ".join(problems) + ". Fix: " + hint
    )
