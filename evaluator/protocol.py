"""The scoring protocol: every switch of SPEC.md as one versioned, hashable object.

A protocol is stored with the ground truth of a phase and recorded (name, version,
SHA-256 of its canonical JSON) in every result, so a score can always be traced to
the exact rules that produced it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, TypedDict

from evaluator.canonical import canonical_json, canonical_sha256

Connectivity = Literal[6, 18, 26]
BothEmpty = Literal["1.0", "0.0", "exclude"]

PROTOCOL_VERSION = "1.0.0"


class ProtocolSummary(TypedDict):
    """What a result document records of the protocol."""

    name: str
    version: str
    sha256: str


@dataclass(frozen=True)
class Protocol:
    """Defaults are the HECKTOR 2025 rules (SPEC.md sections 1-4)."""

    name: str = "hecktor2025"
    version: str = PROTOCOL_VERSION
    # Task 1
    gtvp_both_empty: BothEmpty = "1.0"
    dsc_agg_weighting: Literal["physical", "voxels"] = "physical"
    connectivity: Connectivity = 26
    iou_threshold: float = 0.3
    iou_strict: bool = False
    geometry_mismatch: Literal["reject", "resample_nearest"] = "reject"
    affine_atol: float = 1e-3
    ignore_extra_cases: bool = False
    # Task 3
    hpv_threshold: float = 0.5
    # Ground-truth table columns (Task 2/3)
    id_column: str = "PatientID"
    rfs_time_column: str = "RFS"
    rfs_event_column: str = "Relapse"
    hpv_column: str = "HPV Status"
    center_columns: tuple[str, ...] = ("CenterID", "Center")

    def __post_init__(self) -> None:
        problems = []
        if self.gtvp_both_empty not in ("1.0", "0.0", "exclude"):
            problems.append(
                f"gtvp_both_empty must be '1.0', '0.0' or 'exclude', not {self.gtvp_both_empty!r}"
            )
        if self.dsc_agg_weighting not in ("physical", "voxels"):
            problems.append(
                f"dsc_agg_weighting must be 'physical' or 'voxels', not {self.dsc_agg_weighting!r}"
            )
        if self.connectivity not in (6, 18, 26):
            problems.append(f"connectivity must be 6, 18 or 26, not {self.connectivity!r}")
        if not (0.0 < float(self.iou_threshold) <= 1.0):
            problems.append(f"iou_threshold must be in (0, 1], not {self.iou_threshold!r}")
        if self.geometry_mismatch not in ("reject", "resample_nearest"):
            problems.append(
                "geometry_mismatch must be 'reject' or 'resample_nearest', "
                f"not {self.geometry_mismatch!r}"
            )
        if not (float(self.affine_atol) >= 0.0):
            problems.append(f"affine_atol must be >= 0, not {self.affine_atol!r}")
        if not (0.0 <= float(self.hpv_threshold) <= 1.0):
            problems.append(f"hpv_threshold must be in [0, 1], not {self.hpv_threshold!r}")
        if problems:
            raise ValueError("invalid protocol: " + "; ".join(problems))

    # -- derived values -------------------------------------------------------------
    @property
    def iou_fraction(self) -> Fraction:
        """The IoU threshold as an exact fraction, so the test is done in integers.

        0.3 becomes 3/10 (from its decimal text, not its binary float value).
        """
        return Fraction(str(self.iou_threshold)).limit_denominator(10**6)

    # -- serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["center_columns"] = list(self.center_columns)
        return d

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace. Its SHA-256 identifies the rules."""
        return canonical_json(self.to_dict()).decode("utf-8")

    @property
    def sha256(self) -> str:
        return canonical_sha256(self.to_dict())

    def summary(self) -> ProtocolSummary:
        """What a result document records of the protocol."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protocol:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown protocol field(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        kw = dict(data)
        if "center_columns" in kw:
            kw["center_columns"] = tuple(kw["center_columns"])
        if "gtvp_both_empty" in kw and not isinstance(kw["gtvp_both_empty"], str):
            kw["gtvp_both_empty"] = f"{float(kw['gtvp_both_empty']):.1f}"
        if "connectivity" in kw:
            kw["connectivity"] = int(kw["connectivity"])
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str) -> Protocol:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a protocol file holds one JSON object")
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> Protocol:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def with_changes(self, **changes: Any) -> Protocol:
        return replace(self, **changes)


HECKTOR2025 = Protocol()


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
