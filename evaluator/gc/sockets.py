"""The algorithm outputs each protocol's tasks score, found by the socket's relative path.

A socket's ``relative_path`` is where the algorithm wrote the output (``/output/<relative
path>``) and where the evaluation finds it (``/input/<job pk>/output/<relative path>``),
so it is what is matched; slugs are titles an organiser may rename. An image task whose
documented path is absent from a job takes the job's only image output.

A protocol is one more entry of :data:`SOCKETS`, keyed by the protocol's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from evaluator.io.table_text import CASE_FILES

__all__ = ["SOCKETS", "OutputSocket", "ProtocolSockets", "sockets_for"]


@dataclass(frozen=True, kw_only=True)
class OutputSocket:
    """One output of an algorithm job that a task scores."""

    relative_path: str  # e.g. "images/tumor-lymph-node-segmentation" or "rfs.json"
    image: bool  # an image socket (a folder holding one .mha) or a JSON value file
    case_file: str | None = None  # value sockets: the file name in the staged case folder
    also: tuple[str, ...] = ()  # other relative paths accepted for the same output


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


_SEGMENTATION_2025 = OutputSocket(
    relative_path="images/tumor-lymph-node-segmentation",
    image=True,
    also=("images/gtv-segmentation", "images/head-neck-tumor-segmentation"),
)
_SEGMENTATION_2026 = OutputSocket(
    relative_path="images/head-neck-tumor-segmentation",
    image=True,
    also=("images/tumor-lymph-node-segmentation", "images/gtv-segmentation"),
)
_RFS = OutputSocket(relative_path="rfs.json", image=False, case_file=CASE_FILES[2])

SOCKETS: dict[str, ProtocolSockets] = {
    "hecktor2025": ProtocolSockets(
        protocol="hecktor2025",
        tasks={
            1: (_SEGMENTATION_2025,),
            2: (_RFS,),
            3: (
                OutputSocket(relative_path="hpv-status.json", image=False, case_file=CASE_FILES[3]),
            ),
        },
        default_task="auto",  # one task per phase: the one whose ground truth is there
    ),
    "hecktor2026": ProtocolSockets(
        protocol="hecktor2026",
        tasks={
            1: (_SEGMENTATION_2026,),
            2: (_RFS,),
            3: (
                OutputSocket(relative_path="t-stage.json", image=False, case_file="t-stage.json"),
                OutputSocket(relative_path="n-stage.json", image=False, case_file="n-stage.json"),
            ),
        },
        default_task="all",  # one container writes every output of every case
    ),
}


def sockets_for(protocol_name: str) -> ProtocolSockets:
    """The socket table of a protocol; raises ``KeyError`` naming the known ones."""
    try:
        return SOCKETS[protocol_name]
    except KeyError:
        raise KeyError(
            f"no grand-challenge socket table for protocol {protocol_name!r}; "
            f"known: {', '.join(sorted(SOCKETS))}"
        ) from None
