"""Per-job isolation: run one judging job in a forked child process with an address-space
limit (``RLIMIT_AS``) and a wall-time limit enforced from outside.

Every dispatcher runs its jobs through :func:`run_in_child` (via
:func:`app.jobs.runner.run_job`), so the same limits hold in the local pool and in a
Celery worker:

- the child sets ``RLIMIT_AS`` on itself around the scorer; an allocation over it raises
  ``MemoryError`` (reported by the job with the limit named) or, in native code, kills
  the child (reported by the parent, naming the limit as the likely cause);
- the parent waits at most ``timeout`` seconds, then kills the child with ``SIGKILL``:
  a limit that holds even when the scorer is stuck in C code, where a ``SIGALRM``
  handler would never run;
- the child gets ``PR_SET_PDEATHSIG``: if the parent dies (a worker killed with
  ``SIGKILL``), the job dies with it instead of running on as an orphan; the local
  pool's processes watch their own parent (:func:`watch_parent`), so a killed server
  leaves no judge behind;
- the child's environment is scrubbed of secrets before it runs anything
  (:func:`scrub_environment`): it never sees the organizer token or the database and
  broker passwords, in ``os.environ`` or in ``/proc/self/environ``. It needs none of
  them: it opens no database connection and reports through a pipe only;
- the child talks to its parent through that pipe: any number of messages
  (:func:`send_to_parent`, e.g. progress) and, at the end, its report;
- the parent never has its limits lowered, so it can always record the outcome and
  goes on serving the next job.

``fork`` (not ``spawn``) keeps the warm state of the parent (imported scorer, cached
ground truth) at no cost; the database engines inherited from the parent are set
aside in the child by :mod:`app.db.session`'s at-fork hook, and the child leaves with
``os._exit`` so that nothing inherited is finalised.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CAN_FORK = hasattr(os, "fork") and sys.platform != "darwin"  # macOS: fork without exec is unsafe
PR_SET_PDEATHSIG = 1
_POLL = 0.25  # seconds between looks at the child while waiting
EXIT_ERROR = 70  # an exception escaped the target (EX_SOFTWARE); its traceback is on stderr
EXIT_MEMORY = 71  # a MemoryError escaped the target
# Environment variables a judging child never sees: by exact name, and any name with one
# of these words in it; in every other value, the password of a ``scheme://user:pw@``
# URL is masked.
SECRET_NAMES = ("HECKTOR_ORGANIZER_TOKEN",)
SECRET_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN")
_URL_PASSWORD = re.compile(rb"(?P<head>[a-z][a-z0-9+.-]*://[^/@:\s]*:)(?P<pw>[^@/\s]+)(?=@)", re.I)
_FRAME_MESSAGE = "m"  # one line of the pipe: {"m": {...}} a message, {"r": {...}} the report
_FRAME_REPORT = "r"
_channel_fd: int | None = None  # the child's end of the pipe (set in the child only)


@dataclass(frozen=True)
class ChildOutcome:
    """What happened to the child: its report (a JSON object it wrote), or how it ended."""

    report: dict[str, Any] | None
    timed_out: bool = False
    exit_code: int | None = None  # when it exited
    signal: int | None = None  # when a signal killed it
    elapsed: float = 0.0

    @property
    def ended(self) -> str:
        if self.timed_out:
            return "stopped at the time limit"
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = str(self.signal)
            return f"killed by signal {name}"
        return f"exited with code {self.exit_code}"


def set_memory_limit(megabytes: int) -> None:
    """Lower this process's soft ``RLIMIT_AS`` to ``megabytes`` (never above the hard one)."""
    if megabytes <= 0:
        return
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    want = megabytes << 20
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    resource.setrlimit(resource.RLIMIT_AS, (want, hard))


def lift_memory_limit() -> None:
    """Raise the soft ``RLIMIT_AS`` back to the hard limit (to report a ``MemoryError``)."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """``prctl(PR_SET_PDEATHSIG, sig)``: the kernel sends ``sig`` to this process when the
    *thread* that forked it ends. True when set (Linux); False elsewhere (a no-op)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        return False


def _die_with_parent(parent_pid: int) -> None:
    # The thread that forks a judging child waits for it in run_in_child, so the
    # thread-bound signal fires exactly when the parent process (or that wait) is gone.
    set_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def watch_parent(interval: float = 0.25) -> None:
    """For a long-lived helper process (a local pool process): die with ``SIGKILL`` as
    soon as the parent process is gone, and with it this process's judging child (which
    has ``PR_SET_PDEATHSIG`` on it).

    ``PR_SET_PDEATHSIG`` alone cannot be used here: the kernel ties it to the *thread*
    that started the process, and a pool starts its processes from whichever thread
    submits a job (a request thread that ends after a while would take a judge with
    it). So a daemon thread compares ``getppid()`` with the parent's pid instead.
    """
    parent = os.getppid()
    if parent <= 1:
        return

    def _watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=_watch, name="watch-parent", daemon=True).start()


def _is_secret_name(name: str) -> bool:
    upper = name.upper()
    return upper in SECRET_NAMES or any(word in upper for word in SECRET_WORDS)


def _mask_url_passwords(value: bytes) -> bytes:
    return _URL_PASSWORD.sub(lambda m: m.group("head") + b"*" * len(m.group("pw")), value)


def _scrub_proc_environ() -> None:
    """Overwrite the secret values in this process's initial environment block, the
    memory ``/proc/self/environ`` shows (``os.environ`` changes do not reach it)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        fields = Path("/proc/self/stat").read_bytes().rsplit(b")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end (fields 50, 51)
    except (OSError, IndexError, ValueError):
        return
    if not 0 < start < end or end - start > 1 << 24:
        return
    block = ctypes.string_at(start, end - start)
    offset = 0
    for entry in block.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep:
            at = start + offset + len(name) + 1
            if _is_secret_name(name.decode("latin-1")):
                ctypes.memset(at, ord("*"), len(value))
            elif (masked := _mask_url_passwords(value)) != value:
                ctypes.memmove(at, masked, len(value))
        offset += len(entry) + 1


def scrub_environment() -> list[str]:
    """Remove secrets from this process's environment (a judging child, before it runs
    anything untrusted): variables named like secrets (:data:`SECRET_NAMES`,
    :data:`SECRET_WORDS`) are dropped, URL passwords in the others (the database and
    broker URLs) are masked, in ``os.environ`` and in ``/proc/self/environ``. Returns
    the names touched."""
    touched: list[str] = []
    for name in list(os.environ):
        value = os.environ[name]
        if _is_secret_name(name):
            del os.environ[name]
            touched.append(name)
            continue
        masked = _mask_url_passwords(value.encode("utf-8", "surrogateescape"))
        if masked != value.encode("utf-8", "surrogateescape"):
            os.environ[name] = masked.decode("utf-8", "surrogateescape")
            touched.append(name)
    with contextlib.suppress(Exception):
        _scrub_proc_environ()
    return touched


def _write_frame(fd: int, kind: str, obj: dict[str, Any]) -> None:
    data = json.dumps({kind: obj}, default=str).encode() + b"\n"
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def send_to_parent(message: dict[str, Any]) -> None:
    """From inside a judging child: hand ``message`` (small, JSON) to the parent's
    ``on_message``. Outside a child it does nothing."""
    if _channel_fd is not None:
        _write_frame(_channel_fd, _FRAME_MESSAGE, message)


def _child_main(
    target: Callable[[], dict[str, Any]], write_fd: int, parent_pid: int, *, scrub_env: bool
) -> None:
    """Body of the forked child. Never returns: leaves with ``os._exit``."""
    global _channel_fd
    code = EXIT_ERROR
    try:
        _die_with_parent(parent_pid)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the parent
        for sig in (signal.SIGTERM, signal.SIGALRM, signal.SIGUSR1, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        if scrub_env:
            scrub_environment()
        _channel_fd = write_fd
        report = target()
        _write_frame(write_fd, _FRAME_REPORT, report)
        code = 0
    except MemoryError:
        code = EXIT_MEMORY
    except BaseException:
        with contextlib.suppress(BaseException):
            lift_memory_limit()
            sys.stderr.write(f"judging child {os.getpid()} failed:\n{traceback.format_exc()}")
            sys.stderr.flush()
    finally:
        with contextlib.suppress(BaseException):
            sys.stderr.flush()
            sys.stdout.flush()
        os._exit(code)


def run_in_child(
    target: Callable[[], dict[str, Any]],
    *,
    timeout: float,
    on_message: Callable[[dict[str, Any]], None] | None = None,
    scrub_env: bool = True,
) -> ChildOutcome:
    """Run ``target`` in a forked child, killed after ``timeout`` seconds of wall time
    (0 = no limit). ``target`` applies its own memory limit (:func:`set_memory_limit`)
    around the untrusted work, so that it can still report going over it.

    ``target`` returns a JSON-serialisable dict, handed back as the outcome's
    ``report``; a child that is killed, crashes or exits without one yields
    ``report=None`` with the reason. What the child sends on the way
    (:func:`send_to_parent`) is passed to ``on_message`` in this process as it arrives
    (an exception there is logged, never raised). With ``scrub_env`` the child drops
    its secrets first (:func:`scrub_environment`). The caller's process keeps its own
    limits.
    """
    if not CAN_FORK:  # pragma: no cover - Windows/macOS: see runner's in-process path
        raise RuntimeError("process isolation needs os.fork (Linux)")
    read_fd, write_fd = os.pipe()
    parent_pid = os.getpid()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        _child_main(target, write_fd, parent_pid, scrub_env=scrub_env)
    os.close(write_fd)
    frames = _Frames(on_message)
    try:
        status, timed_out = _wait(pid, read_fd, frames, started + timeout if timeout > 0 else None)
    except BaseException:  # the parent is being stopped: take the child with it
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise
    finally:
        os.close(read_fd)
    elapsed = time.monotonic() - started
    frames.close()
    report = None if timed_out else frames.report
    exit_code = os.waitstatus_to_exitcode(status)
    return ChildOutcome(
        report=report,
        timed_out=timed_out,
        exit_code=exit_code if exit_code >= 0 else None,
        signal=-exit_code if exit_code < 0 else None,
        elapsed=elapsed,
    )


def _wait(pid: int, read_fd: int, frames: _Frames, deadline: float | None) -> tuple[int, bool]:
    """Read the child's frames until it ends, killing it at ``deadline``. Returns its
    wait status and whether it was killed at the deadline."""
    while True:
        wait = _POLL if deadline is None else min(_POLL, max(0.0, deadline - time.monotonic()))
        ready, _, _ = select.select([read_fd], [], [], wait)
        if ready:
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:  # the child closed its end: it is exiting
                return os.waitpid(pid, 0)[1], False
            frames.append(chunk)
        done, status = os.waitpid(pid, os.WNOHANG)
        timed_out = not done and deadline is not None and time.monotonic() >= deadline
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            status = os.waitpid(pid, 0)[1]
        if done or timed_out:
            _drain(read_fd, frames)
            return status, timed_out


def _drain(read_fd: int, frames: _Frames) -> None:
    """Read what the child wrote before it ended."""
    while True:
        ready, _, _ = select.select([read_fd], [], [], 0)
        if not ready:
            return
        chunk = os.read(read_fd, 1 << 16)
        if not chunk:
            return
        frames.append(chunk)


class _Frames:
    """The parent's side of the pipe: splits what arrives into lines, hands messages to
    ``on_message`` and keeps the report."""

    def __init__(self, on_message: Callable[[dict[str, Any]], None] | None) -> None:
        self.on_message = on_message
        self.buf = bytearray()
        self.report: dict[str, Any] | None = None

    def append(self, chunk: bytes) -> None:
        self.buf.extend(chunk)
        while (nl := self.buf.find(b"\n")) >= 0:
            line = bytes(self.buf[:nl])
            del self.buf[: nl + 1]
            self._frame(line)

    def close(self) -> None:
        if self.buf:  # no newline: a child cut off mid-write; ignored unless whole
            line, self.buf = bytes(self.buf), bytearray()
            self._frame(line)

    def _frame(self, line: bytes) -> None:
        try:
            frame = json.loads(line)
        except ValueError:
            return
        if not isinstance(frame, dict):
            return
        if isinstance(frame.get(_FRAME_REPORT), dict):
            self.report = frame[_FRAME_REPORT]
        elif isinstance(frame.get(_FRAME_MESSAGE), dict) and self.on_message is not None:
            try:
                self.on_message(frame[_FRAME_MESSAGE])
            except Exception:
                log.warning("judging child: a message was not handled", exc_info=True)
