"""Engines and sessions. SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE``
(``BEGIN DEFERRED`` on the :func:`read_only` view of an engine).

SQLite is shared by the web process and the judging processes: WAL lets readers run
beside the writer, ``BEGIN IMMEDIATE`` takes the write lock at the start of a
transaction (so a read-then-write transaction never fails on a lock upgrade) and the
busy timeout makes the others wait instead of failing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (``Session.execute`` is typed as returning the
    generic ``Result``; for those statements it is a ``CursorResult``)."""
    return cast(CursorResult[Any], result).rowcount


def normalize_url(url: str) -> str:
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            from pathlib import Path

            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # read-only work (see read_only()) takes no write lock: in WAL mode it runs
            # beside the writer instead of queueing behind it
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("BEGIN DEFERRED")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


READ_ONLY = "hecktor_read_only"


def read_only(engine: Engine) -> Engine:
    """The same engine (same pool) for transactions that only read. On SQLite they begin
    DEFERRED: a reader never waits for the write lock (which BEGIN IMMEDIATE takes so
    that read-then-write transactions cannot fail on a lock upgrade). A transaction on
    it must not write. Other databases are not affected."""
    return engine.execution_options(**{READ_ONLY: True})


def get_engine(url: str) -> Engine:
    """One engine per URL per process (used by the judging processes)."""
    url = normalize_url(url)
    with _LOCK:
        eng = _ENGINES.get(url)
        if eng is None:
            eng = _ENGINES[url] = make_engine(url)
        return eng


def dispose_engines() -> None:
    with _LOCK:
        for eng in _ENGINES.values():
            eng.dispose()
        _ENGINES.clear()


_INHERITED: list[Engine] = []


def _forget_engines_after_fork() -> None:
    """In a forked child: set the parent's engines aside, untouched and never closed.

    Their pooled connections (sockets, SQLite handles) belong to the parent; the child
    opens its own on first use. They are kept referenced so that no finaliser runs on
    them (a psycopg connection closed here would end the parent's session).
    """
    global _LOCK
    _INHERITED.extend(_ENGINES.values())
    _ENGINES.clear()
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_engines_after_fork)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
