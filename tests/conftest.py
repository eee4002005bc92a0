"""Settings for the whole suite: the scorer's ground-truth cache (``score`` keeps
prepared ground truth in the user's cache folder) goes to a folder of the test run,
for this process and every command it starts, and is removed afterwards."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_CACHE_ENV = "XDG_CACHE_HOME"


def pytest_configure(config: pytest.Config) -> None:
    folder = tempfile.mkdtemp(prefix="hecktor-test-cache-")
    config.stash[_cache_key] = (folder, os.environ.get(_CACHE_ENV))
    os.environ[_CACHE_ENV] = folder


def pytest_unconfigure(config: pytest.Config) -> None:
    folder, before = config.stash.get(_cache_key, (None, None))
    if folder is None:
        return
    shutil.rmtree(folder, ignore_errors=True)
    if before is None:
        os.environ.pop(_CACHE_ENV, None)
    else:
        os.environ[_CACHE_ENV] = before


_cache_key = pytest.StashKey[tuple[str, str | None]]()
