"""Builders of hostile uploads: archives with lying headers, links, devices and bombs;
NIfTI files with bad headers and values; malformed prediction tables.

Everything is built in memory from small pieces. ``raw_zip`` writes the ZIP format by
hand so that a test can state any header field (sizes, mode bits, flags, raw name
bytes), which :mod:`zipfile` refuses to do.
"""

from __future__ import annotations

import bz2
import gzip
import io
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

GIB = 1 << 30


# -- ZIP, field by field ----------------------------------------------------------------
@dataclass(frozen=True)
class ZipEntry:
    name: str | bytes  # str: UTF-8 with the UTF-8 flag; bytes: written as they are
    data: bytes = b""  # the stored (compressed) bytes
    method: int = zipfile.ZIP_STORED
    crc: int | None = None  # default: CRC of ``data`` (right for stored entries)
    size: int | None = None  # declared uncompressed size; default len(data)
    mode: int = stat.S_IFREG | 0o644
    flags: int = 0


def raw_zip(entries: list[ZipEntry]) -> bytes:
    out = io.BytesIO()
    central = io.BytesIO()
    for e in entries:
        name = e.name.encode("utf-8") if isinstance(e.name, str) else e.name
        flags = e.flags | (0x800 if isinstance(e.name, str) else 0)
        crc = zlib.crc32(e.data) if e.crc is None else e.crc
        size = len(e.data) if e.size is None else e.size
        offset = out.tell()
        out.write(
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                20,
                flags,
                e.method,
                0,
                0x21,
                crc,
                len(e.data),
                size,
                len(name),
                0,
            )
        )
        out.write(name)
        out.write(e.data)
        central.write(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                (3 << 8) | 20,  # made by Unix, so that the mode bits count
                20,
                flags,
                e.method,
                0,
                0x21,
                crc,
                len(e.data),
                size,
                len(name),
                0,
                0,
                0,
                0,
                (e.mode & 0xFFFF) << 16,
                offset,
            )
        )
        central.write(name)
    cd = central.getvalue()
    start = out.tell()
    out.write(cd)
    out.write(
        struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(cd), start, 0)
    )
    return out.getvalue()


def make_zip(files: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return bio.getvalue()


def deflate_zeros(n_mib: int) -> tuple[bytes, int]:
    """Raw deflate data of ``n_mib`` MiB of zeros (about 1 KiB per MiB) and its CRC,
    made by repeating one independently decodable block (a full flush)."""
    zeros = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(n_mib):
        crc = zlib.crc32(zeros, crc)
    return block * n_mib + tail, crc


def bzip2_zeros(n_mib: int) -> bytes:
    return bz2.compress(bytes(n_mib << 20), 9)


# -- tar ---------------------------------------------------------------------------------
def tar_member(
    name: str,
    data: bytes = b"",
    *,
    kind: bytes = tarfile.REGTYPE,
    linkname: str = "",
    size: int | None = None,
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = len(data) if size is None else size
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3  # /dev/null
    return info, data


def make_tar(
    members: list[tuple[tarfile.TarInfo, bytes]],
    *,
    gz: bool = True,
    encoding: str = "utf-8",
) -> bytes:
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.GNU_FORMAT, encoding=encoding) as tf:
        for info, data in members:
            if info.isreg() and info.size == len(data):
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)  # headers only (links, devices, lying sizes)
    raw = bio.getvalue()
    return gzip.compress(raw, 6, mtime=0) if gz else raw


def forged_tar_member(name: str, declared: int, data: bytes) -> bytes:
    """A .tar.gz whose only member's header declares ``declared`` bytes, followed by
    ``data`` (far less): what a truncated or hostile tar looks like."""
    info = tarfile.TarInfo(name)
    info.size = declared
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    return gzip.compress(header + data, 6, mtime=0)


# -- NIfTI -------------------------------------------------------------------------------
def nifti_raw(
    arr: np.ndarray,
    affine: np.ndarray,
    *,
    dtype: object = None,
    slope: float | None = None,
    shape: tuple[int, ...] | None = None,
    magic: bytes | None = None,
    vox_offset: int | None = None,
) -> bytes:
    """Uncompressed NIfTI-1 bytes. ``shape`` overrides the header's dims (the data is
    what ``arr`` holds); ``slope`` is stored as scl_slope with the raw values of ``arr``."""
    arr = np.asarray(arr)
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(dtype or arr.dtype)
    hdr.set_data_shape(shape or arr.shape)
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    hdr.set_xyzt_units("mm")
    hdr.set_data_offset(352)
    if slope is not None:
        hdr.set_slope_inter(slope, 0.0)
    bio = io.BytesIO()
    hdr.write_to(bio)
    raw = bytearray(bio.getvalue())
    raw += b"\0" * (352 - len(raw))
    if vox_offset is not None:
        struct.pack_into("<f", raw, 108, float(vox_offset))
    if magic is not None:
        raw[344:348] = magic
    data = np.asarray(arr, dtype=hdr.get_data_dtype()).tobytes(order="F")
    return bytes(raw) + data


def gz(data: bytes, level: int = 1) -> bytes:
    return gzip.compress(data, level, mtime=0)


def flip_middle(data: bytes, n: int = 64) -> bytes:
    """Invert ``n`` bytes in the middle (a corrupt transfer)."""
    b = bytearray(data)
    mid = len(b) // 2
    for i in range(mid, min(mid + n, len(b))):
        b[i] ^= 0xFF
    return bytes(b)


def rlimit_inside_job(mb: int) -> tuple[int, bool]:
    """Run in a judging process: the soft RLIMIT_AS under the job's memory limit, and
    whether allocating twice that much fails there."""
    import resource

    from app.jobs.limits import memory_limit

    with memory_limit(mb):
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        try:
            np.ones((2 * mb) << 20, dtype=np.uint8)
        except MemoryError:
            return soft, True
    return soft, False


def children_peak_rss(pause: float) -> tuple[int, int]:
    """Run in a judging process: its pid and the largest peak RSS (bytes) of the child
    processes it has waited for (the forked jobs)."""
    import os
    import resource
    import time

    time.sleep(pause)  # let the other judging processes take the other calls
    return os.getpid(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def proc_memory(pid: int | str = "self", field: str = "VmRSS") -> int:
    """A memory figure of a process from ``/proc/<pid>/status``, in bytes (``VmRSS`` now,
    ``VmHWM`` its peak); 0 when the kernel does not report it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


# -- bombs, built without ever holding (or writing) what they expand to --------------------
_ZERO_MIB = bytes(1 << 20)


def _zero_block() -> bytes:
    """Raw deflate of 1 MiB of zeros ending on a full flush: independently decodable,
    so that copies of it can follow each other (or any full-flushed deflate data)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(_ZERO_MIB) + c.flush(zlib.Z_FULL_FLUSH)


def zip_bomb(names: list[str], member_mib: int = 1024) -> bytes:
    """A zip of deflated members of ``member_mib`` MiB of zeros each (about 1 KiB per
    MiB: 8 members of 1 GiB take 8.3 MB), with their true sizes and CRCs."""
    data, crc = deflate_zeros(member_mib)
    return raw_zip(
        [
            ZipEntry(n, data, method=zipfile.ZIP_DEFLATED, crc=crc, size=member_mib << 20)
            for n in names
        ]
    )


def tar_gz_bomb(names: list[str], member_mib: int = 1024) -> bytes:
    """A .tar.gz of members of ``member_mib`` MiB of zeros each, written by hand: the
    tar headers are deflated by one compressor (each ending on a full flush) and the
    zeros are copies of one deflated MiB. The gzip CRC is not computed (8 GiB of
    CRC-32 would take seconds): a reader that stops in time never reaches it."""
    block = _zero_block()
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"]  # gzip header, no name, mtime 0
    total = 0
    for name in names:
        info = tarfile.TarInfo(name)
        info.size = member_mib << 20
        header = info.tobuf(format=tarfile.GNU_FORMAT)
        out.append(c.compress(header) + c.flush(zlib.Z_FULL_FLUSH))
        out.append(block * member_mib)
        total += len(header) + info.size
    out.append(c.compress(bytes(1024)) + c.flush(zlib.Z_FINISH))  # end of archive
    total += 1024
    out.append(struct.pack("<II", 0, total & 0xFFFFFFFF))
    return b"".join(out)


def nifti_header_bytes(shape: tuple[int, ...], *, dtype: object = np.uint8) -> bytes:
    """A NIfTI-1 header (352 bytes, voxels at 352) declaring ``shape``, identity affine."""
    return nifti_raw(np.zeros((1, 1, 1), np.uint8), np.eye(4), shape=shape, dtype=dtype)[:352]


def nii_gz_with_tail(shape: tuple[int, ...], total_mib: int, *, affine: object = None) -> bytes:
    """One gzip member holding a NIfTI header that declares ``shape`` (uint8) and then
    ``total_mib`` MiB of zeros: the voxels of an empty mask and, beyond what the header
    declares, more zeros in the same stream. About 1 KiB per MiB; a valid gzip file."""
    arr = np.zeros((1, 1, 1), np.uint8)
    header = nifti_raw(arr, np.eye(4) if affine is None else affine, shape=shape)[:352]
    block = _zero_block()
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH) + block * total_mib
    body += c.flush(zlib.Z_FINISH)
    size = len(header) + (total_mib << 20)
    crc = zlib.crc32(header)
    for _ in range(total_mib):
        crc = zlib.crc32(_ZERO_MIB, crc)
    return (
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
        + body
        + struct.pack("<II", crc, size & 0xFFFFFFFF)
    )
