"""The organizer's Task 1 ground truth (SPEC section 1).

Layouts accepted under the task folder::

    <PatientID>/<PatientID>.nii.gz      nested, as released (images beside it ignored)
    <PatientID>.nii.gz                  flat

Image files (``<PatientID>_CT``, ``__PT``, ``_CTPlanning``, ``_RTDOSE`` ...) are ignored.
Every label map is read once and validated (readable, 3-D, labels 0/1/2); per case we
record shape, affine, voxel volume, foreground bounding box and a SHA-256 of the
file. The whole ground truth gets one SHA-256 over the sorted per-case hashes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from evaluator.errors import GroundTruthError, SubmissionError
from evaluator.io.nifti import Bbox, NiftiHeader, crop, read_label_map
from evaluator.protocol import HECKTOR2025, Limits, Protocol
from evaluator.results import combine_hashes, sha256_file

_IMAGE_SUFFIX = re.compile(r"_{1,2}(CT|PT|PET|CTPlanning|CTplanning|RTDOSE|RTDose|dose)$", re.I)
NIFTI_EXTS = (".nii.gz", ".nii")


def strip_nifti_ext(name: str) -> str | None:
    for ext in NIFTI_EXTS:
        if name.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return None


def center_of(patient_id: str) -> str:
    """The centre is the PatientID prefix before the first '-' (CHUM-001 -> CHUM)."""
    return patient_id.split("-", 1)[0] if "-" in patient_id else patient_id


@dataclass(frozen=True)
class GtCase:
    patient_id: str
    center: str
    path: Path
    header: NiftiHeader
    bbox: Bbox | None
    sha256: str
    crop_path: Path | None = None  # prepared form: the foreground crop as .npy
    crop_sha256: str | None = None

    def load_crop(self, *, max_voxels: int) -> npt.NDArray[np.uint8] | None:
        """The label map cropped to ``bbox`` (None when empty), from the prepared
        cache when there is one, else decoded from the NIfTI file."""
        if self.bbox is None:
            return None
        if self.crop_path is not None:
            data = self.crop_path.read_bytes()
            if self.crop_sha256 and hashlib.sha256(data).hexdigest() != self.crop_sha256:
                raise ValueError(f"prepared ground truth {self.crop_path} was changed on disk")
            arr = np.load(io.BytesIO(data), allow_pickle=False)
            expected = tuple(b - a for a, b in self.bbox)
            if arr.shape != expected or arr.dtype != np.uint8:
                raise ValueError(f"prepared ground truth {self.crop_path} is inconsistent")
            return arr
        lm = read_label_map(self.path, max_voxels=max_voxels, name=str(self.path))
        return crop(lm.array, self.bbox)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.header.shape

    @property
    def voxel_volume_mm3(self) -> float:
        return self.header.voxel_volume_mm3


@dataclass(frozen=True)
class Task1GroundTruth:
    root: Path
    cases: Mapping[str, GtCase]
    sha256: str
    ignored: tuple[str, ...] = field(default=())

    @property
    def case_ids(self) -> tuple[str, ...]:
        return tuple(self.cases)

    def subset(self, ids: list[str]) -> Task1GroundTruth:
        keep = {i: self.cases[i] for i in ids}
        return Task1GroundTruth(
            self.root, keep, combine_hashes((i, c.sha256) for i, c in keep.items())
        )


def discover_label_files(root: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """Map PatientID -> candidate label files; and the names of ignored files."""
    found: dict[str, list[Path]] = {}
    ignored: list[str] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            pid = entry.name
            hits = [
                entry / f"{pid}{ext}" for ext in NIFTI_EXTS if (entry / f"{pid}{ext}").is_file()
            ]
            if hits:
                found.setdefault(pid, []).extend(hits)
            else:
                ignored.append(f"{entry.name}/ (no {pid}.nii.gz inside)")
        elif entry.is_file():
            stem = strip_nifti_ext(entry.name)
            if stem is None or _IMAGE_SUFFIX.search(stem):
                ignored.append(entry.name)
                continue
            found.setdefault(stem, []).append(entry)
    return found, ignored


def _read_case(pid: str, path: Path, max_voxels: int, cache_dir: Path | None) -> GtCase | str:
    try:
        lm = read_label_map(path, max_voxels=max_voxels, name=str(path))
    except SubmissionError as exc:
        return f"{pid}: {exc.message}"
    crop_path = crop_sha = None
    if cache_dir is not None and lm.bbox is not None:
        buf = io.BytesIO()
        np.save(buf, np.asfortranarray(crop(lm.array, lm.bbox)))
        crop_path = cache_dir / f"{pid}.npy"
        _atomic_write(crop_path, buf.getvalue())
        crop_sha = hashlib.sha256(buf.getvalue()).hexdigest()
    return GtCase(
        pid, center_of(pid), path, lm.header, lm.bbox, sha256_file(path), crop_path, crop_sha
    )


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def read_task1_ground_truth(
    root: Path,
    *,
    protocol: Protocol = HECKTOR2025,
    limits: Limits | None = None,
    threads: int = 2,
    progress: Callable[[int, int], None] | None = None,
    cache_dir: Path | None = None,
) -> Task1GroundTruth:
    """Read and validate the Task 1 folder; raises GroundTruthError listing every problem.

    With ``cache_dir``, each case's foreground crop is also written there as ``.npy``
    (the prepared form: scoring then decodes only the prediction).
    """
    del protocol  # the layout does not depend on scoring switches
    limits = limits or Limits()
    root = Path(root)
    if not root.is_dir():
        raise GroundTruthError([f"{root}: not a folder (expected the 'Task 1' folder)"])
    found, ignored = discover_label_files(root)
    problems: list[str] = []
    for pid, paths in found.items():
        if len(paths) > 1:
            problems.append(
                f"{pid}: several label files ({', '.join(str(p) for p in paths)}); keep one"
            )
    if not found:
        problems.append(
            f"{root}: no label map found (expected <PatientID>/<PatientID>.nii.gz or "
            "<PatientID>.nii.gz)"
        )
    if problems:
        raise GroundTruthError(problems)
    ids = sorted(found)
    cases: dict[str, GtCase] = {}
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
        results = pool.map(
            lambda pid: _read_case(pid, found[pid][0], limits.max_voxels, cache_dir), ids
        )
        for n, (pid, res) in enumerate(zip(ids, results, strict=True), 1):
            if isinstance(res, str):
                problems.append(res)
            else:
                cases[pid] = res
            if progress:
                progress(n, len(ids))
    if problems:
        raise GroundTruthError(problems)
    sha = combine_hashes((pid, c.sha256) for pid, c in cases.items())
    gt = Task1GroundTruth(root, cases, sha, tuple(ignored))
    if cache_dir is not None:
        _atomic_write(cache_dir / MANIFEST, json.dumps(_manifest(gt, cache_dir)).encode())
    return gt


MANIFEST = "manifest.json"


def _manifest(gt: Task1GroundTruth, cache_dir: Path) -> dict[str, object]:
    def header(h: NiftiHeader) -> dict[str, object]:
        return {
            "shape": list(h.shape),
            "affine": h.affine.tolist(),
            "zooms": list(h.zooms),
            "dtype": h.dtype.str,
            "vox_offset": h.vox_offset,
            "slope": h.slope,
            "inter": h.inter,
            "gzipped": h.gzipped,
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
    ``read_task1_ground_truth(..., cache_dir=...)``) without decoding any image.

    The manifest's overall hash is recomputed from its per-case hashes; each crop is
    checked against its own hash when it is loaded.
    """
    data = json.loads((cache_dir / MANIFEST).read_text(encoding="utf-8"))
    if data.get("format") != 1:
        raise ValueError(f"{cache_dir / MANIFEST}: unknown prepared ground-truth format")
    cases: dict[str, GtCase] = {}
    for c in data["cases"]:
        h = c["header"]
        header = NiftiHeader(
            shape=(int(h["shape"][0]), int(h["shape"][1]), int(h["shape"][2])),
            affine=np.asarray(h["affine"], dtype=np.float64),
            zooms=(float(h["zooms"][0]), float(h["zooms"][1]), float(h["zooms"][2])),
            dtype=np.dtype(h["dtype"]),
            vox_offset=int(h["vox_offset"]),
            slope=h["slope"],
            inter=h["inter"],
            gzipped=bool(h["gzipped"]),
        )
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
