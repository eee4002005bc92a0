"""Writing label maps: deterministic .nii.gz bytes (gzip mtime 0) and zip members."""

from __future__ import annotations

import io
import zipfile
import zlib
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.fileholders import FileHolder
from numpy.typing import NDArray

from evaluator.synth.cohort import Grid
from evaluator.synth.team_presets import Codec

ZIP_DATE_TIME = (2025, 1, 1, 0, 0, 0)


class _GzipSink(io.RawIOBase):
    """A write-only file object that gzips what nibabel writes, slice by slice, with
    mtime 0 (no copy of the whole volume)."""

    def __init__(self, codec: Codec, level: int) -> None:
        super().__init__()
        if codec == "zlib-ng":
            from zlib_ng import zlib_ng

            self._c: Any = zlib_ng.compressobj(level, zlib_ng.DEFLATED, 31)
        else:
            self._c = zlib.compressobj(level, zlib.DEFLATED, 31)
        self._parts: list[bytes] = []
        self._n = 0

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True  # nibabel's opener wants the attribute; reading is refused below

    def read(self, size: int = -1) -> bytes:
        raise io.UnsupportedOperation("write-only")

    def write(self, b: Any) -> int:
        n = memoryview(b).nbytes
        self._n += n
        out = self._c.compress(b)
        if out:
            self._parts.append(out)
        return n

    def tell(self) -> int:
        return self._n

    def seekable(self) -> bool:
        return False

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 0 and pos == self._n:
            return pos
        raise io.UnsupportedOperation("not seekable")

    def getvalue(self) -> bytes:
        self._parts.append(self._c.flush())
        return b"".join(self._parts)


# nibabel's methods carry no type hints: each call below is marked for mypy --strict.
def label_image(vol: NDArray[np.uint8], grid: Grid) -> nib.Nifti1Image:
    """A uint8 NIfTI-1 image of ``vol`` on ``grid``, qform and sform set (code 1), in mm."""
    img = nib.Nifti1Image(vol, grid.affine)  # type: ignore[no-untyped-call, unused-ignore]
    hdr = img.header
    hdr.set_data_dtype(np.uint8)  # type: ignore[no-untyped-call, unused-ignore]
    hdr.set_xyzt_units("mm", "sec")  # type: ignore[no-untyped-call, unused-ignore]
    img.set_qform(grid.affine, code=1)  # type: ignore[no-untyped-call, unused-ignore]
    img.set_sform(grid.affine, code=1)  # type: ignore[no-untyped-call, unused-ignore]
    return img


def nifti_gz_bytes(img: nib.Nifti1Image, *, codec: Codec = "zlib", level: int = 1) -> bytes:
    """``img`` as .nii.gz bytes with gzip mtime 0 (deterministic), streamed."""
    sink = _GzipSink(codec, level)
    img.to_file_map({"image": FileHolder(fileobj=sink)})  # type: ignore[no-untyped-call, unused-ignore]
    return sink.getvalue()


def zip_member(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
    info.compress_type = zipfile.ZIP_STORED  # .nii.gz is compressed already
    info.external_attr = 0o644 << 16
    info.create_system = 3
    zf.writestr(info, data)
