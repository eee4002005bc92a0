"""C-index at scale: ``python -m benchmarks.cindex [--n 100000] [--repeats 5]``.

Random recurrence-free times (exponential, rounded to days so there are tied times),
about 80 % censored (as in the HECKTOR 2025 data, Fig. 3), continuous risks loosely
related to the times. Times the evaluator's ``c_index`` (lifelines' O(n log n)
algorithm) after one warm-up call that also pays the lifelines import, prints the
median and writes ``benchmarks/results/cindex.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from evaluator.metrics.survival import c_index

RESULTS = Path(__file__).resolve().parent / "results" / "cindex.json"


def make_data(n: int, *, seed: int = 2025) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    times = np.round(rng.exponential(36.0, n) * 30.0)  # days: many ties
    events = (rng.random(n) < 0.2).astype(np.int64)  # ~80 % censored
    risk = rng.normal(size=n) - times / times.std()  # higher risk -> earlier events
    return times, events, risk


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    times, events, risk = make_data(args.n)
    t0 = time.perf_counter()
    value = c_index(times, events, risk)  # warm-up, includes importing lifelines
    first = time.perf_counter() - t0
    runs = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        again = c_index(times, events, risk)
        runs.append(time.perf_counter() - t0)
        assert again == value
    report: dict[str, object] = {
        "benchmark": "c_index",
        "n": args.n,
        "censored_fraction": round(1.0 - float(events.mean()), 4),
        "distinct_times": int(np.unique(times).size),
        "repeats": args.repeats,
        "c_index": value,
        "first_call_s": round(first, 4),
        "median_s": round(statistics.median(runs), 4),
        "min_s": round(min(runs), 4),
        "max_s": round(max(runs), 4),
        "runs_s": [round(r, 4) for r in runs],
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(
        f"c_index, n={args.n:,}, {report['censored_fraction']:.0%} censored: "
        f"median {report['median_s']:.3f} s over {args.repeats} runs "
        f"(min {report['min_s']:.3f}, max {report['max_s']:.3f}; first call incl. import "
        f"{first:.3f} s); C = {value:.4f}; written to {args.output}"
    )
    return report


if __name__ == "__main__":
    main()
