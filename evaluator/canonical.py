"""Canonical JSON: the one byte form (sorted keys, no spaces) in which JSON values are
hashed: protocols, stored results, analysis keys, frozen boards."""

from __future__ import annotations

import hashlib
import json


def canonical_json(obj: object) -> bytes:
    """``obj`` as canonical JSON in UTF-8: sorted keys, no whitespace, ASCII escapes,
    and ``str()`` of any value JSON has no type for (datetimes, paths)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def canonical_sha256(obj: object) -> str:
    """SHA-256 (hex) of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj)).hexdigest()
