"""The grand-challenge evaluation image run as grand-challenge runs it: no network, a
read-only root, /tmp a tmpfs, a non-root user, /input and the ground truth read-only,
/output writable. Its metrics.json equals the host's ``hecktor-eval gc-evaluate`` on the
same /input to the last digit, and a refused input is one stderr line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from evaluator.synth import SynthSummary, generate_challenge
from tests.deploy.conftest import GC_IMAGE, podman, require_image, run
from tests.evaluator.test_gc_evaluate import TEAM, build_input

pytestmark = pytest.mark.deploy
GT_MOUNT = "/opt/ml/input/data/ground_truth"


def readable(path: Path) -> None:
    """World-readable (the container's user is uid 10001, the files are root's)."""
    run(["chmod", "-R", "a+rX", str(path)])


@pytest.fixture(scope="module")
def challenge(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    require_image(GC_IMAGE)
    s = generate_challenge(tmp_path_factory.mktemp("gc") / "synth", small=True, teams=(TEAM,))
    readable(s.ground_truth_dir)
    return s


@pytest.fixture(scope="module")
def gc_input(challenge: SynthSummary, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gc-input") / "input"
    root.mkdir()
    build_input(challenge, root)
    readable(root.parent)
    return root


def in_container(
    s: SynthSummary, input_dir: Path, output: Path, *env: str
) -> subprocess.CompletedProcess[str]:
    output.mkdir(parents=True)
    os.chown(output, 10001, 10001)
    flags = [f"--env={e}" for e in env]
    return run(
        [podman(), "run", "--rm", "--network=none", "--read-only", "--tmpfs", "/tmp",
         "--user", "10001", *flags,
         "-v", f"{input_dir}:/input:ro", "-v", f"{output}:/output:rw",
         "-v", f"{s.ground_truth_dir}:{GT_MOUNT}:ro", GC_IMAGE],
        check=False, timeout=600,
    )  # fmt: skip


def on_host(s: SynthSummary, input_dir: Path, output: Path, *env: str) -> dict[str, Any]:
    res = run(
        [sys.executable, "-m", "evaluator.cli", "gc-evaluate", "--input", str(input_dir),
         "--output", str(output), "--ground-truth", str(s.ground_truth_dir)],
        env={"PATH": os.environ["PATH"], "TMPDIR": str(output.parent),
             **dict(e.split("=", 1) for e in env)},
        timeout=600,
    )  # fmt: skip
    assert res.stderr == "", res.stderr
    doc: dict[str, Any] = json.loads((output / "metrics.json").read_text())
    return doc


@pytest.mark.timeout(900)
def test_metrics_equal_the_host_run(
    challenge: SynthSummary, gc_input: Path, tmp_path: Path
) -> None:
    env = ("HECKTOR_TASK=all", "HECKTOR_PER_CASE=1")
    res = in_container(challenge, gc_input, tmp_path / "output", *env)
    assert res.returncode == 0, res.stderr
    assert "error" not in res.stderr.lower(), res.stderr
    doc = json.loads((tmp_path / "output" / "metrics.json").read_text())
    assert sorted(p.name for p in (tmp_path / "output").iterdir()) == ["metrics.json"]
    host = on_host(challenge, gc_input, tmp_path / "host", *env)
    assert sorted(doc["aggregates"]) == ["task1", "task2", "task3"]
    assert doc["aggregates"] == host["aggregates"]  # exact: every number to the last digit
    assert doc["case"] == host["case"]
    for task in ("1", "2", "3"):
        mine, theirs = doc["evaluation"]["tasks"][task], host["evaluation"]["tasks"][task]
        assert mine["ground_truth_sha256"] == theirs["ground_truth_sha256"]


def test_a_refused_input_is_one_line_and_exit_2(
    challenge: SynthSummary, gc_input: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "input"
    run(["cp", "-a", str(gc_input), str(broken)])
    jobs = json.loads((broken / "predictions.json").read_text())
    jobs[0]["status"] = "Failed"
    (broken / "predictions.json").write_text(json.dumps(jobs))
    readable(broken)
    res = in_container(challenge, broken, tmp_path / "output", "HECKTOR_TASK=2")
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert f"job {jobs[0]['pk']}: status is 'Failed', expected 'Succeeded'" in lines[0]
    assert "Traceback" not in res.stderr
    assert list((tmp_path / "output").iterdir()) == []  # nothing written
