"""Per-case overhead of running algorithm containers.

    python -m benchmarks.containers [--runs 20] [--runtime podman] [--cases 50 --parallel 2]

Builds (cached) the trivial test algorithm (tests/containers/algorithms/trivial: one
shell line writing /output/rfs.json) and measures in one run, interleaved run by run:

  (a) bare:      `podman run --rm IMAGE true`, nothing else (default network);
  (a') bare without network: `podman run --rm --network=none IMAGE true`;
  (b) isolated:  the full isolated command of one case as ``run_case`` builds it
                 (no network, read-only, limits, mounts), started directly;
  (c) run_case:  ``ContainerRuntime.run_case`` with its output volume made and removed
                 (``sized_output``: a loop-mounted ext4 as root), the whole wall time.

Prints the medians, (c) - (a) and (c) / (a), and (c) - (b) (the Python side: volume,
capture, classification), and writes them as JSON to benchmarks/results/containers.json.
With --cases N, also the wall time of N cases run ``--parallel`` at once through
``run_cases`` (the function a judge can reuse).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.algorithms.output_volume import sized_output
from app.algorithms.runtime import (
    CaseLimits,
    CaseOutcome,
    CaseRun,
    ContainerRuntime,
    detect_runtime,
)

HERE = Path(__file__).resolve().parent
TRIVIAL = HERE.parent / "tests" / "containers" / "algorithms" / "trivial"
IMAGE = "localhost/hecktor-test-algo/trivial:latest"
LIMITS = CaseLimits(
    seconds=60, memory_mb=512, cpus=1.0, pids=64, gpu=False, tmp_mb=64, output_mb=64
)


@dataclass(frozen=True)
class CaseTiming:
    outcome: CaseOutcome
    wall_seconds: float  # volume made + run + volume removed


def run_one_case(
    rt: ContainerRuntime, image: str, input_dir: Path, work: Path, limits: CaseLimits
) -> CaseTiming:
    """One case as a judge runs it: a sized /output, ``run_case``, the volume removed."""
    started = time.perf_counter()
    out = work / f"out-{uuid.uuid4().hex[:10]}"
    with sized_output(out, limits.output_bytes) as volume:
        outcome = rt.run_case(
            CaseRun(
                image=image,
                input_dir=input_dir,
                output_dir=volume,
                limits=limits,
                name=f"hecktor-bench-{uuid.uuid4().hex[:12]}",
            )
        )
    return CaseTiming(outcome=outcome, wall_seconds=time.perf_counter() - started)


def run_cases(
    rt: ContainerRuntime,
    image: str,
    inputs: Sequence[Path],
    work: Path,
    limits: CaseLimits,
    *,
    parallel: int = 2,
) -> tuple[float, list[CaseTiming]]:
    """Every input folder run as a case, ``parallel`` at once; (wall seconds, timings in
    input order)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        timings = list(pool.map(lambda d: run_one_case(rt, image, d, work, limits), inputs))
    return time.perf_counter() - started, timings


def build_trivial(rt: ContainerRuntime) -> str:
    res = subprocess.run(
        [rt.executable, "build", "--pull=never", "--quiet", "-t", IMAGE, str(TRIVIAL)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return res.stdout.strip().splitlines()[-1].removeprefix("sha256:")


def _timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - started


def measure(rt: ContainerRuntime, runs: int, work: Path) -> dict[str, Any]:
    image = build_trivial(rt)
    input_dir = work / "input"
    input_dir.mkdir(mode=0o755)
    os.chmod(input_dir, 0o755)
    bare: list[float] = []
    bare_nonet: list[float] = []
    isolated: list[float] = []
    full: list[float] = []
    own_overhead: list[float] = []
    # warm-up: caches of the first start
    for _ in range(2):
        _timed([rt.executable, "run", "--rm", image, "true"])
        run_one_case(rt, image, input_dir, work, LIMITS)
    for _ in range(runs):
        bare.append(_timed([rt.executable, "run", "--rm", image, "true"]))
        bare_nonet.append(_timed([rt.executable, "run", "--rm", "--network=none", image, "true"]))
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            out = Path(tmp) / "out"
            out.mkdir(mode=0o777)
            os.chmod(out, 0o777)
            run = CaseRun(
                image=image,
                input_dir=input_dir,
                output_dir=out,
                limits=LIMITS,
                name=f"hecktor-bench-{uuid.uuid4().hex[:12]}",
            )
            cmd = rt.run_command(run, Path(tmp) / "cid")
            if rt.name == "docker":
                cmd.insert(2, "--rm")
            isolated.append(_timed(cmd))
        timing = run_one_case(rt, image, input_dir, work, LIMITS)
        assert timing.outcome.ok, timing.outcome
        full.append(timing.wall_seconds)
        own_overhead.append(timing.outcome.overhead_seconds)
    a, a2, b, c = (statistics.median(x) for x in (bare, bare_nonet, isolated, full))
    return {
        "median_s": {
            "a_bare_run_true": round(a, 3),
            "a2_bare_run_true_network_none": round(a2, 3),
            "b_isolated_command": round(b, 3),
            "c_run_case_with_volume": round(c, 3),
        },
        "c_minus_a_s": round(c - a, 3),
        "c_over_a": round(c / a, 2),
        "c_minus_a2_s": round(c - a2, 3),
        "c_over_a2": round(c / a2, 2),
        "c_minus_b_s": round(c - b, 3),
        "run_case_overhead_seconds_median": round(statistics.median(own_overhead), 3),
        "spread_s": {
            "a": [round(min(bare), 3), round(max(bare), 3)],
            "c": [round(min(full), 3), round(max(full), 3)],
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--runtime", default="podman", choices=["auto", "podman", "docker"])
    ap.add_argument("--cases", type=int, default=0, help="also N cases run --parallel at once")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--output", type=Path, default=HERE / "results" / "containers.json")
    args = ap.parse_args()

    rt = detect_runtime(args.runtime)
    with tempfile.TemporaryDirectory(prefix="hecktor-bench-") as tmp:
        work = Path(tmp)
        report: dict[str, Any] = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "load": [round(x, 2) for x in os.getloadavg()],
            },
            "runtime": rt.name,
            "runs": args.runs,
            **measure(rt, args.runs, work),
        }
        if args.cases:
            wall, timings = run_cases(
                rt, IMAGE, [work / "input"] * args.cases, work, LIMITS, parallel=args.parallel
            )
            assert all(t.outcome.ok for t in timings)
            report["cases"] = {
                "n": args.cases,
                "parallel": args.parallel,
                "wall_s": round(wall, 2),
                "per_case_s": round(wall / args.cases, 3),
            }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    m = report["median_s"]
    print(f"per-case container overhead ({rt.name}, median of {args.runs}):")
    print(f"  (a) bare `run --rm IMAGE true`        {m['a_bare_run_true']:.3f} s")
    print(f"  (a') the same, --network=none          {m['a2_bare_run_true_network_none']:.3f} s")
    print(f"  (b) the isolated command, direct      {m['b_isolated_command']:.3f} s")
    print(f"  (c) run_case + output volume          {m['c_run_case_with_volume']:.3f} s")
    print(
        f"  c - a = {report['c_minus_a_s']:.3f} s, c / a = {report['c_over_a']:.2f}; "
        f"c - a' = {report['c_minus_a2_s']:.3f} s, c / a' = {report['c_over_a2']:.2f}; "
        f"c - b = {report['c_minus_b_s']:.3f} s"
    )
    if "cases" in report:
        cs = report["cases"]
        print(f"  {cs['n']} cases, {cs['parallel']} at once: {cs['wall_s']:.2f} s wall")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
