"""Safe extraction of participant archives.

Every archive is hostile until proven otherwise. We never call ``extractall``: each
member is checked (type, name, declared size) and then copied with a running byte
count, so a lying header cannot make us write more than the caps allow.

Rules: ``.zip``, ``.tar``, ``.tar.gz``/``.tgz`` recognised by their magic bytes, not
their names; no absolute paths, no ``..``, no links, no device files or FIFOs;
caps on the member count, each member's size, the total extracted size and the
compression ratio; a single top-level folder is stripped; names that collide after
stripping (or differ only by case) are refused; macOS/Windows junk
(``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``) is skipped.
"""

from __future__ import annotations

import contextlib
import errno
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal

from evaluator.errors import ArchiveError, LimitError, SubmissionError, SubmissionRejected
from evaluator.protocol import Limits

ArchiveKind = Literal["zip", "tar", "tar.gz"]

_JUNK_DIRS = {"__MACOSX"}
_JUNK_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}
_CHUNK = 1 << 20
_MAX_NAME_BYTES = 1024


def detect_archive(path: Path) -> ArchiveKind | None:
    """The archive type from the file's first bytes, or None."""
    with open(path, "rb") as f:
        head = f.read(262)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        # a gzip stream: a .tar.gz if the decompressed head looks like a tar header
        return "tar.gz" if _gzip_holds_tar(path) else None
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return None


def _gzip_holds_tar(path: Path) -> bool:
    import zlib

    d = zlib.decompressobj(wbits=47)
    try:
        with open(path, "rb") as f:
            out = d.decompress(f.read(64 * 1024), 512)
    except zlib.error:
        return False
    return len(out) >= 262 and out[257:262] == b"ustar"


def _human(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"


def _clean_name(raw: str, archive: str) -> str | SubmissionError:
    """Normalise a member name, or return the problem with it."""
    name = raw.replace("\\", "/")
    if "\x00" in name:
        return ArchiveError(archive, f"member {raw!r} has a NUL byte in its name")
    if any("\udc80" <= ch <= "\udcff" for ch in name):  # tarfile's surrogateescape
        shown = raw.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
        return ArchiveError(
            archive,
            f"member name '{shown}' is not valid UTF-8; rename the file with plain "
            "letters, digits, '-' and '_' (e.g. CHUM-001.nii.gz) and archive it again",
        )
    if len(name.encode("utf-8")) > _MAX_NAME_BYTES or any(
        len(part.encode("utf-8")) > 255 for part in name.split("/")
    ):
        return ArchiveError(
            archive,
            f"member {raw[:60]!r}... has a name longer than the limit ({_MAX_NAME_BYTES} "
            "bytes, 255 per folder or file name); files are named <PatientID>.nii.gz",
        )
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return ArchiveError(
            archive,
            f"member {raw!r} has an absolute path; archive the files with paths relative "
            "to the folder that holds them",
        )
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return ArchiveError(
            archive,
            f"member {raw!r} points outside the archive ('..' in its path); archive the "
            "prediction files themselves, without '..'",
        )
    return posixpath.join(*parts) if parts else ""


def _is_junk(name: str) -> bool:
    parts = name.split("/")
    return bool(_JUNK_DIRS & set(parts)) or parts[-1] in _JUNK_FILES or parts[-1].startswith("._")


class _Member:
    __slots__ = ("compressed", "is_dir", "name", "opener", "size")

    def __init__(self, name: str, size: int, compressed: int, is_dir: bool, opener: object) -> None:
        self.name = name
        self.size = size
        self.compressed = compressed
        self.is_dir = is_dir
        self.opener = opener


def _zip_members(
    zf: zipfile.ZipFile, archive: str, problems: list[SubmissionError]
) -> list[_Member]:
    out = []
    for info in zf.infolist():
        mode = (info.external_attr >> 16) & 0xFFFF
        name = _clean_name(info.filename, archive)
        if isinstance(name, SubmissionError):
            problems.append(name)
            continue
        if stat.S_ISLNK(mode):
            problems.append(
                ArchiveError(
                    archive,
                    f"member {info.filename!r} is a symbolic link; links are not accepted, "
                    "put the file itself in the archive",
                )
            )
            continue
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: type not recorded
            problems.append(
                ArchiveError(
                    archive,
                    f"member {info.filename!r} is not a regular file (a device, FIFO or "
                    "socket); only files and folders are accepted",
                )
            )
            continue
        if info.flag_bits & 0x1:
            problems.append(
                ArchiveError(
                    archive,
                    f"member {info.filename!r} is encrypted; upload an archive without a password",
                )
            )
            continue
        out.append(_Member(name, info.file_size, info.compress_size, info.is_dir(), info))
    return out


def _tar_members(
    tf: tarfile.TarFile, archive: str, problems: list[SubmissionError], limits: Limits
) -> list[_Member]:
    out = []
    declared = 0
    for n, info in enumerate(tf):
        if n >= limits.max_members:
            problems.append(
                LimitError(
                    archive,
                    f"the archive has more than {limits.max_members} members; one file per "
                    "case is expected",
                )
            )
            break
        name = _clean_name(info.name, archive)
        if isinstance(name, SubmissionError):
            problems.append(name)
            continue
        if info.issym() or info.islnk():
            kind = "symbolic link" if info.issym() else "hard link"
            problems.append(
                ArchiveError(
                    archive,
                    f"member {info.name!r} is a {kind}; links are not accepted, put the "
                    "file itself in the archive",
                )
            )
            continue
        if not (info.isfile() or info.isdir()):
            problems.append(
                ArchiveError(
                    archive,
                    f"member {info.name!r} is not a regular file (a device, FIFO or other "
                    "special file); only files and folders are accepted",
                )
            )
            continue
        out.append(_Member(name, info.size, info.size, info.isdir(), info))
        declared += info.size
        if info.size > limits.max_member_bytes or declared > limits.max_total_bytes:
            # stop reading here: skipping past a huge member of a compressed tar
            # would mean decompressing all of it
            break
    return out


def _strip_top(members: list[_Member]) -> list[_Member]:
    files = [m for m in members if not m.is_dir]
    tops = {m.name.split("/")[0] for m in files}
    if len(tops) == 1 and all("/" in m.name for m in files):
        top = next(iter(tops))
        if any(m.name in (f"{top}/rfs.json", f"{top}/hpv-status.json") for m in files):
            return [m for m in members if not m.is_dir]  # the folder is a case: keep its name
        for m in members:
            m.name = m.name[len(top) + 1 :] if m.name.startswith(top + "/") else ""
    return [m for m in members if m.name and not m.is_dir]


def _copy_limited(src: IO[bytes], dst: IO[bytes], cap: int) -> int:
    total = 0
    while block := src.read(_CHUNK):
        total += len(block)
        if total > cap:
            return total
        dst.write(block)
    return total


def extract_archive(path: Path, dest: Path, *, limits: Limits) -> Path:
    """Extract ``path`` safely into the empty folder ``dest``; returns the folder
    holding the files (``dest``, after a single top folder was stripped).

    Raises :class:`SubmissionRejected` listing every problem of the archive.
    """
    archive = path.name
    kind = detect_archive(path)
    if kind is None:
        raise SubmissionRejected(
            [
                ArchiveError(
                    archive,
                    "this file is not a .zip, .tar or .tar.gz archive (its first bytes "
                    "match none of them); upload one archive of your prediction files",
                )
            ]
        )
    problems: list[SubmissionError] = []
    try:
        with contextlib.ExitStack() as stack:
            if kind == "zip":
                zf = stack.enter_context(zipfile.ZipFile(path))
                if len(zf.infolist()) > limits.max_members:
                    raise SubmissionRejected(
                        [
                            LimitError(
                                archive,
                                f"the archive has {len(zf.infolist())} members, more than "
                                f"the limit of {limits.max_members}; one file per case is "
                                "expected",
                            )
                        ]
                    )
                members = _zip_members(zf, archive, problems)
            else:
                tf = stack.enter_context(tarfile.open(path, "r:*"))
                members = _tar_members(tf, archive, problems, limits)
            members = [m for m in members if not _is_junk(m.name)]
            files = _strip_top(members)
            if not files and not problems:
                problems.append(
                    ArchiveError(
                        archive,
                        "the archive holds no files; put your prediction files in it",
                    )
                )
            seen: dict[str, str] = {}
            declared_total = 0
            for m in files:
                key = unicodedata.normalize("NFC", m.name).casefold()
                if key in seen:
                    problems.append(
                        ArchiveError(
                            archive,
                            f"members {seen[key]!r} and {m.name!r} would be extracted to "
                            "the same file; every file name must be unique",
                        )
                    )
                    continue
                seen[key] = m.name
                if m.size > limits.max_member_bytes:
                    problems.append(
                        LimitError(
                            archive,
                            f"member {m.name!r} is {_human(m.size)} uncompressed, over the "
                            f"limit of {_human(limits.max_member_bytes)} per file",
                        )
                    )
                if m.compressed > 0 and m.size / m.compressed > limits.max_ratio:
                    problems.append(
                        LimitError(
                            archive,
                            f"member {m.name!r} expands {m.size // m.compressed}-fold, over "
                            f"the limit of {limits.max_ratio}-fold (a compression bomb?); "
                            "store .nii.gz files as they are",
                        )
                    )
                declared_total += m.size
            for key, name in seen.items():
                parent = key.rpartition("/")[0]
                while parent:
                    if parent in seen:
                        problems.append(
                            ArchiveError(
                                archive,
                                f"{seen[parent]!r} is a file and also the folder of "
                                f"{name!r}; rename one of them",
                            )
                        )
                        break
                    parent = parent.rpartition("/")[0]
            if declared_total > limits.max_total_bytes:
                problems.append(
                    LimitError(
                        archive,
                        f"the archive expands to {_human(declared_total)}, over the limit "
                        f"of {_human(limits.max_total_bytes)}; compress the label maps "
                        "(.nii.gz) and leave out images that are not predictions",
                    )
                )
            if problems:
                raise SubmissionRejected(problems)
            written = 0
            for m in files:
                target = dest / m.name
                target.parent.mkdir(parents=True, exist_ok=True)
                cap = min(limits.max_member_bytes, limits.max_total_bytes - written)
                with open(target, "xb") as out:
                    src: IO[bytes] | None = (
                        zf.open(m.opener)  # type: ignore[arg-type]
                        if kind == "zip"
                        else tf.extractfile(m.opener)  # type: ignore[arg-type]
                    )
                    if src is None:
                        raise SubmissionRejected(
                            [ArchiveError(archive, f"member {m.name!r} cannot be read")]
                        )
                    with src:
                        n = _copy_limited(src, out, cap)
                if n > cap:
                    raise SubmissionRejected(
                        [
                            LimitError(
                                archive,
                                f"member {m.name!r} expands beyond what its header "
                                f"declares and beyond the limit of {_human(cap)}",
                            )
                        ]
                    )
                written += n
    except SubmissionRejected:
        raise
    except UnicodeDecodeError:
        raise SubmissionRejected(
            [
                ArchiveError(
                    archive,
                    "a member name is not valid UTF-8 although the archive marks it as UTF-8; "
                    "rename the files with plain letters, digits, '-' and '_' and archive "
                    "them again",
                )
            ]
        ) from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise  # the server's disk, not the participant's archive
        raise _corrupt(archive, exc.strerror or str(exc) or type(exc).__name__) from None
    except (
        zipfile.BadZipFile,
        tarfile.TarError,
        EOFError,
        ValueError,
        zlib.error,
        lzma.LZMAError,
    ) as exc:  # bad compressed data raises zlib.error / LZMAError, not BadZipFile
        raise _corrupt(archive, str(exc) or type(exc).__name__) from None
    return dest


def _corrupt(archive: str, detail: str) -> SubmissionRejected:
    return SubmissionRejected(
        [
            ArchiveError(
                archive,
                f"the archive is corrupt or truncated ({detail}); create it again and "
                "re-upload the complete file",
            )
        ]
    )


@contextlib.contextmanager
def open_predictions(
    path: Path, *, limits: Limits, allow_plain_file: bool = False
) -> Iterator[Path]:
    """Yield a folder (or, for tables, a file) holding the predictions.

    A folder is used as it is; an archive is extracted safely into a temporary folder
    that is removed afterwards. With ``allow_plain_file`` a file that is not an
    archive (a CSV or JSON table) is yielded as it is.
    """
    path = Path(path)
    if path.is_dir():
        yield path
        return
    kind = detect_archive(path)
    if kind is None:
        if allow_plain_file:
            yield path
            return
        raise SubmissionRejected(
            [
                ArchiveError(
                    path.name,
                    "this file is not a .zip, .tar or .tar.gz archive (its first bytes "
                    "match none of them); upload one archive of your .nii.gz files",
                )
            ]
        )
    tmp = Path(tempfile.mkdtemp(prefix="hecktor-sub-"))
    try:
        os.chmod(tmp, 0o700)
        yield extract_archive(path, tmp, limits=limits)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
