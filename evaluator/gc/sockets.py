"""The algorithm outputs each protocol's tasks score, found by the socket's relative path.

A socket's ``relative_path`` is where the algorithm wrote the output (``/output/<relative
path>``) and where the evaluation finds it (``/input/<job pk>/output/<relative path>``),
so it is what is matched; slugs are titles an organiser may rename. An image task whose
documented path is absent from a job takes the job's only image output.

The outputs are declared by the protocol's edition, task by task
(:class:`evaluator.editions.base.AlgorithmOutput`), so an edition brings its sockets
with it; this module only reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from evaluator.editions.base import AlgorithmOutput
from evaluator.protocol import Protocol

__all__ = ["OutputSocket", "ProtocolSockets", "sockets_for"]

OutputSocket = AlgorithmOutput


@dataclass(frozen=True, kw_only=True)
class ProtocolSockets:
    """The sockets of one protocol: the CT input that names the patient and, per task,
    the outputs it scores."""

    protocol: str
    tasks: Mapping[int, tuple[OutputSocket, ...]]
    default_task: str  # what --task means when not given: "auto" or "all"
    ct_slug: str = "ct-image"
    ct_relative_path: str = "images/ct"

    def image_socket(self, task: int) -> OutputSocket | None:
        return next((s for s in self.tasks[task] if s.image), None)


def sockets_for(protocol: Protocol) -> ProtocolSockets:
    """The socket table of ``protocol``'s edition (a variant of an edition, under
    another name, has its edition's sockets); raises ``KeyError`` when the edition
    declares no algorithm outputs."""
    tasks = {t: spec.outputs for t, spec in protocol.TASKS.items() if spec.outputs}
    if not tasks:
        raise KeyError(
            f"protocol {protocol.name!r} declares no grand-challenge algorithm outputs "
            "(TaskSpec.outputs of its edition)"
        )
    return ProtocolSockets(
        protocol=protocol.name,
        tasks=tasks,
        # one task per phase (the one whose ground truth is there), or every task when
        # one container writes every output of every case
        default_task="all" if protocol.ONE_JOB_ALL_TASKS else "auto",
    )
