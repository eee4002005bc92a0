"""Task 1 per-case cost of a MetaImage (.mha) prediction against the same prediction as
.nii.gz, on the CT-size synthetic set of benchmarks/task1.py.

    python -m benchmarks.mha --cases 40 [--reps 5] [--seed 7]

Each prediction of the set (``hecktor-eval synth``, .nii.gz) is converted once to a
compressed .mha with SimpleITK (``ReadImage`` + ``WriteImage(useCompression=True)``, as
a participant using SimpleITK writes it; cached under benchmarks/cache/). Then, in one
run, interleaved case by case and alternating which format goes first, each case is
scored as the service scores it (ground truth prepared at import, one worker,
``run_case``) from both files; the two must give identical statistics. Also timed once
each: importing the ground truth (validate and prepare) as .nii.gz and as .mha.

Prints the per-case medians and their ratio, and writes them as JSON to
benchmarks/results/mha.json.
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

from benchmarks.task1 import HERE, _version, dataset
from evaluator.pipeline.case import CaseJob, run_case
from evaluator.protocol import HECKTOR2025, Limits
from evaluator.scoring import load_ground_truth


def to_mha(src: Path, dst: Path) -> None:
    import SimpleITK as sitk

    dst.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.ReadImage(str(src)), str(dst), useCompression=True)


def mha_set(gt_dir: Path, pred_dir: Path, n_cases: int, seed: int) -> tuple[Path, Path]:
    """The set's ground truth and predictions as .mha (cached)."""
    root = HERE / "cache" / f"mha-{n_cases}-seed{seed}"
    gt_mha, pred_mha = root / "ground_truth" / "Task 1", root / "predictions"
    if not (root / "done").exists():
        print(f"converting {n_cases} cases to .mha under {root} ...", flush=True)
        for p in sorted(pred_dir.glob("*.nii.gz")):
            to_mha(p, pred_mha / p.name.replace(".nii.gz", ".mha"))
        for p in sorted(gt_dir.glob("*/*.nii.gz")):
            pid = p.parent.name
            if p.name == f"{pid}.nii.gz":
                to_mha(p, gt_mha / pid / f"{pid}.mha")
        (root / "done").write_text("ok")
    return gt_mha, pred_mha


def _import_s(gt_dir: Path, cache: Path) -> tuple[Any, float]:
    import shutil

    shutil.rmtree(cache, ignore_errors=True)
    t = time.perf_counter()
    gt = load_ground_truth(1, gt_dir, cache_dir=cache)
    return gt, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--output", type=Path, default=HERE / "results" / "mha.json")
    args = ap.parse_args()

    gt_dir, pred_dir = dataset(args.cases, args.seed)
    gt_mha_dir, pred_mha_dir = mha_set(gt_dir, pred_dir, args.cases, args.seed)
    prep = HERE / "cache" / f"mha-{args.cases}-seed{args.seed}" / "prepared"
    gt, nii_import_s = _import_s(gt_dir, prep / "nii")
    gt_mha, mha_import_s = _import_s(gt_mha_dir, prep / "mha")
    assert gt_mha.case_ids == gt.case_ids
    limits = Limits()
    ids = list(gt.case_ids)
    files = {
        "nii_gz": {pid: pred_dir / f"{pid}.nii.gz" for pid in ids},
        "mha": {pid: pred_mha_dir / f"{pid}.mha" for pid in ids},
    }
    times: dict[str, dict[str, list[float]]] = {k: {pid: [] for pid in ids} for k in files}
    for rep in range(args.reps):
        for i, pid in enumerate(ids):
            order = ["nii_gz", "mha"] if (rep + i) % 2 == 0 else ["mha", "nii_gz"]
            stats = {}
            for kind in order:
                path = files[kind][pid]
                job = CaseJob(
                    pid, gt.cases[pid], path, path.name, HECKTOR2025, limits.max_voxels, False
                )
                t = time.perf_counter()
                _, rec, problems = run_case(job)
                times[kind][pid].append(time.perf_counter() - t)
                assert rec is not None and not problems, problems
                stats[kind] = rec
            assert stats["mha"] == stats["nii_gz"], pid

    def med(d: dict[str, list[float]]) -> float:
        return statistics.median(statistics.median(v) for v in d.values()) * 1000

    nii_ms, mha_ms = med(times["nii_gz"]), med(times["mha"])
    per_case_ratio = sorted(
        statistics.median(times["mha"][p]) / statistics.median(times["nii_gz"][p]) for p in ids
    )

    def mean_kb(d: dict[str, Path]) -> float:
        return round(statistics.mean(p.stat().st_size for p in d.values()) / 1024, 1)

    shapes = [gt.cases[p].shape for p in ids]
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "zlib_ng": _version("zlib-ng"),
        "simpleitk": _version("SimpleITK"),
        "cases": len(ids),
        "slices": {"min": min(s[2] for s in shapes), "max": max(s[2] for s in shapes)},
        "reps": args.reps,
        "mean_file_kB": {"nii_gz": mean_kb(files["nii_gz"]), "mha": mean_kb(files["mha"])},
        "per_case_ms": {"nii_gz": round(nii_ms, 2), "mha": round(mha_ms, 2)},
        "ratio_mha_over_nii_gz": round(mha_ms / nii_ms, 3),
        "per_case_ratio_quartiles": [
            round(statistics.quantiles(per_case_ratio, n=4)[i], 3) for i in range(3)
        ],
        "ground_truth_import_s": {"nii_gz": round(nii_import_s, 2), "mha": round(mha_import_s, 2)},
        "target": "mha/nii_gz <= 1.0 (an .mha costs no more per case than a .nii.gz)",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{len(ids)} CT-size cases (512x512x{report['slices']['min']}-{report['slices']['max']}), "
        f"{args.reps} reps, medians per case, one worker, prepared ground truth"
    )
    print(f"  .nii.gz  {nii_ms:8.2f} ms   ({report['mean_file_kB']['nii_gz']} kB per file)")
    print(f"  .mha     {mha_ms:8.2f} ms   ({report['mean_file_kB']['mha']} kB per file)")
    print(f"  mha / nii.gz = {report['ratio_mha_over_nii_gz']}")
    print(f"  ground truth import: {nii_import_s:.2f} s (.nii.gz), {mha_import_s:.2f} s (.mha)")
    print(f"  written to {args.output}")


if __name__ == "__main__":
    main()
