"""The prepared form of a Task 1 ground truth kept across offline runs, in the user's
cache folder (``$XDG_CACHE_HOME/hecktor-eval``, else ``~/.cache/hecktor-eval``).

An entry is the folder ``task1-v1/<sha256>`` (the ground truth's hash, over its label
files' hashes): the foreground crops and the manifest :mod:`evaluator.io.prepared`
writes. Looking one up hashes the label files (reading their bytes, decoding none);
scoring then reads the crops. An entry is written under a temporary name and renamed
into place, so a reader never sees half of one; an entry that does not load (manifest
unreadable, a crop missing or not matching its hash) is removed and rebuilt. The
folder is bounded: after an entry is written, the least recently used ones are removed
until the total is under ``max_bytes``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from evaluator.io.hashing import combine_hashes
from evaluator.io.prepared import MANIFEST, load_prepared_task1, read_and_prepare_task1
from evaluator.io.task1_truth import (
    Task1GroundTruth,
    label_file_sha256,
    label_files,
    read_task1_ground_truth,
)
from evaluator.protocol import Limits

__all__ = ["DEFAULT_MAX_BYTES", "cached_task1_ground_truth", "evict", "user_cache_dir"]

DEFAULT_MAX_BYTES = 2 * 1024**3
STALE_BUILD_SECONDS = 3600.0  # a temporary entry this old is a build that died
ENTRIES = "task1-v1"  # the prepared format's version: another format, another folder


def user_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/hecktor-eval``, else ``~/.cache/hecktor-eval``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "hecktor-eval"


def _entry_ok(gt: Task1GroundTruth, sha: str, limits: Limits) -> bool:
    """Whether a loaded entry is the ground truth ``sha`` and its crops are intact."""
    if gt.sha256 != sha:
        return False
    for case in gt.cases.values():
        if math.prod(case.header.shape) > limits.max_voxels:
            return False  # the reader refuses it: let it say so
        if case.bbox is None:
            continue
        if case.crop_path is None or case.crop_sha256 is None:
            return False
        digest = hashlib.sha256(case.crop_path.read_bytes()).hexdigest()
        if digest != case.crop_sha256:
            return False
    return True


def _load(entry: Path, sha: str, limits: Limits) -> Task1GroundTruth | None:
    """The entry's ground truth, or None (and the entry removed) when it does not load."""
    if not (entry / MANIFEST).is_file():
        return None
    try:
        gt = load_prepared_task1(entry)
        if _entry_ok(gt, sha, limits):
            os.utime(entry)  # most recently used
            return gt
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        pass
    shutil.rmtree(entry, ignore_errors=True)
    return None


def _located(
    gt: Task1GroundTruth, root: Path, files: Mapping[str, Path], ignored: list[str]
) -> Task1GroundTruth:
    """``gt`` as read from ``root``: its cases name the files there."""
    cases = {pid: dataclasses.replace(c, path=files[pid]) for pid, c in gt.cases.items()}
    return Task1GroundTruth(root, cases, gt.sha256, tuple(ignored))


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def evict(folder: Path, max_bytes: int, *, keep: Path | None = None) -> None:
    """Remove the least recently used entries of ``folder`` (and leftover temporary
    ones) until their total size is at most ``max_bytes``; ``keep`` stays."""
    entries = []
    now = time.time()
    for p in folder.iterdir():
        if p.name.startswith("."):
            if now - p.stat().st_mtime > STALE_BUILD_SECONDS:
                shutil.rmtree(p, ignore_errors=True)  # a build that did not finish
        elif p.is_dir():
            entries.append((p.stat().st_mtime, p, _size(p)))
    total = sum(size for _, _, size in entries)
    for _, p, size in sorted(entries):
        if total <= max_bytes:
            break
        if p != keep:
            shutil.rmtree(p, ignore_errors=True)
            total -= size


def cached_task1_ground_truth(
    root: Path,
    cache_root: Path,
    *,
    limits: Limits | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    threads: int = 2,
) -> Task1GroundTruth:
    """The Task 1 ground truth of the folder ``root``, from its cache entry under
    ``cache_root`` when one is there and intact (no label map decoded), else read,
    validated and prepared as :func:`evaluator.io.task1_truth.read_task1_ground_truth`
    reads it, and kept for the next run.

    Raises GroundTruthError as the reader does. ``OSError`` from the cache folder
    (not writable, full) is the caller's to handle.
    """
    limits = limits or Limits()
    root = Path(root)
    files, ignored = label_files(root)
    sha = combine_hashes((pid, label_file_sha256(path)) for pid, path in files.items())
    folder = Path(cache_root) / ENTRIES
    entry = folder / sha
    gt = _load(entry, sha, limits)
    if gt is not None:
        return _located(gt, root, files, ignored)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{sha}.{uuid.uuid4().hex}"
    try:
        read = read_and_prepare_task1(root, tmp, limits=limits, threads=threads)
        entry = folder / read.sha256  # the files as read (they may have changed since hashed)
        try:
            tmp.rename(entry)
        except OSError:  # another run put the same entry in place first
            if not (entry / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    evict(folder, max_bytes, keep=entry)
    gt = _load(entry, read.sha256, limits)
    if gt is None:  # pragma: no cover - removed by another run between rename and load
        return read_task1_ground_truth(root, limits=limits, threads=threads)
    return _located(gt, root, files, ignored)
