"""The scoring protocol: every switch of the rules as one versioned, hashable object.

A protocol is stored with the ground truth of a phase and recorded (name, version,
SHA-256 of its canonical JSON) in every result, so a score can always be traced to
the exact rules that produced it. Each edition of the rules is a protocol class of
:mod:`evaluator.editions`; :meth:`Protocol.from_dict` (and ``from_json``, ``load``)
builds the class of the edition the ``name`` field names, and
:func:`resolve_protocol` takes a built-in name or a protocol file wherever a protocol
is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluator.editions import BUILTIN_NAMES
from evaluator.editions.base import edition_class
from evaluator.editions.hecktor2025 import (
    HECKTOR2025,
    PROTOCOL_VERSION,
    BothEmpty,
    Connectivity,
    Protocol,
    ProtocolSummary,
)
from evaluator.editions.hecktor2026 import HECKTOR2026, Hecktor2026Protocol

__all__ = [
    "BUILTIN_NAMES",
    "HECKTOR2025",
    "HECKTOR2026",
    "PROTOCOL_VERSION",
    "BothEmpty",
    "Connectivity",
    "Hecktor2026Protocol",
    "Limits",
    "Protocol",
    "ProtocolSummary",
    "builtin_protocol",
    "resolve_protocol",
]


def builtin_protocol(name: str) -> Protocol:
    """The default protocol of the built-in edition ``name`` (``hecktor2025``,
    ``hecktor2026``)."""
    cls = edition_class(name)
    if cls is None or not issubclass(cls, Protocol):
        raise ValueError(
            f"unknown protocol {name!r}; the built-in ones are {', '.join(BUILTIN_NAMES)} "
            "(or pass a protocol JSON file)"
        )
    return cls()


def resolve_protocol(name_or_path: str | Path) -> Protocol:
    """A built-in protocol by its name, else the protocol JSON file at that path."""
    text = str(name_or_path)
    if edition_class(text) is not None:
        return builtin_protocol(text)
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(
            f"{text}: neither a built-in protocol ({', '.join(BUILTIN_NAMES)}) nor a file"
        )
    return Protocol.load(path)


@dataclass(frozen=True)
class Limits:
    """Resource caps for untrusted input. Not scoring rules, so not in the protocol hash."""

    max_voxels: int = 512 * 512 * 1024  # declared voxel count of one label map
    max_members: int = 5000  # archive members
    max_member_bytes: int = 1 << 30  # one member read (declared size)
    max_total_bytes: int = 8 << 30  # all members read (declared sizes)
    max_unread_bytes: int = 64 << 20  # .tar.gz bytes inflated only to skip unread members
    max_table_bytes: int = 16 << 20  # a Task 2/3 prediction table (~100 kB for 1000 cases)
    max_table_rows: int = 100_000  # rows (or JSON entries) of a prediction table
    max_nesting: int = 32  # JSON depth in tables
