"""The per-job limits on memory and wall time, and what participants are told when a
job goes over one of them or its judging process dies.

The limits are set from the settings (``job_memory_mb``, ``job_timeout_seconds``). In a
judging child (:func:`app.jobs.isolation.run_in_child`) the child lowers its own
``RLIMIT_AS`` around the scorer (:func:`memory_limit`) and its parent enforces the time
limit from outside; without ``fork`` a pool process applies both to itself
(:func:`memory_limit`, :func:`time_limit`).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.jobs.isolation import ChildOutcome, set_memory_limit

# What a submission is told when a local judging process died with it twice (the pool
# cannot tell the memory limit from a crash in native code).
POOL_CRASH_MESSAGE = (
    "the judging process stopped unexpectedly while scoring this "
    "submission (out of memory or a crash); check the image sizes and types"
)


class JobTimeout(Exception):
    pass


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """SIGALRM-based limit; only in the main thread of a process (pool workers are)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(_signum: int, _frame: Any) -> None:
        raise JobTimeout(seconds)

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextmanager
def memory_limit(megabytes: int) -> Iterator[None]:
    """RLIMIT_AS (soft) for the duration of the block; the previous value afterwards."""
    if megabytes <= 0:
        yield
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    set_memory_limit(megabytes)
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def format_duration(seconds: float) -> str:
    """``1800`` -> ``30 min``; ``5400`` -> ``1 h 30 min``; ``90`` -> ``90 s``."""
    s = int(seconds)
    if s >= 3600 and s % 60 == 0:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    if s >= 60 and s % 60 == 0:
        return f"{s // 60} min"
    return f"{s} s"


def memory_message(megabytes: int) -> str:
    if megabytes <= 0:
        return "judging ran out of memory; check the image sizes and data types of the predictions"
    return (
        f"judging used more than {megabytes} MB of memory (the limit per submission) and was "
        "stopped; check the image sizes and data types of the predictions (3-D integer label "
        "maps on the CT grid)"
    )


def time_message(seconds: float) -> str:
    return (
        f"judging took longer than {format_duration(seconds)} (the time limit per submission) "
        "and was stopped; check that the archive holds only the expected predictions"
    )


def crash_message(outcome: ChildOutcome, megabytes: int) -> str:
    msg = (
        f"the judging process stopped unexpectedly ({outcome.ended}) while scoring this submission"
    )
    if megabytes > 0:
        return (
            f"{msg}; it most likely used more than {megabytes} MB of memory (the limit per "
            "submission): check the image sizes and data types of the predictions"
        )
    return f"{msg}; check the image sizes and data types of the predictions"
