"""The prepared form of a Task 1 ground truth: each case's foreground crop as ``.npy``
beside a manifest of the cases' headers, boxes and hashes, so that scoring decodes only
the predictions. Written while the organizer's label files are read (and copied) once;
read back without decoding any image.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from evaluator.errors import GroundTruthChanged
from evaluator.io.hashing import combine_hashes
from evaluator.io.nifti_header import Compression, ImageHeader
from evaluator.io.task1_truth import (
    GtCase,
    Task1GroundTruth,
    atomic_write,
    label_file_sha256,
    label_files,
    read_cases,
)
from evaluator.protocol import Limits

__all__ = [
    "MANIFEST",
    "load_prepared_task1",
    "prepare_task1",
    "prepared_path",
    "read_and_prepare_task1",
]

MANIFEST = "manifest.json"


def prepared_path(task_dir: Path) -> Path:
    """Where the prepared form of the Task 1 ground truth copied to ``task_dir`` lives."""
    return task_dir.parent / f"{task_dir.name}.prepared"


def prepare_task1(
    source: Path, dest: Path, *, limits: Limits | None = None, threads: int = 2
) -> Task1GroundTruth:
    """Validate the Task 1 folder ``source``, copy its label files to
    ``dest/<PatientID>/<file name>`` and write the prepared form (foreground crops and
    manifest) to :func:`prepared_path` of ``dest``, reading each source file once.

    Raises GroundTruthError listing every problem, and GroundTruthChanged when a source
    file was written to while it was read and no longer hashes as its copy does.
    """
    source, dest = Path(source), Path(dest)
    files, ignored = label_files(source)
    cache_dir = prepared_path(dest)
    cases, changed = read_cases(
        files,
        limits=limits or Limits(),
        threads=threads,
        progress=None,
        cache_dir=cache_dir,
        copy_root=dest,
    )
    sha = combine_hashes((pid, c.sha256) for pid, c in cases.items())
    if changed:
        now = {
            pid: label_file_sha256(files[pid]) if pid in changed else c.sha256
            for pid, c in cases.items()
        }
        source_sha = combine_hashes(now.items())
        if source_sha != sha:
            raise GroundTruthChanged(copy_sha256=sha, source_sha256=source_sha)
    gt = Task1GroundTruth(dest, cases, sha, tuple(ignored))
    atomic_write(cache_dir / MANIFEST, json.dumps(_manifest(gt, cache_dir)).encode())
    return gt


def _manifest(gt: Task1GroundTruth, cache_dir: Path) -> dict[str, object]:
    def header(h: ImageHeader) -> dict[str, object]:
        return {
            "shape": list(h.shape),
            "affine": h.affine.tolist(),
            "zooms": list(h.zooms),
            "dtype": h.dtype.str,
            "data_offset": h.data_offset,
            "slope": h.slope,
            "inter": h.inter,
            "compression": h.compression,
            "compressed_size": h.compressed_size,
            "data_file": h.data_file,
        }

    return {
        "format": 1,
        "sha256": gt.sha256,
        "root": str(gt.root),
        "cases": [
            {
                "patient_id": c.patient_id,
                "center": c.center,
                "path": str(c.path),
                "header": header(c.header),
                "bbox": None if c.bbox is None else [list(b) for b in c.bbox],
                "sha256": c.sha256,
                "crop": None if c.crop_path is None else c.crop_path.name,
                "crop_sha256": c.crop_sha256,
            }
            for c in gt.cases.values()
        ],
    }


def load_prepared_task1(cache_dir: Path) -> Task1GroundTruth:
    """The Task 1 ground truth from its prepared form (written by
    :func:`prepare_task1` or :func:`read_and_prepare_task1`) without decoding any image.

    The manifest's overall hash is recomputed from its per-case hashes; each crop is
    checked against its own hash when it is loaded.
    """
    data = json.loads((cache_dir / MANIFEST).read_text(encoding="utf-8"))
    if data.get("format") != 1:
        raise ValueError(f"{cache_dir / MANIFEST}: unknown prepared ground-truth format")
    cases: dict[str, GtCase] = {}
    for c in data["cases"]:
        header = _header(c["header"])
        b = c["bbox"]
        bbox = None if b is None else ((b[0][0], b[0][1]), (b[1][0], b[1][1]), (b[2][0], b[2][1]))
        cases[c["patient_id"]] = GtCase(
            c["patient_id"],
            c["center"],
            Path(c["path"]),
            header,
            bbox,
            c["sha256"],
            None if c["crop"] is None else cache_dir / c["crop"],
            c["crop_sha256"],
        )
    sha = combine_hashes((pid, c.sha256) for pid, c in cases.items())
    if sha != data["sha256"]:
        raise ValueError(f"{cache_dir / MANIFEST}: the case hashes do not match the recorded hash")
    return Task1GroundTruth(Path(data["root"]), cases, sha)


def _header(h: dict[str, Any]) -> ImageHeader:
    """A case's header from the manifest (also as manifests written before MetaImage
    was read recorded it: ``vox_offset`` and ``gzipped``)."""
    old: Compression = "gzip" if h.get("gzipped") else "none"
    compression: Compression = h.get("compression", old)
    return ImageHeader(
        shape=(int(h["shape"][0]), int(h["shape"][1]), int(h["shape"][2])),
        affine=np.asarray(h["affine"], dtype=np.float64),
        zooms=(float(h["zooms"][0]), float(h["zooms"][1]), float(h["zooms"][2])),
        dtype=np.dtype(h["dtype"]),
        data_offset=int(h.get("data_offset", h.get("vox_offset", 0))),
        slope=h["slope"],
        inter=h["inter"],
        compression=compression,
        compressed_size=h.get("compressed_size"),
        data_file=h.get("data_file"),
    )


def read_and_prepare_task1(
    root: Path,
    cache_dir: Path,
    *,
    limits: Limits | None = None,
    threads: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> Task1GroundTruth:
    """:func:`evaluator.io.task1_truth.read_task1_ground_truth`, writing the prepared
    form of the folder ``root`` to ``cache_dir`` as each case is read."""
    root = Path(root)
    files, ignored = label_files(root)
    cases, _ = read_cases(
        files,
        limits=limits or Limits(),
        threads=threads,
        progress=progress,
        cache_dir=cache_dir,
        copy_root=None,
    )
    gt = Task1GroundTruth(
        root, cases, combine_hashes((p, c.sha256) for p, c in cases.items()), tuple(ignored)
    )
    atomic_write(cache_dir / MANIFEST, json.dumps(_manifest(gt, cache_dir)).encode())
    return gt
