"""Task 1 cases scored over several processes: every process, the calling one
included, takes the next case from a shared counter, so the load balances itself and
no process waits for work."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Iterator
from multiprocessing import connection
from typing import Any

import numpy as np

from evaluator.errors import ScoringProcessError
from evaluator.pipeline.case import CaseJob, CaseResult, run_case

__all__ = ["map_cases"]


def _pool_context() -> Any:
    """Plain fork when this process runs no other thread (instant start, nothing
    imported again); otherwise a fork server that has imported the scorer once,
    since forking a process that runs threads can deadlock."""
    if os.name != "posix":  # pragma: no cover
        return multiprocessing.get_context("spawn")
    if threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["evaluator.pipeline.pool"])
    return ctx


def _take(counter: Any) -> int:
    """The next case index from the counter shared by all scoring processes."""
    with counter.get_lock():
        i: int = counter.value
        counter.value = i + 1
    return i


def _case_worker(jobs: list[CaseJob], counter: Any, out: Any, out_lock: Any) -> None:
    """A scoring process: take the next case index until none is left; send
    ``("case", i, result)`` per case, ``("error", i, message)`` if a case raised
    something other than a submission problem, and ``("done", pid)`` at the end."""

    def send(msg: tuple[Any, ...]) -> None:
        with out_lock:  # one pipe, several writers: whole messages only
            out.send(msg)

    try:
        while (i := _take(counter)) < len(jobs):
            try:
                result = run_case(jobs[i])
            except Exception as exc:  # a bug or a MemoryError: reported, never swallowed
                send(("error", i, f"{type(exc).__name__}: {exc}"))
                return
            send(("case", i, result))
    finally:
        send(("done", os.getpid()))


class _Pool:
    """The other scoring processes of one submission and the pipe they report on."""

    def __init__(self, order: list[CaseJob], workers: int) -> None:
        ctx = _pool_context()
        self.order = order
        self.counter = ctx.Value("q", 0)
        self.reader, writer = ctx.Pipe(duplex=False)
        # kept while the children run: a spawned child finds the lock by its name
        self.write_lock = ctx.Lock()
        self.procs = [
            ctx.Process(
                target=_case_worker,
                args=(order, self.counter, writer, self.write_lock),
                daemon=True,
            )
            for _ in range(min(workers, len(order)) - 1)
        ]
        for p in self.procs:
            p.start()
        writer.close()  # the children hold their own ends
        self.received: set[int] = set()
        self.running = {p.pid: p for p in self.procs}  # children that have not said "done"

    def died(self, p: Any) -> ScoringProcessError:
        p.join(1.0)  # its pipe end can close before it is reaped: wait for the exit code
        lost = [j.pred_name for i, j in enumerate(self.order) if i not in self.received]
        more = " ..." if len(lost) > 5 else ""
        return ScoringProcessError(
            f"a scoring process died (exit code {p.exitcode}) before reporting; "
            f"no result for {', '.join(lost[:5])}{more}"
        )

    def _next_message(self, *, block: bool) -> tuple[Any, ...] | None:
        """The next message of a child; None when none is waiting and not ``block``."""
        if not self.reader.poll():
            if not block:
                return None
            sentinels = [p.sentinel for p in self.running.values()]
            ready = connection.wait([self.reader, *sentinels])
            if self.reader not in ready:  # a child ended without saying "done"
                raise self.died(next(p for p in self.running.values() if p.sentinel in ready))
        try:
            msg: tuple[Any, ...] = self.reader.recv()
        except EOFError:  # every writer is gone
            raise self.died(next(iter(self.running.values()))) from None
        return msg

    def drain(self, *, block: bool) -> Iterator[CaseResult]:
        """The children's results so far (``block``: until every child is done)."""
        while self.running:
            msg = self._next_message(block=block)
            if msg is None:
                return
            if msg[0] == "done":
                self.running.pop(msg[1], None)
            elif msg[0] == "error":
                raise ScoringProcessError(
                    f"scoring case {self.order[msg[1]].pred_name} failed: {msg[2]}"
                )
            else:
                self.received.add(msg[1])
                yield msg[2]

    def close(self) -> None:
        self.reader.close()
        for p in self.procs:
            if p.pid in self.running and p.is_alive():  # stopped early, by an error somewhere
                p.terminate()
        for p in self.procs:
            # a child that said "done" exits on its own (tearing down its memory takes
            # milliseconds): reaped now if it is gone, else by multiprocessing later
            p.join(timeout=None if p.pid in self.running else 0)


def map_cases(jobs: list[CaseJob], workers: int) -> Iterator[CaseResult]:
    """Run the jobs, largest volume first, in this process and ``workers - 1`` others.

    The calling process scores cases too (it is warm, and would otherwise only wait)
    and forwards the others' results between its own cases; there is no executor
    thread to compete with it for the GIL. Results come back in completion order.
    """
    order = sorted(jobs, key=lambda j: -int(np.prod(j.gt.shape, dtype=np.int64)))
    if workers <= 1 or len(order) <= 1:
        for job in order:
            yield run_case(job)
        return
    pool = _Pool(order, workers)
    try:
        while (i := _take(pool.counter)) < len(order):
            result = run_case(order[i])
            pool.received.add(i)
            yield result
            yield from pool.drain(block=False)
        yield from pool.drain(block=True)
    finally:
        pool.close()
