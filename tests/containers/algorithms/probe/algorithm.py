"""Test algorithm: reports the isolation it runs under, as seen from inside, as JSON on
stdout and in /output/probe.json."""

from __future__ import annotations

import json
import os
from pathlib import Path


def writable(folder: str) -> str:
    try:
        with open(os.path.join(folder, ".probe"), "w") as fh:
            fh.write("x")
        os.unlink(os.path.join(folder, ".probe"))
        return "writable"
    except OSError as exc:
        return exc.strerror or str(exc)


def first(*paths: str) -> str | None:
    for p in paths:
        try:
            return Path(p).read_text().strip()
        except OSError:
            continue
    return None


status = dict(
    line.split(":\t", 1)
    for line in Path("/proc/self/status").read_text().splitlines()
    if ":\t" in line
)
tmp = os.statvfs("/tmp")
model = Path("/opt/ml/model")
report = {
    "uid": os.getuid(),
    "gid": os.getgid(),
    "cap_eff": status.get("CapEff", "").strip(),
    "no_new_privs": status.get("NoNewPrivs", "").strip(),
    "root": writable("/"),
    "input": writable("/input"),
    "tmp": writable("/tmp"),
    "output": writable("/output"),
    "model": writable("/opt/ml/model") if model.exists() else None,
    "model_files": sorted(p.name for p in model.iterdir()) if model.exists() else None,
    "tmp_bytes": tmp.f_blocks * tmp.f_frsize,
    "memory_limit": first(
        "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"
    ),
    "pids_max": first("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"),
    "cpu_quota": first("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu.max"),
    "interfaces": sorted(os.listdir("/sys/class/net")),
    "home": os.environ.get("HOME"),
}
print(json.dumps(report))
Path("/output/probe.json").write_text(json.dumps(report))
