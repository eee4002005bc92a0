"""The deployment run for real (marker ``deploy``): images built and run with podman,
the compose stack brought up against podman's API socket. ``make test-deploy`` sets up
the runtime, the base image, the wheelhouse and the images, then runs
``pytest -m deploy tests/deploy``. A plain ``pytest`` (``make test``) does not collect
this folder: only a ``-m`` expression naming ``deploy`` does."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOCKET = "/run/podman/podman.sock"
GC_IMAGE = os.environ.get("HECKTOR_GC_IMAGE", "localhost/hecktor-eval-gc:latest")
SERVICE_IMAGE = os.environ.get("HECKTOR_IMAGE", "localhost/hecktor-eval:latest")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "deploy: builds and runs the containers (make test-deploy; podman, root)"
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if "deploy" in (config.getoption("markexpr", "") or ""):
        return None
    return collection_path.suffix == ".py" and collection_path.name.startswith("test_")


def podman() -> str:
    path = shutil.which("podman")
    assert path, "podman is not installed: run docker/local/setup-runtime.sh (or make test-deploy)"
    return path


def run(
    args: list[str], *, timeout: float = 300, check: bool = True, **kw: object
) -> subprocess.CompletedProcess[str]:
    """A command with its output captured (unless ``stdout`` is given: a file); on
    failure, the assertion shows what it printed."""
    if "stdout" not in kw:
        kw["capture_output"] = True
    kw.setdefault("text", True)
    res = subprocess.run(args, timeout=timeout, check=False, **kw)  # type: ignore[call-overload]
    if check:
        assert res.returncode == 0, f"{args}: exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def require_image(name: str) -> None:
    res = run([podman(), "image", "exists", name], check=False)
    assert res.returncode == 0, f"image {name} not found: build it with `make test-deploy`"
