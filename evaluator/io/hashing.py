"""SHA-256 of files and folders, and hashes combined: what identifies ground truth,
submissions and prepared cases (JSON values: :mod:`evaluator.canonical`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "combine_hashes",
    "sha256_file",
    "sha256_path",
    "sha256_tree",
]


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(root: Path) -> str:
    """Hash of a folder: its sorted relative paths and their contents' hashes."""
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(sha256_file(p).encode())
        h.update(b"\n")
    return h.hexdigest()


def sha256_path(path: Path) -> str:
    return sha256_tree(path) if path.is_dir() else sha256_file(path)


def combine_hashes(parts: Iterable[tuple[str, str]]) -> str:
    """One SHA-256 over sorted (name, hash) pairs."""
    h = hashlib.sha256()
    for name, digest in sorted(parts):
        h.update(name.encode())
        h.update(b"\0")
        h.update(digest.encode())
        h.update(b"\n")
    return h.hexdigest()
