"""Who is judging a submission right now: a PostgreSQL session-level advisory lock.

The job holds ``pg_advisory_lock(NAMESPACE, submission_id)`` on a connection of its own
from before it claims the row until after it has written the outcome. PostgreSQL
releases the lock the moment that connection ends: when the job finishes, and also
when its process dies (``SIGKILL``, out-of-memory killer, a crashed machine once TCP
keepalives give up). So, for a row whose status is ``running``:

- lock held     -> a live job is judging it; leave it alone;
- lock free     -> its job is gone (nothing can be between the claim and the release
  without holding the lock); whoever takes the lock may claim the row again.

That is what makes a re-delivered Celery message for a submission left ``running`` by
a dead worker re-claimable, while a duplicate delivery for a submission that a live
worker is judging is skipped. Writes stay guarded by ``attempts`` (see the runner), so
a job that lost its lock (a network partition) can never overwrite a newer attempt.

SQLite has no such lock: there the job lock is a no-op and only ``queued`` rows are
claimable (the local dispatcher re-queues the rows of a crashed pool process itself).

On every database, each job also owns a temporary folder in the data dir,
``<data_dir>/tmp/job-<id>-<random>/``, holding an ``.owner`` file that the judging
process keeps ``flock``-ed (:func:`job_dir`); the kernel drops that lock when the
process (and its judging child, which inherits it) is gone. So on one machine
:func:`live_job_ids` tells which submissions a live judge holds, even across
processes and without PostgreSQL, and a folder whose lock is free is left over by a
killed job and can be removed (:mod:`app.jobs.sweeper`).

Do not put a transaction-pooling proxy (PgBouncer in ``transaction`` mode) between the
workers and PostgreSQL: session-level locks need a real session.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

NAMESPACE = 0x4845_4B31  # "HEK1": first key of the two-key advisory lock
# Server-side keepalives on the lock connection, so that PostgreSQL notices a vanished
# worker machine (and frees its locks) in about a minute instead of the OS's two hours.
_KEEPALIVES = {
    "tcp_keepalives_idle": "30",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "60000",
}
TMP_DIR = "tmp"  # under the data dir: the judging jobs' temporary folders
OWNER_FILE = ".owner"
TMP_GRACE = 60.0  # a job folder without its owner file (being created) is left this long
_JOB_DIR = re.compile(r"job-(\d+)-[A-Za-z0-9_]+")


@dataclass(frozen=True)
class JobLock:
    acquired: bool  # the caller may go on (always true where locks do not exist)
    exclusive: bool  # a real lock is held: a `running` row is known to be orphaned


def supports_locks(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def _try_lock(conn: Connection, submission_id: int) -> bool:
    return bool(
        conn.execute(
            text("SELECT pg_try_advisory_lock(CAST(:ns AS integer), CAST(:id AS integer))"),
            {"ns": NAMESPACE, "id": submission_id},
        ).scalar()
    )


@contextlib.contextmanager
def submission_lock(engine: Engine, submission_id: int, *, wait: float = 0.0) -> Iterator[JobLock]:
    """Hold the submission's job lock for the ``with`` block, if it can be had within
    ``wait`` seconds (a dead holder's lock is freed as soon as PostgreSQL sees its
    connection end, which can lag the re-delivery of its message by a moment)."""
    if not supports_locks(engine):
        yield JobLock(acquired=True, exclusive=False)
        return
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    got = False
    try:
        for name, value in _KEEPALIVES.items():
            try:
                conn.execute(text(f"SET {name} = {value}"))
            except Exception:  # older server or no TCP (unix socket): best effort
                log.debug("could not set %s on the lock connection", name, exc_info=True)
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            got = _try_lock(conn, submission_id)
            if got or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        yield JobLock(acquired=got, exclusive=got)
    finally:
        try:
            if got:
                conn.execute(
                    text("SELECT pg_advisory_unlock(CAST(:ns AS integer), CAST(:id AS integer))"),
                    {"ns": NAMESPACE, "id": submission_id},
                )
            conn.close()
        except Exception:  # never hand a connection that may still hold the lock back
            log.warning("submission %d: could not release its job lock", submission_id)
            with contextlib.suppress(Exception):
                conn.invalidate()
                conn.close()


def held_submission_ids(session: Session) -> set[int] | None:
    """Ids whose job lock is held by a live session of this database (None on SQLite)."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        return None
    rows = session.execute(
        text(
            "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objsubid = 2 AND classid::bigint = :ns "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"ns": NAMESPACE},
    )
    return {int(r[0]) for r in rows}


def jobs_tmp_root(data_dir: Path) -> Path:
    """``<data_dir>/tmp``: where every judging job's temporary folder lives."""
    return Path(data_dir) / TMP_DIR


def _flock(fd: int, *, block: bool) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no ownership record
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def job_dir(data_dir: Path, submission_id: int) -> Iterator[Path]:
    """A fresh ``<data_dir>/tmp/job-<id>-<random>/`` owned (``flock``) by this process for
    the ``with`` block, then removed."""
    root = jobs_tmp_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"job-{int(submission_id)}-", dir=root))
    # the owner file appears under its name already locked: a sweeper looking between
    # its creation and the lock would otherwise see an ownerless folder and remove it
    pending = path / f"{OWNER_FILE}.new"
    fd = os.open(pending, os.O_CREAT | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        _flock(fd, block=True)
        os.replace(pending, path / OWNER_FILE)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def job_dir_owned(path: Path) -> bool | None:
    """Whether a live process holds the job folder ``path``: True, False (its job is gone),
    or None when it has no owner file (being created, or not a job's folder)."""
    try:
        fd = os.open(path / OWNER_FILE, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError:
        return True  # cannot tell: never take it from a live job
    try:
        return not _flock(fd, block=False)
    finally:
        os.close(fd)  # closing this descriptor drops the lock it may have taken


def job_dirs(data_dir: Path) -> Iterator[tuple[int, Path]]:
    """``(submission id, folder)`` of every job folder under ``<data_dir>/tmp``."""
    root = jobs_tmp_root(data_dir)
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for entry in entries:
        m = _JOB_DIR.fullmatch(entry.name)
        if m and entry.is_dir():
            yield int(m.group(1)), entry


def live_job_ids(data_dir: Path) -> set[int]:
    """Submissions whose job folder a live process holds, on this machine."""
    return {sid for sid, path in job_dirs(data_dir) if job_dir_owned(path)}


def remove_orphaned_job_dirs(data_dir: Path) -> int:
    """Remove the job folders under ``<data_dir>/tmp`` whose owner is gone (or that never
    got an owner file within :data:`TMP_GRACE` seconds). Returns how many went."""
    removed = 0
    cutoff = time.time() - TMP_GRACE
    for sid, path in job_dirs(data_dir):
        owned = job_dir_owned(path)
        if owned is None:
            try:
                if path.stat().st_mtime >= cutoff:
                    continue
            except OSError:
                continue
        elif owned:
            continue
        from app.algorithms.output_volume import unmount_under

        unmount_under(path)  # an algorithm's case volumes, left mounted by a killed judge
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            log.info("removed %s, left by a killed job of submission %d", path.name, sid)
            removed += 1
    return removed
