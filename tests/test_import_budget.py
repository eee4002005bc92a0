"""Start-up budget of the command-line entry points: what ``hecktor-eval`` imports
before it does any work. ``score --help``, ``submit --help`` and the modules the
``submit`` client runs on import neither the service (app.services, the database,
alembic, FastAPI) nor scipy.stats; the offline scorer imports no scipy subpackage.
A wall-clock budget, generous enough for a loaded 2-core machine, backs it up."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

SERVICE = ("app.services", "app.db", "app.main", "alembic", "sqlalchemy", "fastapi")
HEAVY = ("scipy.stats", "scipy.sparse", "scipy.linalg", "lifelines", "sklearn", "matplotlib")

PARSE = """
import json, sys
from evaluator.cli import build_parser
try:
    build_parser().parse_args({argv!r})
except SystemExit:
    pass
{extra}
print(json.dumps(sorted(sys.modules)))
"""


def _modules(argv: list[str], extra: str = "") -> list[str]:
    code = PARSE.format(argv=argv, extra=extra)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    mods: list[str] = json.loads(out.strip().splitlines()[-1])
    return mods


def _loaded(mods: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in mods if any(m == p or m.startswith(p + ".") for p in prefixes)]


@pytest.mark.parametrize("argv", [["score", "--help"], ["submit", "--help"], ["--help"]])
def test_parsing_a_command_imports_neither_the_service_nor_scipy(argv: list[str]) -> None:
    mods = _modules(argv)
    assert _loaded(mods, SERVICE + HEAVY + ("numpy", "httpx", "rich")) == []


def test_the_submit_client_imports_neither_the_service_nor_scipy_stats() -> None:
    extra = (
        "import app.cli.submit, app.cli.client, app.cli.console\n"
        "import evaluator.io.sniff, evaluator.io.sizes"
    )
    mods = _modules(["submit", "--help"], extra)
    assert _loaded(mods, SERVICE + HEAVY) == []


def test_the_offline_scorer_imports_no_scipy_subpackage() -> None:
    extra = "import evaluator.scoring, evaluator.pipeline.task1, evaluator.io.gt_cache"
    mods = _modules(["score", "--help"], extra)
    assert _loaded(mods, SERVICE + HEAVY) == []


def test_score_help_starts_within_budget() -> None:
    """Best of three: about 0.1 s on an idle machine; scipy.stats alone adds about 1 s."""
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "evaluator.cli", "score", "--help"],
            capture_output=True,
            check=True,
        )
        best = min(best, time.perf_counter() - t)
    assert best < 1.0, f"hecktor-eval score --help took {best:.2f} s"
