"""One case run for real with podman: a correct algorithm's outputs, and each hostile
algorithm stopped by its limit with the outcome naming it; after each, the container is
gone, the output volume unmounted, and the next run succeeds."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from app.algorithms.runtime import (
    CaseLimits,
    CaseOutcome,
    CaseRun,
    ContainerRuntime,
    RuntimeFailure,
)
from tests.containers.conftest import (
    LIMITS,
    SEGMENTATION,
    CaseInput,
    Images,
    Seen,
    case_name,
    check_threshold_outputs,
    make_input,
    run_in,
)

pytestmark = pytest.mark.containers

SHORT = dataclasses.replace(LIMITS, seconds=5)


def test_threshold_writes_every_task_output_on_the_ct_grid(
    runtime: ContainerRuntime, images: Images, case_input: CaseInput, tmp_path: Path
) -> None:
    outcome, seen = run_in(
        runtime,
        images.get("threshold"),
        case_input,
        tmp_path,
        inside=lambda out: check_threshold_outputs(out, case_input),
    )
    assert outcome.kind == "exited" and outcome.exit_code == 0 and outcome.ok
    assert not outcome.pids_limit_hit
    assert set(seen.files) == {SEGMENTATION, "rfs.json", "hpv-status.json"}
    assert seen.capped and not seen.full
    want = int(np.count_nonzero(case_input.pet >= 4))
    assert f"labelled {want} of {case_input.pet.size} voxels" in outcome.log
    assert outcome.last_stderr_line == ""
    assert 0 <= outcome.overhead_seconds < outcome.seconds


def test_crash_exit_code_and_last_stderr_line(
    runtime: ContainerRuntime, images: Images, case_input: CaseInput, tmp_path: Path, healthy: None
) -> None:
    outcome, seen = run_in(runtime, images.get("crash"), case_input, tmp_path)
    assert outcome.kind == "exited" and outcome.exit_code == 2
    assert outcome.last_stderr_line == "error: model weights missing in /opt/ml/model"
    assert "loading the model" in outcome.log and "predicting case 1" in outcome.log
    assert outcome.message == "exited with code 2"
    assert seen.files == {} and not outcome.output_full


def test_an_algorithm_exiting_125_is_its_own_failure_not_the_runtime(
    runtime: ContainerRuntime, images: Images, tmp_path: Path, healthy: None
) -> None:
    case = make_input(tmp_path / "input125", extra={"exit_code.json": 125})
    outcome, _ = run_in(runtime, images.get("crash"), case, tmp_path)
    assert outcome.kind == "exited" and outcome.exit_code == 125, outcome
    assert outcome.last_stderr_line == "error: model weights missing in /opt/ml/model"


def test_memory_hog_is_killed_and_named(
    runtime: ContainerRuntime, images: Images, case_input: CaseInput, tmp_path: Path, healthy: None
) -> None:
    limits = dataclasses.replace(SHORT, memory_mb=256, seconds=30)
    started = time.monotonic()
    outcome, _ = run_in(runtime, images.get("memory"), case_input, tmp_path, limits=limits)
    assert outcome.kind == "memory", outcome
    assert outcome.exit_code == 137
    assert "256 MB" in outcome.message
    # the kernel's OOM line names the container's cgroup when dmesg is readable
    dmesg = subprocess.run(["dmesg"], capture_output=True, timeout=30, check=False)
    if dmesg.returncode == 0:
        assert outcome.memory_evidence == "kernel"
        assert outcome.message == "went over the memory limit of 256 MB and was killed"
    else:  # no evidence readable: still named, hedged
        assert "most likely over the memory limit" in outcome.message
    assert "holding 64 MiB" in outcome.log
    assert time.monotonic() - started < 30


def test_sleeper_is_stopped_at_the_time_limit(
    runtime: ContainerRuntime, images: Images, case_input: CaseInput, tmp_path: Path, healthy: None
) -> None:
    outcome, _ = run_in(runtime, images.get("sleeper"), case_input, tmp_path, limits=SHORT)
    assert outcome.kind == "time", outcome
    assert 5 <= outcome.seconds < 5 + 10
    assert outcome.message == "did not finish within the time limit of 5 s and was stopped"
    assert "sleeping" in outcome.log


def test_network_is_unreachable_from_the_container(
    runtime: ContainerRuntime, images: Images, tmp_path: Path, healthy: None
) -> None:
    # a server on every address of the host, that the host itself can reach
    server = socket.create_server(("0.0.0.0", 0))
    port = server.getsockname()[1]
    host_ips = sorted(
        {
            str(info[4][0])
            for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
            if not str(info[4][0]).startswith("127.")
        }
    )
    targets: list[tuple[str, int]] = [(ip, port) for ip in host_ips] + [("10.88.0.1", port)]
    for ip in host_ips:
        socket.create_connection((ip, port), timeout=2).close()
    try:
        case = make_input(tmp_path / "input", extra={"targets.json": targets})
        outcome, seen = run_in(runtime, images.get("network"), case, tmp_path)
    finally:
        server.close()
    assert outcome.kind == "exited" and outcome.exit_code == 0, outcome.log
    assert "CONNECTED" not in outcome.log
    assert "connect 1.1.1.1:53: refused" in outcome.log
    for ip, p in targets:
        assert f"connect {ip}:{p}: refused" in outcome.log
    assert "resolve example.org: failed" in outcome.log
    assert set(seen.files) == {"rfs.json", "hpv-status.json"}


def test_fork_bomb_meets_the_pids_limit(
    runtime: ContainerRuntime, images: Images, case_input: CaseInput, tmp_path: Path, healthy: None
) -> None:
    limits = dataclasses.replace(SHORT, pids=32)
    outcome, _ = run_in(runtime, images.get("forkbomb"), case_input, tmp_path, limits=limits)
    assert outcome.kind == "time", outcome
    assert outcome.seconds < 5 + 10
    assert outcome.pids_limit_hit  # seen in the container's cgroup while it ran
    line = next(x for x in outcome.log.splitlines() if x.startswith("fork refused after"))
    children = int(line.split()[3])
    assert 0 < children < 32 and line.endswith("EAGAIN")


def test_garbage_outputs_are_returned_as_written(
    runtime: ContainerRuntime, images: Images, case_input: CaseInput, tmp_path: Path, healthy: None
) -> None:
    def look(out: Path) -> None:
        assert (out / SEGMENTATION).read_bytes().startswith(b"this is not an image")
        assert (out / "rfs.json").read_text() == "NaN"

    outcome, seen = run_in(runtime, images.get("garbage"), case_input, tmp_path, inside=look)
    assert outcome.ok
    assert set(seen.files) == {SEGMENTATION, "rfs.json"}


def test_nothing_written(
    runtime: ContainerRuntime, images: Images, case_input: CaseInput, tmp_path: Path
) -> None:
    outcome, seen = run_in(runtime, images.get("nothing"), case_input, tmp_path)
    assert outcome.ok and seen.files == {} and not outcome.output_full


def test_big_writer_stops_at_the_output_cap(
    runtime: ContainerRuntime, images: Images, case_input: CaseInput, tmp_path: Path, healthy: None
) -> None:
    limits = dataclasses.replace(SHORT, seconds=60, output_mb=64)
    outcome, seen = run_in(runtime, images.get("bigwriter"), case_input, tmp_path, limits=limits)
    assert outcome.kind == "exited" and outcome.exit_code == 1, outcome
    assert outcome.output_full and seen.full
    assert (
        outcome.message
        == "exited with code 1 with /output full: output size limit of 64 MB exceeded"
    )
    assert outcome.last_stderr_line == "OSError: [Errno 28] No space left on device"
    written = seen.files["big.bin"]
    assert 60 * 2**20 < written <= 66 * 2**20
    # the host holds no more than the volume's image, a little over the cap
    assert seen.allocated <= 64 * 2**20 * 1.05 + 2**20


def test_entrypoint_not_in_the_image(
    runtime: ContainerRuntime, images: Images, case_input: CaseInput, tmp_path: Path
) -> None:
    outcome, _ = run_in(runtime, images.get("noentry"), case_input, tmp_path)
    assert outcome.kind == "exited" and outcome.exit_code == 127, outcome
    assert outcome.message == (
        "exited with code 127: the image's entrypoint/command was not found in the image"
    )
    assert "/opt/algorithm/missing" in outcome.last_stderr_line


def test_missing_image_is_a_runtime_failure_not_a_pull(
    runtime: ContainerRuntime, case_input: CaseInput, tmp_path: Path
) -> None:
    outcome, _ = run_in(runtime, "localhost/hecktor-test-algo/absent:never", case_input, tmp_path)
    assert outcome.kind == "runtime", outcome
    assert outcome.exit_code == 125
    assert "platform failure" in outcome.message and "absent" not in outcome.message


def test_two_cases_at_once(runtime: ContainerRuntime, images: Images, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    image = images.get("threshold")
    cases = [make_input(tmp_path / f"in-{i}", seed=i) for i in range(2)]

    def one(case: CaseInput) -> tuple[CaseOutcome, Seen]:
        return run_in(
            runtime, image, case, tmp_path, inside=lambda out: check_threshold_outputs(out, case)
        )

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, cases))
    assert all(o.ok for o, _ in results)


def test_inspect_and_limits_from_a_phase(runtime: ContainerRuntime, images: Images) -> None:
    info = runtime.inspect(images.get("threshold"))
    assert info.entrypoint == ["python3", "-u", "/opt/algorithm/algorithm.py"]
    assert info.os == "linux" and info.architecture == "amd64" and info.size_bytes > 0
    with pytest.raises(RuntimeFailure, match="image inspect"):
        runtime.inspect("localhost/hecktor-test-algo/absent:never")

    class Phase:
        case_seconds, case_memory_mb, case_cpus, case_pids = 600, 4096, 1.0, 128
        case_gpu, case_tmp_mb, case_output_mb = False, 512, 1024

    lim = CaseLimits.from_phase(Phase())
    assert lim.seconds == 600 and lim.memory_mb == 4096 and lim.output_bytes == 1024 * 2**20
    cmd = runtime.run_command(
        CaseRun(image="x", input_dir=Path("/in"), output_dir=Path("/out"), limits=lim, name="n"),
        Path("/c"),
    )
    for flag in ("--network=none", "--read-only", "--cap-drop", "--pull=never", "--timeout"):
        assert flag in cmd
    assert cmd[cmd.index("--user") + 1] == "65534:65534"
    assert json.dumps(cmd)  # plain strings only
    assert case_name("x").startswith("hecktor-test-x-")


def test_isolation_seen_from_inside(
    runtime: ContainerRuntime, images: Images, case_input: CaseInput, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    model.mkdir(mode=0o755)
    (model / "weights.bin").write_bytes(b"w" * 100)
    os.chmod(model, 0o755)
    limits = dataclasses.replace(LIMITS, memory_mb=384, pids=48, cpus=0.5, tmp_mb=32)
    outcome, seen = run_in(
        runtime, images.get("probe"), case_input, tmp_path, limits=limits, model_dir=model
    )
    assert outcome.ok, outcome
    report = json.loads(outcome.log.strip().splitlines()[-1])
    assert (report["uid"], report["gid"]) == (65534, 65534)
    assert report["cap_eff"] == "0000000000000000" and report["no_new_privs"] == "1"
    assert report["root"] == report["input"] == report["model"] == "Read-only file system"
    assert report["tmp"] == report["output"] == "writable"
    assert report["model_files"] == ["weights.bin"]
    assert report["tmp_bytes"] == 32 * 2**20
    assert report["memory_limit"] == str(384 * 2**20)
    assert report["pids_max"] == "48"
    assert report["cpu_quota"] in ("50000", "50000 100000")
    assert report["interfaces"] == ["lo"]
    assert report["home"] == "/tmp"
    assert set(seen.files) == {"probe.json"}


def test_output_flood_is_captured_capped(
    runtime: ContainerRuntime, images: Images, case_input: CaseInput, tmp_path: Path
) -> None:
    outcome, _ = run_in(runtime, images.get("chatty"), case_input, tmp_path)
    assert outcome.ok, outcome.message
    assert outcome.last_stderr_line == "all written"
    assert len(outcome.log.encode()) <= 64 * 1024 + 100
    head, marker, tail = outcome.log.partition("\n[... ")
    assert marker and "bytes of output left out ...]" in tail
    omitted = int(tail.split()[0])
    # 200,000 lines of 103 bytes and the last line, minus what was kept
    assert omitted == 200_000 * 103 + len("all written\n") - 64 * 1024
    assert head.startswith("line 000000 ")
    # the two streams are read as they come: the order between them is not kept, so
    # only stderr's own last lines are sure to be at the end (stdout's last block may
    # come before or after them)
    assert {"all written", "line 199999 " + "x" * 90} <= set(tail.splitlines())
    # every kept line is whole or cut only at the two edges of the gap
    kept = head.splitlines()[:-1] + tail.splitlines()[2:]
    assert all(x == "all written" or (x.startswith("line ") and len(x) == 102) for x in kept)
