"""The data dir and writes to it: paths relative to it, atomic writes, the stored names
of uploads, stale partial uploads.

It also says what a failed write says about the server (:func:`storage_reason`): a full
disk, a full database, or a database that cannot be reached. The API answers 507 for a
full disk, not 500, and the judges fail a submission whose result cannot be stored as a
platform failure. The reasons are short and name no path, host or internal detail: they
are shown to participants.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from app.settings import Settings

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
SERVER_STORAGE_FULL = "server storage full"
DATABASE_FULL = "database storage full"
DATABASE_UNAVAILABLE = "database unavailable"
DATABASE_ERROR = "database error"
# SQLite: SQLITE_FULL; PostgreSQL: SQLSTATE class 53 (insufficient resources, 53100 disk full)
_FULL_TEXTS = ("database or disk is full", "no space left on device", "disk quota exceeded")
_FULL_SQLSTATES = ("53100",)
_UNAVAILABLE_SQLSTATES = ("08", "57P")  # connection exceptions; admin/crash shutdown


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its causes and contexts, and the driver errors SQLAlchemy wraps."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for nxt in (e.__cause__, e.__context__, getattr(e, "orig", None)):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def _sqlstate(e: BaseException) -> str:
    return str(getattr(e, "sqlstate", None) or getattr(e, "pgcode", None) or "")


def is_storage_full(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is a full disk, quota or database."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in FULL_ERRNOS:
            return True
        if _sqlstate(e) in _FULL_SQLSTATES:
            return True
        if any(t in str(e).lower() for t in _FULL_TEXTS):
            return True
    return False


def storage_reason(exc: BaseException) -> str:
    """A short reason, for a participant, why a write failed."""
    from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError

    chain = list(_chain(exc))
    if any(isinstance(e, OSError) and e.errno in FULL_ERRNOS for e in chain):
        return SERVER_STORAGE_FULL
    if is_storage_full(exc):
        return DATABASE_FULL
    for e in chain:
        state = _sqlstate(e)
        if state.startswith(_UNAVAILABLE_SQLSTATES):
            return DATABASE_UNAVAILABLE
        if isinstance(e, DisconnectionError) or (
            isinstance(e, DBAPIError) and e.connection_invalidated
        ):
            return DATABASE_UNAVAILABLE
    if any(isinstance(e, OperationalError) for e in chain):
        return DATABASE_UNAVAILABLE
    return DATABASE_ERROR


log = logging.getLogger(__name__)


# -- file helpers ----------------------------------------------------------------------
def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary name beside ``path``, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def rel(settings: Settings, path: Path) -> str:
    return path.resolve().relative_to(settings.data_dir).as_posix()


def absolute(settings: Settings, relpath: str) -> Path:
    p = (settings.data_dir / relpath).resolve()
    if not p.is_relative_to(settings.data_dir):
        raise ValueError(f"path {relpath!r} escapes the data dir")
    return p


STORED_NAMES = {
    "zip": "submission.zip",
    "tar": "submission.tar",
    "tar.gz": "submission.tar.gz",
    "csv": "predictions.csv",
    "json": "predictions.json",
    # an algorithm's container image (docker save / OCI archive)
    "image.tar": "algorithm.tar",
    "image.tar.gz": "algorithm.tar.gz",
}
# an algorithm's optional model tarball, beside its image, by archive type
MODEL_NAMES = {"tar": "model.tar", "tar.gz": "model.tar.gz"}
# the model tarball's SHA-256 (hex), beside it: what tells two submissions of one image apart
MODEL_SHA256_NAME = "model.sha256"


def stored_name(archive_type: str) -> str:
    return STORED_NAMES[archive_type]


def remove_stale_parts(incoming: Path, *, older_than: float = 3600.0) -> int:
    """Delete partial uploads (``incoming/*.part``) untouched for ``older_than`` seconds:
    left by a crash or a killed process. Never visible as submissions (those are rows
    whose file was renamed into ``submissions/<id>/``); this only frees the disk.
    A live upload writes at least every few seconds, so other servers sharing the data
    folder lose nothing."""
    import time

    removed = 0
    cutoff = time.time() - older_than
    for part in incoming.glob("*.part"):
        with contextlib.suppress(OSError):
            if part.stat().st_mtime < cutoff:
                part.unlink()
                removed += 1
    return removed
