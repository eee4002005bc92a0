"""Task 1 performance: hecktor-eval against the read floor and a typical scorer.

    python -m benchmarks.task1 --cases 40 [--reps 3] [--seed 7]

Generates (once, cached under benchmarks/cache/) a CT-size synthetic set with
``hecktor-eval synth``, then measures in one run, interleaved case by case:

  (a) read floor: both .nii.gz files of a case decoded with nibabel's default
      reader (``np.asanyarray(img.dataobj)``), every voxel touched once;
  (b) hecktor-eval, one worker, as the service runs it: ground truth prepared at
      phase import (foreground crops), per case only the prediction is decoded;
  (c) a baseline written the way challenge scorers commonly are: SimpleITK
      LabelOverlapMeasuresImageFilter for Dice, scipy.ndimage.label and a Python
      loop over component pairs with full-volume masks for detection;
  (d) hecktor-eval with two worker processes, whole submission, wall time per case
      (compared with the same end-to-end run with one worker).

Prints per-case medians and the ratios a/b, c/b, b/d, and writes them as JSON to
benchmarks/results/task1.json. Peak memory: an upper bound from getrusage (this process + 2 x the largest worker).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from evaluator.protocol import HECKTOR2025, Limits
from evaluator.scoring import load_ground_truth, score_submission
from evaluator.task1 import CaseJob, run_case

HERE = Path(__file__).resolve().parent


def dataset(n_cases: int, seed: int) -> tuple[Path, Path]:
    """The CT-size synthetic set: (ground-truth Task 1 folder, extracted predictions)."""
    from evaluator.synth import generate_challenge

    root = HERE / "cache" / f"ct-{n_cases}-seed{seed}"
    gt_dir = root / "ground_truth" / "Task 1"
    pred_dir = root / "predictions"
    if not (root / "done").exists():
        import shutil
        import zipfile

        shutil.rmtree(root, ignore_errors=True)
        print(f"generating {n_cases} CT-size cases under {root} ...", flush=True)
        generate_challenge(root, seed=seed, n_cases=n_cases, small=False, teams=("good",))
        with zipfile.ZipFile(root / "submissions" / "good" / "task1.zip") as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                target = pred_dir / Path(info.filename).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(info))
        (root / "done").write_text("ok")
    return gt_dir, pred_dir


# --- (a) the read floor ----------------------------------------------------------------------


def read_floor(gt_path: Path, pred_path: Path) -> int:
    total = 0
    for p in (gt_path, pred_path):
        arr = np.asanyarray(nib.load(p).dataobj)
        total += int(np.count_nonzero(arr))  # touch every voxel once
    return total


# --- (c) the organizer-style baseline (benchmarks only, never in the product) --------------


def baseline_case(gt_path: Path, pred_path: Path) -> dict[str, float]:
    import SimpleITK as sitk
    from scipy import ndimage

    gt_img = sitk.ReadImage(str(gt_path))
    pred_img = sitk.ReadImage(str(pred_path))
    pred_img.CopyInformation(gt_img)
    out: dict[str, float] = {}
    for name, label in (("gtvp", 1), ("gtvn", 2)):
        g = sitk.BinaryThreshold(gt_img, label, label, 1, 0)
        p = sitk.BinaryThreshold(pred_img, label, label, 1, 0)
        f = sitk.LabelOverlapMeasuresImageFilter()
        f.Execute(g, p)
        out[f"{name}_dice"] = f.GetDiceCoefficient()
    gt = sitk.GetArrayFromImage(gt_img) == 2
    pred = sitk.GetArrayFromImage(pred_img) == 2
    s = ndimage.generate_binary_structure(3, 3)
    gl, ng = ndimage.label(gt, structure=s)
    pl, npred = ndimage.label(pred, structure=s)
    tp = fp = fn = 0
    matched_p: set[int] = set()
    for j in range(1, ng + 1):  # per true lesion, loop over predicted lesions
        gmask = gl == j
        hits = [i for i in range(1, npred + 1) if np.any(gmask & (pl == i))]
        if hits:
            pmask = np.isin(pl, hits)
            iou = np.sum(gmask & pmask) / np.sum(gmask | pmask)
            if iou >= 0.3:
                tp += 1
                matched_p.update(hits)
                continue
        fn += 1
    fp = npred - len(matched_p)
    out.update(tp=tp, fp=fp, fn=fn)
    return out


# --- peak memory ------------------------------------------------------------------------------


def peak_rss_mb(workers: int) -> float:
    """Upper bound of the peak memory of a run: this process's peak plus ``workers``
    times the largest worker's peak (getrusage; no sampling thread, which would make
    the scorer fork its workers from a threaded process)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + workers * child) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--baseline-cases", type=int, default=8, help="(c) is slow: cases it runs on")
    ap.add_argument("--output", type=Path, default=HERE / "results" / "task1.json")
    args = ap.parse_args()

    gt_dir, pred_dir = dataset(args.cases, args.seed)
    t0 = time.perf_counter()
    gt = load_ground_truth(1, gt_dir, cache_dir=gt_dir.parent.parent / "prepared")
    import_s = time.perf_counter() - t0
    limits = Limits()
    ids = list(gt.case_ids)
    preds = {pid: pred_dir / f"{pid}.nii.gz" for pid in ids}
    a: dict[str, list[float]] = {pid: [] for pid in ids}
    b: dict[str, list[float]] = {pid: [] for pid in ids}
    c: dict[str, list[float]] = {pid: [] for pid in ids[: args.baseline_cases]}
    for _ in range(args.reps):
        for pid in ids:
            case = gt.cases[pid]
            t = time.perf_counter()
            read_floor(case.path, preds[pid])
            a[pid].append(time.perf_counter() - t)
            job = CaseJob(
                pid, case, preds[pid], preds[pid].name, HECKTOR2025, limits.max_voxels, False
            )
            t = time.perf_counter()
            _, rec, problems = run_case(job)
            b[pid].append(time.perf_counter() - t)
            assert rec is not None and not problems, problems
            if pid in c:
                t = time.perf_counter()
                baseline_case(case.path, preds[pid])
                c[pid].append(time.perf_counter() - t)

    def med(d: dict[str, list[float]]) -> float:
        return statistics.median(statistics.median(v) for v in d.values()) * 1000

    a_ms, b_ms, c_ms = med(a), med(b), med(c)
    # (d): whole submissions, one vs two workers, interleaved
    w1: list[float] = []
    w2: list[float] = []
    docs = []
    for _ in range(args.reps):
        t = time.perf_counter()
        docs.append(score_submission(1, gt, pred_dir, workers=1))
        w1.append((time.perf_counter() - t) / len(ids) * 1000)
        t = time.perf_counter()
        docs.append(score_submission(1, gt, pred_dir, workers=2))
        w2.append((time.perf_counter() - t) / len(ids) * 1000)
    assert all(d["cases"] == docs[0]["cases"] for d in docs), "workers changed the result"
    b_e2e, d_ms = statistics.median(w1), statistics.median(w2)
    shapes = [gt.cases[p].shape for p in ids]
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "cases": len(ids),
        "slices": {"min": min(s[2] for s in shapes), "max": max(s[2] for s in shapes)},
        "reps": args.reps,
        "ground_truth_import_s": round(import_s, 2),
        "per_case_ms": {
            "a_read_floor_nibabel": round(a_ms, 1),
            "b_hecktor_eval_1_worker": round(b_ms, 1),
            "c_baseline_sitk_scipy_loops": round(c_ms, 1),
            "b_end_to_end_1_worker": round(b_e2e, 1),
            "d_end_to_end_2_workers": round(d_ms, 1),
        },
        "ratios": {
            "a/b": round(a_ms / b_ms, 2),
            "c/b": round(c_ms / b_ms, 1),
            "b/d": round(b_e2e / d_ms, 2),
        },
        "targets": {"a/b": ">= 4", "c/b": ">= 40", "b/d": ">= 1.8", "peak_MB": "< 2000"},
        "peak_rss_MB_2_workers": round(peak_rss_mb(2)),
        "baseline_cases": len(c),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    pc, r = report["per_case_ms"], report["ratios"]
    print(
        f"{len(ids)} CT-size cases (512x512x{report['slices']['min']}-{report['slices']['max']}), "
        f"{args.reps} reps, medians per case"
    )
    print(f"  (a) read floor, nibabel default, both files   {pc['a_read_floor_nibabel']:8.1f} ms")
    print(
        f"  (b) hecktor-eval, 1 worker (prepared GT)      {pc['b_hecktor_eval_1_worker']:8.1f} ms"
    )
    print(
        f"  (c) baseline: SimpleITK + scipy + pair loops  {pc['c_baseline_sitk_scipy_loops']:8.1f} ms"
        f"  ({len(c)} cases)"
    )
    print(f"  end to end, 1 worker                          {pc['b_end_to_end_1_worker']:8.1f} ms")
    print(f"  (d) end to end, 2 workers                     {pc['d_end_to_end_2_workers']:8.1f} ms")
    print(
        f"  a/b = {r['a/b']}  (target >= 4)   c/b = {r['c/b']}  (>= 40)   b/d = {r['b/d']}  (>= 1.8)"
    )
    print(f"  peak RSS with 2 workers: {report['peak_rss_MB_2_workers']} MB (target < 2000)")
    print(f"  written to {args.output}")


if __name__ == "__main__":
    main()
