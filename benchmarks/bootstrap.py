"""Bootstrap at leaderboard scale: ``python -m benchmarks.bootstrap [--teams 20]
[--cases 400] [--resamples 1000] [--repeats 3]``.

Synthetic per-case records (no image: the bootstrap reads only stored records) for
tasks 1, 2 and 3, teams of graded quality so the ranking is neither fixed nor random.
Times :func:`evaluator.bootstrap.bootstrap` (full-data values, every resample's metrics,
ranks, Kendall's tau and the summaries) after one warm-up call that also pays the
imports (lifelines, scikit-learn), prints the medians and writes
``benchmarks/results/bootstrap.json``. Target: under 10 s per task for
20 teams x 400 cases x 1000 resamples.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from evaluator.bootstrap import bootstrap

RESULTS = Path(__file__).resolve().parent / "results" / "bootstrap.json"
CENTERS = ("CHUM", "CHUP", "CHUS", "HGJ", "HMR", "MDA", "USZ")


def synthetic_teams(
    task: int, *, n_teams: int, n_cases: int, seed: int = 2025
) -> dict[str, list[dict[str, Any]]]:
    """``n_teams`` teams' per-case records of ``task`` on one common case set."""
    rng = np.random.default_rng([seed, task])
    ids = [f"{CENTERS[i % len(CENTERS)]}-{i:03d}" for i in range(n_cases)]
    centers = [pid.split("-")[0] for pid in ids]
    skill = np.linspace(0.9, 0.4, n_teams)
    teams: dict[str, list[dict[str, Any]]] = {}
    if task == 1:
        p_gt = rng.integers(0, 40_000, n_cases) * (rng.random(n_cases) < 0.96)
        n_gt = rng.integers(0, 8_000, n_cases) * (rng.random(n_cases) < 0.89)
        lesions = rng.integers(0, 5, n_cases) * (n_gt > 0)
        vol = rng.choice([0.5, 1.0, 2.0, 4.0], n_cases)
        for t in range(n_teams):
            q = np.clip(skill[t] + rng.normal(0, 0.15, n_cases), 0, 1)
            p_int = (p_gt * q).astype(np.int64)
            p_pred = p_int + rng.integers(0, 4_000, n_cases) * (p_gt > 0)
            n_int = (n_gt * np.clip(q - 0.1, 0, 1)).astype(np.int64)
            n_pred = n_int + rng.integers(0, 2_000, n_cases)
            tp = rng.binomial(lesions, np.clip(q, 0, 1))
            teams[f"team-{t:02d}"] = [
                {
                    "patient_id": ids[i],
                    "center": centers[i],
                    "gtvp_intersection": int(p_int[i]),
                    "gtvp_pred_voxels": int(p_pred[i]),
                    "gtvp_gt_voxels": int(p_gt[i]),
                    "gtvn_intersection": int(n_int[i]),
                    "gtvn_pred_voxels": int(n_pred[i]),
                    "gtvn_gt_voxels": int(n_gt[i]),
                    "gtvn_tp": int(tp[i]),
                    "gtvn_fp": int(rng.integers(0, 3)),
                    "gtvn_fn": int(lesions[i] - tp[i]),
                    "voxel_volume_mm3": float(vol[i]),
                }
                for i in range(n_cases)
            ]
    elif task == 2:
        hazard = rng.normal(size=n_cases)
        times = np.round(rng.exponential(36.0 * np.exp(-hazard)) * 30.0)  # days, ties
        events = (rng.random(n_cases) < 0.2).astype(np.int64)  # ~80 % censored
        for t in range(n_teams):
            risk = skill[t] * hazard + rng.normal(size=n_cases)
            teams[f"team-{t:02d}"] = [
                {
                    "patient_id": ids[i],
                    "center": centers[i],
                    "prediction": float(risk[i]),
                    "time": float(times[i]),
                    "event": int(events[i]),
                }
                for i in range(n_cases)
            ]
    elif task == 3:
        labels = (rng.random(n_cases) < 0.67).astype(np.int64)
        for t in range(n_teams):
            logit = 3.0 * skill[t] * (2 * labels - 1) + rng.normal(size=n_cases)
            prob = np.round(1.0 / (1.0 + np.exp(-logit)), 3)  # rounded: tied scores
            teams[f"team-{t:02d}"] = [
                {
                    "patient_id": ids[i],
                    "center": centers[i],
                    "prediction": float(prob[i]),
                    "label": int(labels[i]),
                }
                for i in range(n_cases)
            ]
    else:
        raise ValueError(f"task must be 1, 2 or 3, not {task!r}")
    return teams


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--teams", type=int, default=20)
    parser.add_argument("--cases", type=int, default=400)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    tasks: dict[str, Any] = {}
    for task in (1, 2, 3):
        teams = synthetic_teams(task, n_teams=args.teams, n_cases=args.cases)
        t0 = time.perf_counter()
        result = bootstrap(task, teams, n_resamples=args.resamples, seed=0)
        first = time.perf_counter() - t0
        runs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            again = bootstrap(task, teams, n_resamples=args.resamples, seed=0)
            runs.append(time.perf_counter() - t0)
            assert again == result
        tasks[str(task)] = {
            "first_call_s": round(first, 4),
            "median_s": round(statistics.median(runs), 4),
            "min_s": round(min(runs), 4),
            "max_s": round(max(runs), 4),
            "runs_s": [round(r, 4) for r in runs],
            "n_degenerate": result.n_degenerate,
            "kendall_tau_median": result.kendall_tau.median,
        }
        print(
            f"task {task}: {args.teams} teams x {args.cases} cases x {args.resamples} "
            f"resamples: median {tasks[str(task)]['median_s']:.3f} s over {args.repeats} "
            f"runs (first call incl. imports {first:.3f} s); Kendall tau median "
            f"{result.kendall_tau.median:.3f}"
        )
    report: dict[str, Any] = {
        "benchmark": "bootstrap",
        "teams": args.teams,
        "cases": args.cases,
        "resamples": args.resamples,
        "repeats": args.repeats,
        "target_s": 10.0,
        "tasks": tasks,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written to {args.output}")
    return report


if __name__ == "__main__":
    main()
