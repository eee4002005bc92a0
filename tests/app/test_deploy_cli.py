"""The commands the container entrypoint runs: ``hecktor-eval admin migrate`` and
``hecktor-eval worker`` (its refusals; real workers run in test_celery.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect

from app.cli import main
from app.db.session import make_engine


def test_admin_migrate_creates_the_schema_and_is_repeatable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'db' / 'hecktor.db'}"
    args = ["admin", "--data-dir", str(tmp_path / "data"), "--database-url", url, "migrate"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "at revision" in out and "None" not in out
    engine = make_engine(url)
    assert {"submissions", "results", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()
    assert main(args) == 0  # a second run changes nothing


def test_admin_migrate_gives_up_on_an_unreachable_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    args = ["admin", "--data-dir", str(tmp_path), "--database-url", url, "migrate", "--wait", "0"]
    assert main(args) == 1
    assert "cannot reach the database" in capsys.readouterr().err


def test_worker_refuses_sqlite(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "app", "worker", "--data-dir", str(tmp_path)]
    res = subprocess.run(
        [*cmd, "--database-url", f"sqlite:///{tmp_path}/x.db"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert res.returncode == 1
    assert "HECKTOR_DISPATCHER=celery needs PostgreSQL" in res.stderr
