"""Judging compression bombs: wall time and peak memory of scoring each one.

    python -m benchmarks.bombs [--tree PATH] [--timeout 300] [--only zip,tar.gz,member]

Builds, under a temporary folder, a one-case Task 1 ground truth on a CT-size grid
(512x512x300, an empty mask, prepared as the service prepares it), a valid
prediction (an empty mask: the cost of decoding the grid once) and three bombs:

  (a) zip:    8.5 MB of zip, 8 members of 1 GiB of zeros (deflate's ~1,032:1);
  (b) tar.gz: the same 8 GiB as one .tar.gz stream;
  (c) member: a zip (1.1 MB) whose only member is a 1 GiB .nii.gz (stored blocks, just
      under the 1 GiB per-member cap) whose header declares the case's grid: an empty
      mask followed by ~950 MB more in the same gzip stream.

Each is scored by ``evaluator.scoring.score_submission`` in a fresh process whose
``PYTHONPATH`` is ``--tree`` (default: this checkout; pass a ``git worktree`` of an
older commit to measure it), killed after ``--timeout`` seconds. Reported per bomb:
wall time of the scoring call, the process's peak RSS (``ru_maxrss`` from wait4) and
the outcome. Results go to ``benchmarks/results/bombs.json`` (or ``--output``).
Also prints the compression ratios real masks reach at gzip levels 1, 6 and 9.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from tests.builders import write_nifti
from tests.hostile import nifti_header_bytes, tar_gz_bomb, zip_bomb

CT = (512, 512, 300)
PID = "CASE-001"

CHILD = r"""
import json, sys, time
from pathlib import Path
from evaluator.errors import SubmissionRejected
from evaluator.io.prepared import load_prepared_task1
from evaluator.scoring import score_submission
gt = load_prepared_task1(Path(sys.argv[1]))
t = time.perf_counter()
try:
    doc = score_submission(1, gt, Path(sys.argv[2]))
    outcome = doc["status"]
except SubmissionRejected as e:
    outcome = "rejected: " + e.problems[0].message[:160]
print(json.dumps({"seconds": time.perf_counter() - t, "outcome": outcome}))
"""


def stored_nii_gz_member(path: Path, total: int = (1 << 30) - (1 << 20)) -> None:
    """A zip (deflate level 1) whose member is a .nii.gz of ``total`` bytes made of
    stored deflate blocks: a NIfTI header declaring CT, then zeros."""
    header = nifti_header_bytes(CT)
    block = bytes(65535)
    info = zipfile.ZipInfo(f"{PID}.nii.gz")
    info.compress_type = zipfile.ZIP_DEFLATED
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
        zf.open(info, "w", force_zip64=True) as out,
    ):
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
        crc = zlib.crc32(header)
        out.write(b"\x00" + struct.pack("<HH", len(header), len(header) ^ 0xFFFF) + header)
        n = (total - len(header)) // len(block)
        for i in range(n):
            final = b"\x01" if i == n - 1 else b"\x00"
            out.write(final + struct.pack("<HH", len(block), len(block) ^ 0xFFFF) + block)
            crc = zlib.crc32(block, crc)
        size = len(header) + n * len(block)
        out.write(struct.pack("<II", crc, size & 0xFFFFFFFF))


def build(root: Path) -> dict[str, Path]:
    gt_dir = root / "gt"
    write_nifti(gt_dir / f"{PID}.nii.gz", np.zeros(CT, np.uint8), np.eye(4))
    from evaluator.scoring import load_ground_truth

    load_ground_truth(1, gt_dir, cache_dir=root / "prepared")
    bombs = {
        "valid": root / "valid.zip",
        "zip": root / "bomb.zip",
        "tar.gz": root / "bomb.tar.gz",
        "member": root / "m.zip",
    }
    empty = gzip.compress(nifti_header_bytes(CT) + bytes(CT[0] * CT[1] * CT[2]), 6, mtime=0)
    with zipfile.ZipFile(bombs["valid"], "w") as zf:
        zf.writestr(f"{PID}.nii.gz", empty)
    names = [f"{PID}-{i}.nii" for i in range(8)]
    bombs["zip"].write_bytes(zip_bomb(names))
    bombs["tar.gz"].write_bytes(tar_gz_bomb(names))
    stored_nii_gz_member(bombs["member"])
    return bombs


def run(tree: Path, prepared: Path, bomb: Path, timeout: float, tmp: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree), "TMPDIR": str(tmp)}
    t = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(prepared), str(bomb)],
        env=env,
        cwd=tree,  # ``-c`` puts the working folder first on sys.path
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    killed = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - t > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    wall = time.monotonic() - t
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    res: dict[str, Any] = {
        "peak_rss_MB": round(usage.ru_maxrss / 1024),
        "process_s": round(wall, 2),
    }
    if killed:
        res.update(seconds=None, outcome=f"killed after {timeout:g} s")
    elif out.strip():
        doc = json.loads(out.strip().splitlines()[-1])
        res.update(seconds=round(doc["seconds"], 3), outcome=doc["outcome"])
    else:
        res.update(seconds=None, outcome=f"exit {os.waitstatus_to_exitcode(status)}: {err[-300:]}")
    return res


def ratios() -> dict[str, dict[str, float]]:
    from tests.builders import nifti_bytes

    rng = np.random.default_rng(0)
    empty = np.zeros(CT, np.uint8)
    lesion = empty.copy()
    zz, yy, xx = np.ogrid[:40, :40, :30]
    ball = ((zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 15) ** 2 * 4) < 18**2
    lesion[200:240, 240:280, 130:160][ball] = 1
    nodes = lesion.copy()
    for _ in range(4):
        x, y, z = rng.integers(100, 400), rng.integers(100, 400), rng.integers(50, 250)
        nodes[x : x + 12, y : y + 10, z : z + 6] = 2
    out: dict[str, dict[str, float]] = {}
    for name, arr in (("empty", empty), ("one GTVp", lesion), ("GTVp + 4 GTVn", nodes)):
        raw = nifti_bytes(arr, np.eye(4), level=None)
        out[name] = {
            f"gzip {lvl}": round(len(raw) / len(gzip.compress(raw, lvl, mtime=0)), 1)
            for lvl in (1, 6, 9)
        }
    return out


def synth_ratios(root: Path) -> dict[str, dict[str, float]]:
    """The same ratios for the synthetic generator's CT-size masks: two cases' ground
    truth and the "good" team's predictions of them."""
    from evaluator.synth import generate_challenge

    generate_challenge(root / "synth", seed=0, n_cases=2, teams=("good",))
    masks: dict[str, bytes] = {}
    for f in sorted((root / "synth").rglob("*.nii.gz")):
        if "_" not in f.name:  # label maps, not the _CT / __PT images
            masks[f"truth {f.name}"] = gzip.decompress(f.read_bytes())
    for z in (root / "synth").rglob("task1.zip"):
        with zipfile.ZipFile(z) as zf:
            for n in zf.namelist():
                if n.endswith(".nii.gz"):
                    masks[f"good {n.rsplit('/', 1)[-1]}"] = gzip.decompress(zf.read(n))
    return {
        name: {
            f"gzip {lvl}": round(len(raw) / len(gzip.compress(raw, lvl, mtime=0)), 1)
            for lvl in (1, 6, 9)
        }
        for name, raw in masks.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--only", default="valid,zip,tar.gz,member")
    ap.add_argument("--output", type=Path, default=None)
    ap.add_argument("--ratios", action="store_true", help="also measure real masks' ratios")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bombs-") as tmp:
        root = Path(tmp)
        bombs = build(root)
        work = root / "tmp"
        work.mkdir()
        results: dict[str, Any] = {"tree": str(args.tree), "bombs": {}}
        for key in args.only.split(","):
            res = run(args.tree, root / "prepared", bombs[key], args.timeout, work)
            res["archive_MB"] = round(bombs[key].stat().st_size / 1e6, 2)
            results["bombs"][key] = res
            print(key, json.dumps(res), flush=True)
        if args.ratios:
            results["ratios"] = ratios()
            results["synth_ratios"] = synth_ratios(root)
            print(json.dumps({"ratios": results["ratios"], "synth": results["synth_ratios"]}))
    out = args.output or Path(__file__).parent / "results" / "bombs.json"
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
