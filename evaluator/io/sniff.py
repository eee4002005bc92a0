"""What a submission file is, from its first bytes, never from its name.

:func:`archive_kind` knows the three archive formats by their magic bytes;
:func:`detect_archive` also checks that a gzip file holds a tar archive;
:func:`sniff_type` says what an upload's first bytes are for its task (an archive, or
for Tasks 2/3 a CSV or JSON table) and refuses anything else with
:class:`UnsupportedUpload`, whose message says what was expected, what the upload is,
and what to upload instead.
"""

from __future__ import annotations

import codecs
import zlib
from pathlib import Path
from typing import Literal

from evaluator.errors import ArchiveError

ArchiveKind = Literal["zip", "tar", "tar.gz"]
UploadType = Literal["zip", "tar", "tar.gz", "csv", "json"]

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive
_GZIP_MAGIC = b"\x1f\x8b"
_TAR_HEAD = 262  # a ustar header's magic sits at bytes 257-261

# magic bytes of other files people upload by mistake: (offset, magic, what it is)
_OTHER_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"BZh", "a bzip2 file"),
    (0, b"\xfd7zXZ\x00", "an xz file"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (0, b"Rar!", "a RAR archive"),
    (0, b"\x28\xb5\x2f\xfd", "a zstd file"),
    (0, b"%PDF", "a PDF document"),
    (0, b"\x89PNG", "a PNG image"),
    (344, b"n+1\x00", "an uncompressed NIfTI image"),
    (344, b"ni1\x00", "an uncompressed NIfTI image"),
    (0, b"ObjectType = Image", "a single MetaImage (.mha) image"),
    (0, b"NDims = ", "a single MetaImage (.mha) image"),
)


class UnsupportedUpload(ArchiveError):
    """An upload that is none of the file types its task accepts."""

    def __init__(self, message: str) -> None:
        super().__init__("", message)


def _is_tar_header(head: bytes) -> bool:
    return len(head) >= _TAR_HEAD and head[257:262] == b"ustar"


def archive_kind(head: bytes) -> ArchiveKind | None:
    """The archive type that a file's first bytes announce, or None. Any gzip stream
    counts as ``tar.gz`` here; what it holds is not looked at."""
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head.startswith(_GZIP_MAGIC):
        return "tar.gz"
    if _is_tar_header(head):
        return "tar"
    return None


def detect_archive(path: Path) -> ArchiveKind | None:
    """The archive type from the file's first bytes, or None (also for a gzip file
    whose decompressed head is not a tar header)."""
    with open(path, "rb") as f:
        head = f.read(_TAR_HEAD)
    kind = archive_kind(head)
    if kind == "tar.gz" and not _gzip_holds_tar(path):
        return None
    return kind


def _gzip_holds_tar(path: Path) -> bool:
    d = zlib.decompressobj(wbits=47)
    try:
        with open(path, "rb") as f:
            out = d.decompress(f.read(64 * 1024), 512)
    except zlib.error:
        return False
    return _is_tar_header(out)


def sniff_type(head: bytes, task: int) -> UploadType:
    """``zip``, ``tar``, ``tar.gz`` or, for Task 2/3, ``csv``/``json``, from the first
    bytes of an upload (512 are enough).

    Raises :class:`UnsupportedUpload` with a message a participant can act on.
    """
    kind = archive_kind(head)
    if kind == "tar.gz":
        _check_gzip(head, task)
        return kind
    if kind is not None:
        return kind
    other = next(
        (what for off, magic, what in _OTHER_MAGIC if head[off : off + len(magic)] == magic), None
    )
    if other is None and task in (2, 3):
        table = _table_type(head)
        if table is not None:
            return table
    expected = (
        "a .zip, .tar or .tar.gz archive of <PatientID>.nii.gz (or .mha) files"
        if task == 1
        else "a .csv or .json table of PatientID, Prediction (or an archive holding one)"
    )
    found = other if other is not None else _describe(head)
    raise UnsupportedUpload(f"Task {task} expects {expected}; the upload is {found}.")


def _check_gzip(head: bytes, task: int) -> None:
    """Refuse a gzip stream whose first bytes show that it is not a tar archive (a
    tar.gz, or too little to tell, passes: extraction decides)."""
    inner, whole = _gunzip_head(head)
    if len(inner) >= 348 and inner[344:347] in (b"n+1", b"ni1"):
        found = "a single gzip-compressed NIfTI image"
    elif len(inner) >= 512 and not inner[:512].strip(b"\0"):
        found = "an empty .tar.gz archive"
    elif (whole or len(inner) >= _TAR_HEAD) and inner[257:262] != b"ustar":
        found = "a gzip-compressed file that is not a tar archive"
    else:
        return
    todo = (
        "put the <PatientID>.nii.gz (or .mha) files of all cases in one .zip or .tar.gz archive"
        if task == 1
        else "upload the table itself (.csv or .json), or a .zip/.tar.gz holding it"
    )
    raise UnsupportedUpload(f"Task {task}: the upload is {found}; {todo}.")


def _gunzip_head(head: bytes) -> tuple[bytes, bool]:
    """What the first bytes of a gzip stream decompress to (as much as they hold), and
    whether that is the whole stream."""
    d = zlib.decompressobj(wbits=31)
    try:
        return d.decompress(head, 4096), d.eof
    except zlib.error:
        return b"", False


def _table_type(head: bytes) -> Literal["csv", "json"] | None:
    """``json`` or ``csv`` for text of any encoding (the table reader says what is
    wrong with it); None for binary data."""
    text: str | None = None
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = head[: len(head) // 2 * 2].decode("utf-16", errors="ignore")
    elif head and b"\x00" not in head:
        text = head.decode("utf-8", errors="ignore")
    if text is None:
        return None
    text = text.lstrip("\ufeff \t\r\n")
    return "json" if text.startswith(("{", "[")) else "csv"


def _describe(head: bytes) -> str:
    if not head:
        return "an empty file"
    if _looks_like_text(head):
        return "a text file"
    return "a file of unknown type"


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        # a multi-byte character cut at the end of the sniffed head is fine
        return e.start >= len(head) - 3
    return True
