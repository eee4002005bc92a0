"""The organizer's Task 1 ground truth (docs/scoring.md section 1).

Layouts accepted under the task folder::

    <PatientID>/<PatientID>.nii.gz      nested, as released (images beside it ignored)
    <PatientID>.nii.gz                  flat

A label map may be a NIfTI (``.nii.gz``, ``.nii``) or a MetaImage (``.mha``, or a
``.mhd`` with its data file beside it, hashed and copied with it).

Image files (``<PatientID>_CT``, ``__PT``, ``_CTPlanning``, ``_RTDOSE`` ...) are ignored.
Every label map is read once and validated (readable, 3-D, labels 0/1/2); per case we
record shape, affine, voxel volume, foreground bounding box and a SHA-256 of the
file. The whole ground truth gets one SHA-256 over the sorted per-case hashes.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

from evaluator.boxes import Bbox, crop
from evaluator.errors import GroundTruthError, SubmissionError
from evaluator.io.hashing import combine_hashes, sha256_file
from evaluator.io.members import open_data_file
from evaluator.io.mha_header import MAX_HEADER
from evaluator.io.nifti import LabelMap, read_label_map
from evaluator.io.nifti_header import ImageHeader
from evaluator.patients import case_center
from evaluator.protocol import HECKTOR2025, Limits, Protocol

_IMAGE_SUFFIX = re.compile(r"_{1,2}(CT|PT|PET|CTPlanning|CTplanning|RTDOSE|RTDose|dose)$", re.I)
LABEL_EXTS = (".nii.gz", ".nii", ".mha", ".mhd")


def strip_label_ext(name: str) -> str | None:
    """The PatientID of a label file's name (``CHUM-001.nii.gz``, ``CHUM-001.mha``),
    or None for another file."""
    for ext in LABEL_EXTS:
        if name.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return None


@dataclass(frozen=True)
class GtCase:
    patient_id: str
    center: str
    path: Path
    header: ImageHeader
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
            arr: npt.NDArray[np.uint8] = np.load(io.BytesIO(data), allow_pickle=False)
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
                entry / f"{pid}{ext}" for ext in LABEL_EXTS if (entry / f"{pid}{ext}").is_file()
            ]
            if hits:
                found.setdefault(pid, []).extend(hits)
            else:
                ignored.append(f"{entry.name}/ (no {pid}.nii.gz or {pid}.mha inside)")
        elif entry.is_file():
            stem = strip_label_ext(entry.name)
            if stem is None or _IMAGE_SUFFIX.search(stem):
                ignored.append(entry.name)
                continue
            found.setdefault(stem, []).append(entry)
    return found, ignored


class _ReadOnce:
    """A label file read once: what is read is hashed and, with ``copy_to``, written to
    a copy as well (kept by :meth:`commit`). A .mhd's data file is read the same way
    (:meth:`open_sibling`) and counted in the hash."""

    def __init__(self, path: Path, copy_to: Path | None, file: IO[bytes] | None = None) -> None:
        self.path = path
        self.file = file if file is not None else open(path, "rb")  # noqa: SIM115
        self.stat = os.fstat(self.file.fileno())
        self.copy_to = copy_to
        self.copy: IO[bytes] | None = None
        self.siblings: list[_ReadOnce] = []
        self.hash = hashlib.sha256()
        if copy_to is not None:
            try:
                copy_to.parent.mkdir(parents=True, exist_ok=True)
                self.copy = open(copy_to.with_name(f".{copy_to.name}.tmp"), "wb")  # noqa: SIM115
            except OSError:
                self.file.close()
                raise

    def read(self, n: int = -1, /) -> bytes:
        data = self.file.read(n)
        self.hash.update(data)
        if self.copy is not None:
            self.copy.write(data)
        return data

    def open_sibling(self, name: str) -> _ReadOnce:
        """The data file ``name`` beside this .mhd, read (and copied) the same way."""
        f = open_data_file(self.path.parent, name, str(self.path))
        copy_to = None if self.copy_to is None else self.copy_to.with_name(name)
        sibling = _ReadOnce(self.path.parent / name, copy_to, f)
        self.siblings.append(sibling)
        return sibling

    def finish(self) -> str:
        """Read what the decoder left (the files are hashed and copied whole); the
        hash: the file's, or with a data file one hash over both."""
        while self.read(1 << 20):
            pass
        own = self.hash.hexdigest()
        if not self.siblings:
            return own
        parts = [(self.path.name, own)] + [(s.path.name, s.finish()) for s in self.siblings]
        return combine_hashes(parts)

    def changed(self) -> bool:
        """Whether a file read was written to since it was opened."""
        now = self.path.stat()
        mine = (now.st_size, now.st_mtime_ns) != (self.stat.st_size, self.stat.st_mtime_ns)
        return mine or any(s.changed() for s in self.siblings)

    def commit(self) -> None:
        """Keep the copies (durably, under their final names)."""
        for s in self.siblings:
            s.commit()
        if self.copy is not None and self.copy_to is not None:
            self.copy.flush()
            os.fsync(self.copy.fileno())
            self.copy.close()
            Path(self.copy.name).replace(self.copy_to)

    def release(self) -> None:
        """Close every file (the reader never closes them: they are read to their end
        by :meth:`finish`); copies not committed are removed."""
        for s in self.siblings:
            s.release()
        self.file.close()
        if self.copy is not None and not self.copy.closed:
            self.copy.close()
            Path(self.copy.name).unlink(missing_ok=True)


def _decode(
    pid: str, path: Path, max_voxels: int, copy_to: Path | None
) -> tuple[LabelMap, str, bool] | str:
    """The label map of ``path`` (a problem text if it is invalid), its SHA-256 and
    whether the file changed while it was read; with ``copy_to``, the bytes read are
    copied there in the same pass."""
    try:
        source = _ReadOnce(path, copy_to)
    except OSError as exc:
        return f"{pid}: the file cannot be read ({exc.strerror})"
    try:
        try:
            lm = read_label_map(source, max_voxels=max_voxels, name=str(path))
        except SubmissionError as exc:
            return f"{pid}: {exc.message}"
        sha = source.finish()
        changed = source.changed()
        source.commit()
        return lm, sha, changed
    finally:
        source.release()


def _read_case(
    pid: str, path: Path, max_voxels: int, cache_dir: Path | None, copy_to: Path | None
) -> tuple[GtCase, bool] | str:
    decoded = _decode(pid, path, max_voxels, copy_to)
    if isinstance(decoded, str):
        return decoded
    lm, sha, changed = decoded
    crop_path = crop_sha = None
    if cache_dir is not None and lm.bbox is not None:
        buf = io.BytesIO()
        np.save(buf, np.asfortranarray(crop(lm.array, lm.bbox)))
        crop_path = cache_dir / f"{pid}.npy"
        atomic_write(crop_path, buf.getvalue())
        crop_sha = hashlib.sha256(buf.getvalue()).hexdigest()
    center = case_center({"patient_id": pid})
    case = GtCase(pid, center, copy_to or path, lm.header, lm.bbox, sha, crop_path, crop_sha)
    return case, changed


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def label_file_sha256(path: Path) -> str:
    """A label file's hash as :func:`read_cases` records it: a .mhd's covers its data
    file too (named by its ElementDataFile line)."""
    if not path.name.lower().endswith(".mhd"):
        return sha256_file(path)
    with open(path, "rb") as f:
        head = f.read(MAX_HEADER)
    m = re.search(rb"(?m)^[ \t]*ElementDataFile[ \t]*=[ \t]*(\S+)", head)
    data = m.group(1).decode("ascii", "replace") if m else "LOCAL"
    own = sha256_file(path)
    if data.upper() == "LOCAL" or not (path.parent / data).is_file():
        return own
    return combine_hashes([(path.name, own), (data, sha256_file(path.parent / data))])


def label_files(root: Path) -> tuple[dict[str, Path], list[str]]:
    """Each case's one label file under the Task 1 folder, and the ignored names;
    raises GroundTruthError listing every problem of the layout."""
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
            "<PatientID>.nii.gz; .mha and .mhd are read too)"
        )
    if problems:
        raise GroundTruthError(problems)
    return {pid: found[pid][0] for pid in sorted(found)}, ignored


def read_cases(
    files: Mapping[str, Path],
    *,
    limits: Limits,
    threads: int,
    progress: Callable[[int, int], None] | None,
    cache_dir: Path | None,
    copy_root: Path | None,
) -> tuple[dict[str, GtCase], set[str]]:
    """Every case read (in ``threads`` threads), and the ids whose file changed while
    it was read; raises GroundTruthError listing every invalid case."""
    problems: list[str] = []
    cases: dict[str, GtCase] = {}
    changed: set[str] = set()
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)

    def read(pid: str) -> tuple[GtCase, bool] | str:
        copy_to = None if copy_root is None else copy_root / pid / files[pid].name
        return _read_case(pid, files[pid], limits.max_voxels, cache_dir, copy_to)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for n, (pid, res) in enumerate(zip(files, pool.map(read, files), strict=True), 1):
            if isinstance(res, str):
                problems.append(res)
            else:
                cases[pid] = res[0]
                if res[1]:
                    changed.add(pid)
            if progress:
                progress(n, len(files))
    if problems:
        raise GroundTruthError(problems)
    return cases, changed


def read_task1_ground_truth(
    root: Path,
    *,
    protocol: Protocol = HECKTOR2025,
    limits: Limits | None = None,
    threads: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> Task1GroundTruth:
    """Read and validate the Task 1 folder; raises GroundTruthError listing every problem."""
    del protocol  # the layout does not depend on scoring switches
    root = Path(root)
    files, ignored = label_files(root)
    cases, _ = read_cases(
        files,
        limits=limits or Limits(),
        threads=threads,
        progress=progress,
        cache_dir=None,
        copy_root=None,
    )
    sha = combine_hashes((pid, c.sha256) for pid, c in cases.items())
    return Task1GroundTruth(root, cases, sha, tuple(ignored))
