"""The docker flavour: the same flags through the ``docker`` CLI (here against podman's
Docker-compatible socket). Docker has no ``--timeout``: the container is killed through
the runtime at the limit."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from app.algorithms.runtime import CaseRun, ContainerRuntime
from tests.containers.conftest import (
    LIMITS,
    CaseInput,
    Images,
    check_threshold_outputs,
    run_in,
)

pytestmark = pytest.mark.containers


def test_docker_threshold(
    docker_runtime: ContainerRuntime, images: Images, case_input: CaseInput, tmp_path: Path
) -> None:
    cmd = docker_runtime.run_command(
        CaseRun(image="x", input_dir=Path("/i"), output_dir=Path("/o"), limits=LIMITS, name="n"),
        Path("/c"),
    )
    # no --timeout in docker; no --rm: its client through podman's API loses the exit code
    assert "--timeout" not in cmd and "--rm" not in cmd and "--network=none" in cmd
    outcome, _ = run_in(
        docker_runtime,
        images.get("threshold"),
        case_input,
        tmp_path,
        inside=lambda out: check_threshold_outputs(out, case_input),
    )
    assert outcome.ok, outcome


def test_docker_sleeper_killed_at_the_limit(
    docker_runtime: ContainerRuntime, images: Images, case_input: CaseInput, tmp_path: Path
) -> None:
    limits = dataclasses.replace(LIMITS, seconds=5)
    started = time.monotonic()
    outcome, _ = run_in(docker_runtime, images.get("sleeper"), case_input, tmp_path, limits=limits)
    assert outcome.kind == "time", outcome
    assert 5 <= outcome.seconds < 5 + 10
    assert time.monotonic() - started < 5 + 20
    assert "sleeping" in outcome.log


def test_docker_exit_code_and_memory(
    docker_runtime: ContainerRuntime, images: Images, case_input: CaseInput, tmp_path: Path
) -> None:
    outcome, _ = run_in(docker_runtime, images.get("crash"), case_input, tmp_path)
    assert outcome.kind == "exited" and outcome.exit_code == 2
    assert outcome.last_stderr_line == "error: model weights missing in /opt/ml/model"
    limits = dataclasses.replace(LIMITS, memory_mb=256)
    outcome, _ = run_in(docker_runtime, images.get("memory"), case_input, tmp_path, limits=limits)
    assert outcome.kind == "memory" and outcome.exit_code == 137, outcome
