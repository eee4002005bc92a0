"""The grand-challenge evaluation container's cost: ``hecktor-eval gc-evaluate`` on Task 1.

    python -m benchmarks.gc_evaluate --cases 500 [--reps 3] [--seed 7]

Takes the CT-size synthetic set of ``benchmarks/task1.py`` (512x512x90-300 label maps,
cached under benchmarks/cache/), rewrites each prediction as grand-challenge stores it
(a compressed ``.mha`` named by a UUID under ``<job pk>/output/images/...``, written with
SimpleITK on the prediction's grid) with a ``predictions.json`` of one job per case,
then runs ``hecktor-eval gc-evaluate --task 1`` in a fresh process, ``--reps`` times:

- wall time of the whole run (ground truth read, predictions.json, mapping, staging,
  scoring, metrics.json);
- peak memory: the child's maximum resident set (``/usr/bin/time -v``, the largest
  single process), and the summed RSS and PSS of its process tree, sampled every few
  milliseconds from /proc (PSS counts shared pages once);
- the same submission as ``.nii.gz`` files scored by ``hecktor-eval score``, for
  comparison; the aggregates must be equal.

Writes the figures to benchmarks/results/gc_evaluate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.task1 import HERE, _memory_kb, _tree, dataset

SEG = "images/tumor-lymph-node-segmentation"
CLI = [sys.executable, "-m", "evaluator.cli"]


def _socket(slug: str, rel: str, super_kind: str) -> dict[str, Any]:
    return {"slug": slug, "relative_path": rel, "kind": super_kind, "super_kind": super_kind}


def gc_input(root: Path, pred_dir: Path, seed: int) -> Path:
    """``root/input``: one job per prediction, its label map as a UUID-named .mha."""
    import SimpleITK as sitk

    input_dir = root / "input"
    if (root / "input-done").exists():
        return input_dir
    rng = random.Random(seed)
    jobs = []
    preds = sorted(pred_dir.glob("*.nii.gz"))
    print(f"writing {len(preds)} .mha outputs under {input_dir} ...", flush=True)
    for path in preds:
        pid = path.name.removesuffix(".nii.gz")
        pk, image_pk = (str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(2))
        folder = input_dir / pk / "output" / SEG
        folder.mkdir(parents=True)
        read = sitk.ReadImage(str(path))
        image = sitk.GetImageFromArray(sitk.GetArrayFromImage(read))
        image.CopyInformation(read)
        sitk.WriteImage(image, str(folder / f"{image_pk}.mha"), useCompression=True)
        ct = {"pk": str(uuid.UUID(int=rng.getrandbits(128))), "name": f"{pid}__CT.nii.gz"}
        ct_value = {"socket": _socket("ct-image", "images/ct", "Image"), "image": ct}
        seg = _socket("tumor-lymph-node-segmentation", SEG, "Image")
        seg_value = {"socket": seg, "image": {"pk": image_pk, "name": "output.mha"}}
        jobs.append(
            {
                "pk": pk,
                "status": "Succeeded",
                "inputs": [{**ct_value, "value": None, "file": None, "pk": 1}],
                "outputs": [{**seg_value, "value": None, "file": None, "pk": 2}],
            }
        )
    rng.shuffle(jobs)
    (input_dir / "predictions.json").write_text(json.dumps(jobs))
    (root / "input-done").write_text("ok")
    return input_dir


def _max_rss_kb(time_report: str) -> int:
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_report)
    return int(m.group(1)) if m else 0


def run_measured(cmd: list[str]) -> dict[str, float]:
    """Run ``cmd`` under /usr/bin/time -v, sampling its process tree's memory."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        ["/usr/bin/time", "-v", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    peak_rss = peak_pss = 0
    pids = [proc.pid]
    n = 0
    while proc.poll() is None:
        if n % 10 == 0:
            pids = _tree(proc.pid)[1:]  # without time itself
        n += 1
        rss = pss = 0
        for pid in pids:
            r, p = _memory_kb(pid)
            rss, pss = rss + r, pss + p
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    assert proc.stderr is not None
    report = proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{report[-2000:]}")
    return {
        "wall_s": round(wall, 2),
        "max_rss_MB": round(_max_rss_kb(report) / 1024),
        "peak_tree_rss_sum_MB": round(peak_rss / 1024),
        "peak_tree_pss_MB": round(peak_pss / 1024),
    }


def _du_mb(path: Path, pattern: str) -> float:
    return round(sum(p.stat().st_size for p in path.rglob(pattern)) / 1e6, 1)


def _median(runs: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", type=int, default=500)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--output", type=Path, default=HERE / "results" / "gc_evaluate.json")
    args = ap.parse_args()

    gt_task1, pred_dir = dataset(args.cases, args.seed)
    root = gt_task1.parent.parent
    input_dir = gc_input(root, pred_dir, args.seed)
    scratch = root / "runs"
    scratch.mkdir(exist_ok=True)
    gc_cmd = [
        *CLI, "gc-evaluate", "--task", "1", "--input", str(input_dir),
        "--ground-truth", str(root / "ground_truth"), "--output", str(scratch / "gc"),
        "--workers", str(args.workers),
    ]  # fmt: skip
    score_cmd = [
        *CLI, "score", "--task", "1", "--ground-truth", str(gt_task1), "--predictions",
        str(pred_dir), "--output", str(scratch / "score.json"), "--workers",
        str(args.workers), "-q",
    ]  # fmt: skip
    env_tmp = scratch / "tmp"
    env_tmp.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(env_tmp)
    gc_runs, score_runs = [], []
    for rep in range(args.reps):
        gc_runs.append(run_measured(gc_cmd))
        score_runs.append(run_measured(score_cmd))
        print(f"rep {rep + 1}: gc-evaluate {gc_runs[-1]}, score {score_runs[-1]}", flush=True)
    metrics = json.loads((scratch / "gc" / "metrics.json").read_text())
    score = json.loads((scratch / "score.json").read_text())
    equal = metrics["aggregates"] == score["metrics"]
    assert equal, (metrics["aggregates"], score["metrics"])
    assert not any(env_tmp.iterdir()), "gc-evaluate left files in TMPDIR"
    shapes = [c["shape"] for c in json.loads((root / "manifest.json").read_text())["cases"]]
    wall = _median(gc_runs, "wall_s")
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "cases": args.cases,
        "slices": {"min": min(s[2] for s in shapes), "max": max(s[2] for s in shapes)},
        "grid": "512x512 in-plane",
        "workers": args.workers,
        "reps": args.reps,
        "input_mha_MB": _du_mb(input_dir, "*.mha"),
        "predictions_json_kB": round((input_dir / "predictions.json").stat().st_size / 1e3, 1),
        "gc_evaluate": {
            "wall_s_median": wall,
            "per_case_ms": round(1000 * wall / args.cases, 1),
            "max_rss_MB": max(r["max_rss_MB"] for r in gc_runs),
            "peak_tree_rss_sum_MB": max(r["peak_tree_rss_sum_MB"] for r in gc_runs),
            "peak_tree_pss_MB": max(r["peak_tree_pss_MB"] for r in gc_runs),
            "runs": gc_runs,
        },
        "score_same_predictions_nii_gz": {
            "wall_s_median": _median(score_runs, "wall_s"),
            "max_rss_MB": max(r["max_rss_MB"] for r in score_runs),
            "runs": score_runs,
        },
        "aggregates_equal_to_score": equal,
        "aggregates": metrics["aggregates"],
        "grand_challenge_limits": {"time_s": 3600, "memory_MB": 8192, "vcpus": 2},
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "aggregates"}, indent=2))


if __name__ == "__main__":
    main()
