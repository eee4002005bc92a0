"""Task 1 performance: hecktor-eval against the read floor and a typical scorer.

    python -m benchmarks.task1 --cases 40 [--reps 3] [--seed 7]

Generates (once, cached under benchmarks/cache/) a CT-size synthetic set with
``hecktor-eval synth``, then measures in one run, interleaved case by case:

  (a) read floor: both .nii.gz files of a case decoded with nibabel's default
      reader (``np.asanyarray(img.dataobj)``), every voxel touched once; nibabel
      uses indexed_gzip (the dev extra installs it), its fastest default;
  (b) hecktor-eval, one worker, as the service runs it: ground truth prepared at
      phase import (foreground crops), per case only the prediction is decoded;
  (c) a baseline written the way challenge scorers commonly are: SimpleITK
      LabelOverlapMeasuresImageFilter for Dice, scipy.ndimage.label and a Python
      loop over component pairs with full-volume masks for detection;
  (d) hecktor-eval with two worker processes, whole submission, wall time per case
      (compared with the same end-to-end run with one worker, run just before it:
      b/d is the median of those back-to-back ratios).

Prints per-case medians and the ratios a/b, c/b, b/d, and writes them as JSON to
benchmarks/results/task1.json. Peak memory: a fresh process scoring the set with two
workers, its memory and its children's sampled every few milliseconds from /proc.
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

import nibabel as nib
import numpy as np

from evaluator.pipeline.case import CaseJob, run_case
from evaluator.protocol import HECKTOR2025, Limits
from evaluator.scoring import load_ground_truth

HERE = Path(__file__).resolve().parent


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


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

_SCORE_2_WORKERS = """
import sys
from pathlib import Path
from evaluator.io.prepared import load_prepared_task1
from evaluator.scoring import score_submission
gt = load_prepared_task1(Path(sys.argv[2]))  # as a judge loads it: no image decoded
sys.stdout.write("loaded\\n"); sys.stdout.flush()
sys.stdin.readline()
score_submission(1, gt, Path(sys.argv[3]), workers=2)
"""


_E2E = """
import json, sys, time
from pathlib import Path
from evaluator.io.prepared import load_prepared_task1
from evaluator.scoring import score_submission
gt = load_prepared_task1(Path(sys.argv[2]))  # as a judge loads it: no image decoded
pred, reps, n = Path(sys.argv[3]), int(sys.argv[4]), len(gt.case_ids)
first = score_submission(1, gt, pred, workers=1)
assert score_submission(1, gt, pred, workers=2)["cases"] == first["cases"], "workers changed it"
w1, w2 = [], []
for _ in range(reps):
    t = time.perf_counter()
    score_submission(1, gt, pred, workers=1)
    w1.append((time.perf_counter() - t) / n * 1000)
    t = time.perf_counter()
    doc = score_submission(1, gt, pred, workers=2)
    w2.append((time.perf_counter() - t) / n * 1000)
    assert doc["cases"] == first["cases"], "workers changed the result"
print(json.dumps({"w1": w1, "w2": w2}))
"""


_WORST_CASE = """
import json, sys, time
from pathlib import Path
from evaluator.io.prepared import load_prepared_task1
from evaluator.protocol import HECKTOR2025, Limits
from evaluator.pipeline.case import CaseJob, run_case
def status_mb(key):  # this process's own figures (getrusage would report the parent's
    for line in open("/proc/self/status"):  # peak: Linux keeps ru_maxrss across exec)
        if line.startswith(key + ":"):
            return round(int(line.split()[1]) / 1024)
gt = load_prepared_task1(Path(sys.argv[2]))
pid, path = sys.argv[4], Path(sys.argv[5])
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) restarts from the current RSS
before = status_mb("VmRSS")
job = CaseJob(pid, gt.cases[pid], path, path.name, HECKTOR2025, Limits().max_voxels, False)
t = time.perf_counter()
_, rec, problems = run_case(job)
seconds = time.perf_counter() - t
assert rec is not None and not problems, problems
print(json.dumps({"peak_rss_MB": status_mb("VmHWM"), "rss_before_MB": before, "seconds": seconds}))
"""


DENSE_SHAPE = (512, 512, 300)
WORST_CASES = {
    # the whole grid one lesion: the crop is the whole volume, lesion labels included
    "all-foreground (GTVn)": lambda a: a.fill(2),
    # every other voxel in each axis: 9.8 million one-voxel lesions, apart at any
    # connectivity, so every lesion table is as long as it can be
    "9.8 million one-voxel lesions": lambda a: a.__setitem__(np.s_[::2, ::2, ::2], 2),
}


def worst_cases(cache: Path) -> tuple[Path, dict[str, Path]]:
    """A 512x512x300 case (the largest grid of the memory target) with an ordinary
    ground truth, prepared as at phase import, and the worst predictions for memory;
    cached. Returns (ground-truth folder, {name: prediction})."""
    root = cache / "worst-512x512x300"
    gt_dir = root / "ground_truth" / "Task 1"
    preds = {name: root / f"pred-{i}" / "CHUM-900.nii.gz" for i, name in enumerate(WORST_CASES)}
    if not (root / "done").exists():
        affine = np.diag([0.98, 0.98, 2.0, 1.0])
        truth = np.zeros(DENSE_SHAPE, np.uint8, order="F")
        truth[230:290, 230:290, 140:170] = 1  # a GTVp
        truth[300:320, 200:220, 150:160] = 2  # a node
        arrays = {gt_dir / "CHUM-900.nii.gz": truth}
        for name, fill in WORST_CASES.items():
            arr = np.zeros(DENSE_SHAPE, np.uint8, order="F")
            fill(arr)
            arrays[preds[name]] = arr
        for path, arr in arrays.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            img = nib.Nifti1Image(arr, affine)
            img.set_data_dtype(np.uint8)
            nib.save(img, path)
        load_ground_truth(1, gt_dir, cache_dir=root / "prepared")
        (root / "done").write_text("ok")
    return gt_dir, preds


def _run_fresh(script: str, gt_dir: Path, pred_dir: Path, *extra: str) -> str:
    import subprocess
    import sys

    prepared = gt_dir.parent.parent / "prepared"
    cmd = [sys.executable, "-c", script, str(gt_dir), str(prepared), str(pred_dir), *extra]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc/*/stat)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            parent[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, frontier = [pid], [pid]
    while frontier:
        frontier = [c for c, p in parent.items() if p in frontier]
        out += frontier
    return out


def _memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in kB; (0, 0) once it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    fields = dict(line.split(":", 1) for line in text.splitlines()[1:] if ":" in line)
    return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])


def peak_memory_2_workers(gt_dir: Path, prepared: Path, pred_dir: Path) -> dict[str, float]:
    """Peak memory of a whole 2-worker scoring run in a fresh process, sampled every
    few milliseconds over the process and its children: the peak of the summed PSS
    (shared pages counted once) and of the summed RSS (shared pages counted in every
    process: an upper bound)."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", _SCORE_2_WORKERS, str(gt_dir), str(prepared), str(pred_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    assert proc.stdout.readline().strip() == "loaded"
    loaded_rss, _ = _memory_kb(proc.pid)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    peak_rss = peak_pss = 0
    pids = [proc.pid]
    n = 0
    while proc.poll() is None:
        if n % 10 == 0:
            pids = _tree(proc.pid)
        n += 1
        rss = pss = 0
        for pid in pids:
            r, p = _memory_kb(pid)
            rss, pss = rss + r, pss + p
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.002)
    assert proc.returncode == 0, "the scoring run failed"
    return {
        "peak_pss_MB": round(peak_pss / 1024),
        "peak_rss_sum_MB": round(peak_rss / 1024),
        "rss_after_loading_MB": round(loaded_rss / 1024),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--reps", type=int, default=3, help="repetitions of (a), (b), (c)")
    ap.add_argument(
        "--e2e-reps", type=int, default=15, help="repetitions of the 1- and 2-worker runs"
    )
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
    # (d): whole submissions, one vs two workers, interleaved, in a fresh process that
    # holds only the loaded ground truth (as `hecktor-eval score` does), after a warm-up
    e2e = json.loads(_run_fresh(_E2E, gt_dir, pred_dir, str(args.e2e_reps)))
    w1, w2 = e2e["w1"], e2e["w2"]
    b_e2e, d_ms = statistics.median(w1), statistics.median(w2)
    # each 2-worker run against the 1-worker run just before it: the machine's speed
    # drifts (shared host), a pair measured back to back sees the same machine
    pair_ratios = sorted(x / y for x, y in zip(w1, w2, strict=True))
    memory = peak_memory_2_workers(gt_dir, gt_dir.parent.parent / "prepared", pred_dir)
    # the worst case for memory: a prediction that is all foreground (the whole
    # volume is its crop), in one fresh scoring process
    # the worst cases for memory, each scored in a fresh process
    worst_gt, worst_preds = worst_cases(HERE / "cache")
    memory["worst_case_1_process"] = {
        name: json.loads(_run_fresh(_WORST_CASE, worst_gt, path.parent, "CHUM-900", str(path)))
        for name, path in worst_preds.items()
    }
    shapes = [gt.cases[p].shape for p in ids]
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "nibabel": {"version": nib.__version__, "indexed_gzip": _version("indexed_gzip")},
        "cases": len(ids),
        "slices": {"min": min(s[2] for s in shapes), "max": max(s[2] for s in shapes)},
        "reps": args.reps,
        "e2e_reps": args.e2e_reps,
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
            "b/d": round(statistics.median(pair_ratios), 2),
        },
        "b/d_pairs": [round(r, 2) for r in pair_ratios],
        "e2e_runs_ms_per_case": {
            "1_worker": [round(x, 2) for x in w1],
            "2_workers": [round(x, 2) for x in w2],
        },
        "targets": {"a/b": ">= 4", "c/b": ">= 40", "b/d": ">= 1.8", "peak_MB": "< 2000"},
        "memory_2_workers": memory,
        "baseline_cases": len(c),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    pc, r = report["per_case_ms"], report["ratios"]
    print(
        f"{len(ids)} CT-size cases (512x512x{report['slices']['min']}-{report['slices']['max']}), "
        f"{args.reps} reps ((d): {args.e2e_reps}), medians per case"
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
    print(
        f"  peak memory, 2 workers: {memory['peak_pss_MB']} MB PSS "
        f"({memory['peak_rss_sum_MB']} MB summed RSS; target < 2000)"
    )
    for name, m in memory["worst_case_1_process"].items():
        print(
            f"  worst case, 512x512x300, {name}: {m['peak_rss_MB']} MB peak RSS, "
            f"{m['seconds']:.1f} s, in its process"
        )
    print(f"  written to {args.output}")


if __name__ == "__main__":
    main()
