"""What a failed write says about the server: a full disk, a full database, or a database
that cannot be reached. Used by the API (a full disk answers 507, not 500) and by the
judges (a result that cannot be stored fails the submission as a platform failure).

The reasons are short and name no path, host or internal detail: they are shown to
participants.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

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
