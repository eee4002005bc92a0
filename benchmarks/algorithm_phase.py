"""A whole algorithm phase judged: N cases of a trivial algorithm, ``--parallel`` at once.

    python -m benchmarks.algorithm_phase [--cases 50] [--parallel 2] [--runtime podman]

Writes a synthetic challenge with ``--cases`` patients (``synth --small`` grid, its
algorithm inputs included), creates an algorithm phase for Task 2 through the service
layer (the inputs converted once: timed apart), uploads the trivial test algorithm
(tests/containers/algorithms/trivial, saved with ``podman save``) through the HTTP API
and judges it with ``app.jobs.runner.run_job``, the function every dispatcher calls:
image loaded, every case in its own isolated container with its output volume, the
outputs checked and staged, then scored, result stored.

Baseline, in the same run (twice, after the judging): as many bare ``podman run --rm --network=none
IMAGE true`` with the same parallelism (what starting the containers costs at the
least). Prints both walls, their ratio and the judge's cost per case above the
baseline, and writes benchmarks/results/algorithm_phase.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.containers import build_trivial

HERE = Path(__file__).resolve().parent
ORG = "bench-organizer-token-0123456789abcdef"


def bare_runs(exe: str, image: str, n: int, parallel: int) -> float:
    """Wall time of ``n`` bare ``run --rm --network=none IMAGE true``, ``parallel`` at once."""

    def one(_: int) -> None:
        subprocess.run(
            [exe, "run", "--rm", "--network=none", image, "true"],
            check=True,
            capture_output=True,
            timeout=120,
        )

    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(n)))
    return time.perf_counter() - t0


def judge_phase(
    work: Path, exe: str, image: str, n_cases: int, parallel: int, runtime: str
) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from app.db.models import Submission
    from app.db.session import session_factory, session_scope
    from app.jobs.base import Dispatcher
    from app.jobs.runner import run_job
    from app.main import create_app
    from app.services.phases import create_phase
    from app.services.teams import create_team
    from app.settings import Settings
    from evaluator.synth import generate_challenge

    class Hold(Dispatcher):
        """Judges nothing: the benchmark calls run_job itself, timed."""

        name = "hold"

        def submit(self, submission_id: int) -> None:
            pass

    challenge = work / "challenge"
    t0 = time.perf_counter()
    generate_challenge(challenge, seed=0, small=True, n_cases=n_cases)
    synth_s = time.perf_counter() - t0
    tarball = work / "trivial.tar"
    subprocess.run([exe, "save", "-o", str(tarball), image], check=True, capture_output=True)
    values: dict[str, Any] = {
        "data_dir": work / "data",
        "organizer_token": ORG,
        "container_runtime": runtime,
        "progress_interval": 0.5,
        "sweep_interval": 0.0,
        "retention_interval": 0.0,
        "log_level": "warning",
    }
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    settings.ensure_dirs()
    app = create_app(settings, dispatcher=Hold())
    with TestClient(app) as client:
        sessions = app.state.sessions
        t0 = time.perf_counter()
        with session_scope(sessions) as s:
            create_phase(
                s,
                settings,
                name="bench",
                ground_truth=challenge / "ground_truth",
                tasks=[2],
                kind="algorithm",
                inputs=challenge / "inputs",
                parallel_cases=parallel,
                case_seconds=60,
                case_memory_mb=512,
                case_output_mb=16,
                case_tmp_mb=16,
            )
            _team, token = create_team(s, "bench")
        import_s = time.perf_counter() - t0
        with open(tarball, "rb") as fh:
            r = client.post(
                "/api/v1/submissions",
                data={"phase": "bench", "task": "2"},
                files={"file": ("trivial.tar", fh, "application/x-tar")},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert r.status_code == 202, r.text
        sid = int(r.json()["id"])
        t0 = time.perf_counter()
        status = run_job(sid, settings.to_dict())
        judge_s = time.perf_counter() - t0
        with session_scope(session_factory(app.state.engine)) as s:
            sub = s.get(Submission, sid)
            assert sub is not None
            errors = sub.errors
            cases = sub.progress_total
    if status != "scored":
        raise SystemExit(f"the benchmark submission ended {status}: {errors}")
    return {
        "synth_s": round(synth_s, 2),
        "phase_import_s": round(import_s, 2),
        "judge_s": round(judge_s, 2),
        "cases_scored": cases,
        "status": status,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--cases", type=int, default=52, help="patients (Task 2 has targets for 50 of 52)"
    )
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--runtime", default="podman", choices=("podman", "docker"))
    ap.add_argument("--output", type=Path, default=HERE / "results" / "algorithm_phase.json")
    args = ap.parse_args()

    from app.algorithms.runtime import detect_runtime

    rt = detect_runtime(args.runtime)
    image = build_trivial(rt)
    with tempfile.TemporaryDirectory(prefix="hecktor-bench-") as tmp:
        bare_runs(rt.executable, image, 4, args.parallel)  # warm the runtime
        judged = judge_phase(
            Path(tmp), rt.executable, image, args.cases, args.parallel, args.runtime
        )
        n = int(judged["cases_scored"])  # the baseline starts as many containers
        bare_s = bare_runs(rt.executable, image, n, args.parallel)
        bare_after_s = bare_runs(rt.executable, image, n, args.parallel)
    baseline = (bare_s + bare_after_s) / 2
    doc = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load": [round(x, 2) for x in os.getloadavg()],
        },
        "runtime": args.runtime,
        "patients": args.cases,
        "parallel": args.parallel,
        "baseline_bare_runs_s": [round(bare_s, 2), round(bare_after_s, 2)],
        **judged,
        "judge_over_baseline": round(judged["judge_s"] / baseline, 2),
        "judge_minus_baseline_per_case_s": round((judged["judge_s"] - baseline) / n, 3),
    }
    print(json.dumps(doc, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
