"""Test hooks: jobs made to sleep, crash, use memory, fill the disk or show their
environment on purpose, inside the job's limits just before scoring.

The hooks file, named by ``HECKTOR_TEST_HOOKS``, maps submission ids to actions::

    {"<submission id>": {"allocate_mb": n, "sleep": s, "signal": "SIGSEGV",
                         "dump_env": path, "enospc": true}}

:func:`install` wraps :func:`app.jobs.runner.score_claim` so that the actions run
before it, and makes a production data dir refuse to be prepared while the variable is
set. The test session installs it in its own process (``conftest``), whose forked
judging children inherit it; every process the tests start gets it through
``PYTHONPATH`` (:data:`PLUGIN_PATH`, whose ``sitecustomize`` installs it when the
variable is set, and refuses to start a production process). The service itself knows
nothing of these hooks.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TEST_HOOKS_ENV = "HECKTOR_TEST_HOOKS"
PLUGIN_PATH = str(Path(__file__).with_name("judge_hooks_path"))
REPO = Path(__file__).resolve().parents[2]

log = logging.getLogger(__name__)


def production_problem() -> str:
    return (
        f"{TEST_HOOKS_ENV} is set, but test hooks (jobs made to sleep, crash or use "
        "memory on purpose) are refused in production mode (HECKTOR_MODE=production); "
        f"unset {TEST_HOOKS_ENV}"
    )


def pythonpath(*first: str | Path) -> str:
    """A ``PYTHONPATH`` for a process the tests start: ``first``, then the plugin."""
    return os.pathsep.join([*map(str, first), PLUGIN_PATH])


def run_hooks(path: Path, submission_id: int) -> None:
    """The actions the hooks file names for this submission (none when it is unreadable)."""
    try:
        hooks = json.loads(path.read_text()).get(str(submission_id)) or {}
    except (OSError, ValueError):
        return
    if hooks.get("dump_env"):  # what the judging code can see of the environment
        Path(hooks["dump_env"]).write_text(json.dumps(_environment()))
    if hooks.get("enospc"):  # the server's disk is full while judging
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if hooks.get("allocate_mb"):
        ballast = bytearray(int(hooks["allocate_mb"]) << 20)  # MemoryError over RLIMIT_AS
        del ballast
    if hooks.get("sleep"):
        time.sleep(float(hooks["sleep"]))
    if hooks.get("signal"):  # a crash in native code
        os.kill(os.getpid(), getattr(signal, str(hooks["signal"])))


def _environment() -> dict[str, Any]:
    proc = Path("/proc/self/environ")
    return {
        "environ": dict(os.environ),
        "proc_environ": proc.read_bytes().decode("latin-1") if proc.exists() else "",
        "tempdir": tempfile.gettempdir(),
        "pid": os.getpid(),
    }


def install() -> None:
    """Wrap the scorer call and the data dir's preparation of this process (once)."""
    from app.jobs import runner
    from app.settings import Settings

    if getattr(runner.score_claim, "with_test_hooks", False):
        return
    real_score, real_ensure_dirs = runner.score_claim, Settings.ensure_dirs

    @functools.wraps(real_score)
    def score_claim(settings: Any, claim: Any, gt: Any, **kwargs: Any) -> Any:
        path = os.environ.get(TEST_HOOKS_ENV)
        if path and settings.mode == "production":
            log.warning("%s is set in production mode; test hooks ignored", TEST_HOOKS_ENV)
        elif path:
            run_hooks(Path(path), claim.submission_id)
        return real_score(settings, claim, gt, **kwargs)

    @functools.wraps(real_ensure_dirs)
    def ensure_dirs(self: Any) -> None:
        if self.mode == "production" and os.environ.get(TEST_HOOKS_ENV):
            raise RuntimeError(production_problem())
        real_ensure_dirs(self)

    score_claim.with_test_hooks = True  # type: ignore[attr-defined]
    runner.score_claim = score_claim
    Settings.ensure_dirs = ensure_dirs  # type: ignore[method-assign]


def install_at_startup() -> None:
    """From ``sitecustomize``: nothing unless the variable is set; a production process
    refuses to start; any other one gets the hooks."""
    if not os.environ.get(TEST_HOOKS_ENV):
        return
    if os.environ.get("HECKTOR_MODE") == "production":
        sys.stderr.write(f"hecktor-eval: {production_problem()}\n")
        sys.stderr.flush()
        os._exit(2)
    install()
