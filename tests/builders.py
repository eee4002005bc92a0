"""Tiny builders for NIfTI files, ground-truth folders and archives used by tests."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np


def affine_for(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = origin
    return a


def nifti_bytes(
    arr: np.ndarray,
    affine: np.ndarray | None = None,
    *,
    dtype=None,
    level: int | None = 1,
    slope: float | None = None,
    inter: float | None = None,
    nifti2: bool = False,
) -> bytes:
    cls = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    img = cls(np.asarray(arr), affine_for() if affine is None else affine)
    img.header.set_data_dtype(dtype or np.asarray(arr).dtype)
    if slope is not None:
        img.header.set_slope_inter(slope, inter or 0.0)
    raw = img.to_bytes()
    if slope is not None:
        # to_bytes() writes the scaled on-disk values and resets slope; write raw bytes ourselves
        hdr = img.header.copy()
        hdr.set_slope_inter(slope, inter or 0.0)
        bio = io.BytesIO()
        hdr.write_to(bio)
        pad = int(hdr.get_data_offset()) - bio.tell()
        bio.write(b"\0" * pad)
        bio.write(np.asarray(arr, dtype=hdr.get_data_dtype()).tobytes(order="F"))
        raw = bio.getvalue()
    return raw if level is None else gzip.compress(raw, compresslevel=level, mtime=0)


def write_nifti(path: Path, arr: np.ndarray, affine: np.ndarray | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    level = kw.pop("level", 1)
    if path.name.endswith(".nii") and "level" not in kw:
        level = None
    path.write_bytes(nifti_bytes(arr, affine, level=level, **kw))
    return path


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, files: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def label_volume(shape, boxes) -> np.ndarray:
    """boxes: list of (label, (x0,x1,y0,y1,z0,z1))."""
    arr = np.zeros(shape, dtype=np.uint8)
    for label, (x0, x1, y0, y1, z0, z1) in boxes:
        arr[x0:x1, y0:y1, z0:z1] = label
    return arr
