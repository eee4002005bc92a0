"""Byte counts as text for messages: ``512 bytes``, ``4.9 KiB``, ``1.0 GiB``."""

from __future__ import annotations

_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")


def human_size(n: int) -> str:
    """``n`` bytes in the largest binary unit (up to TiB) under 1024 of it: whole bytes,
    one decimal for the others."""
    size = float(n)
    for unit in _UNITS[:-1]:
        if size < 1024:
            return f"{int(size)} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} {_UNITS[-1]}"
