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
  ``SIGKILL``), the job dies with it instead of running on as an orphan;
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
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

CAN_FORK = hasattr(os, "fork") and sys.platform != "darwin"  # macOS: fork without exec is unsafe
PR_SET_PDEATHSIG = 1
_POLL = 0.25  # seconds between looks at the child while waiting
EXIT_ERROR = 70  # an exception escaped the target (EX_SOFTWARE); its traceback is on stderr
EXIT_MEMORY = 71  # a MemoryError escaped the target


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


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _child_main(target: Callable[[], dict[str, Any]], write_fd: int, parent_pid: int) -> None:
    """Body of the forked child. Never returns: leaves with ``os._exit``."""
    code = EXIT_ERROR
    try:
        _die_with_parent(parent_pid)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the parent
        for sig in (signal.SIGTERM, signal.SIGALRM, signal.SIGUSR1, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        report = target()
        data = json.dumps(report, default=str).encode()
        view = memoryview(data)
        while view:
            n = os.write(write_fd, view)
            view = view[n:]
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


def run_in_child(target: Callable[[], dict[str, Any]], *, timeout: float) -> ChildOutcome:
    """Run ``target`` in a forked child, killed after ``timeout`` seconds of wall time
    (0 = no limit). ``target`` applies its own memory limit (:func:`set_memory_limit`)
    around the untrusted work, so that it can still report going over it.

    ``target`` returns a small JSON-serialisable dict, handed back as the outcome's
    ``report``; a child that is killed, crashes or exits without one yields
    ``report=None`` with the reason. The caller's process keeps its own limits.
    """
    if not CAN_FORK:  # pragma: no cover - Windows/macOS: see runner's in-process path
        raise RuntimeError("process isolation needs os.fork (Linux)")
    read_fd, write_fd = os.pipe()
    parent_pid = os.getpid()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        _child_main(target, write_fd, parent_pid)
    os.close(write_fd)
    deadline = started + timeout if timeout > 0 else None
    chunks: list[bytes] = []
    timed_out, status, open_pipe = False, None, True
    try:
        while status is None:
            wait = _POLL
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            if open_pipe:
                ready, _, _ = select.select([read_fd], [], [], wait)
                if ready:
                    chunk = os.read(read_fd, 1 << 16)
                    if chunk:
                        chunks.append(chunk)
                    else:  # the child closed its end: it is exiting
                        open_pipe = False
                        _, status = os.waitpid(pid, 0)
                        break
            else:
                time.sleep(wait)
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                break
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
        if open_pipe:  # drain what the child wrote before it ended
            while True:
                ready, _, _ = select.select([read_fd], [], [], 0)
                if not ready:
                    break
                chunk = os.read(read_fd, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    except BaseException:  # the parent is being stopped: take the child with it
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise
    finally:
        os.close(read_fd)
    elapsed = time.monotonic() - started
    report: dict[str, Any] | None = None
    if chunks and not timed_out:
        try:
            parsed = json.loads(b"".join(chunks))
            report = parsed if isinstance(parsed, dict) else None
        except ValueError:
            report = None
    exit_code = os.waitstatus_to_exitcode(status)
    return ChildOutcome(
        report=report,
        timed_out=timed_out,
        exit_code=exit_code if exit_code >= 0 else None,
        signal=-exit_code if exit_code < 0 else None,
        elapsed=elapsed,
    )


def format_duration(seconds: float) -> str:
    """``1800`` -> ``30 min``; ``5400`` -> ``1 h 30 min``; ``90`` -> ``90 s``."""
    s = int(seconds)
    if s >= 3600 and s % 60 == 0:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    if s >= 60 and s % 60 == 0:
        return f"{s // 60} min"
    return f"{s} s"
