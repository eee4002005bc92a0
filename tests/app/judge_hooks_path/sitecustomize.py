"""Loaded by every Python process the tests start (their ``PYTHONPATH`` names this
folder): installs the test hooks of :mod:`tests.app.judge_hooks` when
``HECKTOR_TEST_HOOKS`` is set."""

import sys
from pathlib import Path

_REPO = str(Path(__file__).resolve().parents[3])
if _REPO not in sys.path:  # before an installed copy of the project
    sys.path.insert(0, _REPO)

from tests.app.judge_hooks import install_at_startup  # noqa: E402

install_at_startup()
