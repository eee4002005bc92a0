"""Patient ids: which centre a case belongs to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def case_center(record: Mapping[str, Any]) -> str:
    """The record's ``center``, else the PatientID prefix before the first ``-``
    (``CHUM-001`` -> ``CHUM``; an id without ``-`` is its own centre)."""
    center = record.get("center")
    if center not in (None, ""):
        return str(center)
    return str(record.get("patient_id", "")).split("-", 1)[0]
