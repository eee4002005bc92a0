"""Reading participant archives in place, member by member, nothing extracted.

Every archive is hostile until proven otherwise. Nothing is written to disk and
nothing is inflated that the task does not read: a scan lists the members (type,
name, declared size checked), the task says which ones it wants (Task 1: files named
after a case of the phase; Tasks 2/3: one table or the per-case files), and only
those are read, as streams, by readers that stop at what the task can accept (see
:mod:`evaluator.io.nifti` and :mod:`evaluator.io.tables`). Every other member is
listed, never inflated.

Rules: ``.zip``, ``.tar``, ``.tar.gz``/``.tgz`` recognised by their magic bytes, not
their names; no absolute paths, no ``..``, no links, no device files or FIFOs;
caps on the member count, each read member's declared size and their total; a
single top folder is stripped from the names; names that collide after stripping
(or differ only by case) are refused; macOS/Windows junk (``__MACOSX/``,
``.DS_Store``, ``Thumbs.db``) is skipped.

A zip member is opened on its own, so unread members cost nothing and cases can be
read by several processes. A .tar.gz can only be read in order: members the task
does not read must be inflated to be skipped, so their declared sizes (and what a
reader leaves unread of a member) are charged to ``Limits.max_unread_bytes``; past
it the archive is refused without reading further.

There is no compression-ratio cap: it cannot tell a bomb from a valid prediction.
Measured with ``python -m benchmarks.bombs --ratios`` (raw NIfTI bytes per .nii.gz
byte, 512x512x300 uint8): an empty mask 229 / 1,028 / 1,028 at gzip levels 1 / 6 / 9,
one GTVp 227 / 1,010 / 1,012, the synthetic generator's CT-size masks 221-227 /
956-1,008 / 962-1,009, while deflate itself cannot exceed about 1,032. What bounds
the work is that each member is inflated only as far as its task needs.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import lzma
import os
import posixpath
import stat
import tarfile
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

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


_READ_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    tarfile.TarError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,  # a zip compression method Python does not read
    ValueError,
)


class _Guarded:
    """A member's stream whose read errors become the participant's problem (an
    :class:`ArchiveError` naming the member), not a crash of the scorer."""

    def __init__(self, f: IO[bytes], archive: str, member: str, owner: Any = None) -> None:
        self.f = f
        self.archive = archive
        self.member = member
        self.owner = owner  # the ZipFile, closed with the stream

    def read(self, n: int = -1, /) -> bytes:
        try:
            return self.f.read(n)
        except _READ_ERRORS as exc:
            raise _member_corrupt(self.archive, self.member, exc) from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise _member_corrupt(self.archive, self.member, exc) from None

    def tell(self) -> int:
        return self.f.tell()

    def close(self) -> None:
        self.f.close()
        if self.owner is not None:
            self.owner.close()

    def __enter__(self) -> _Guarded:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _member_corrupt(archive: str, member: str, exc: BaseException) -> ArchiveError:
    detail = str(exc) or type(exc).__name__
    return ArchiveError(
        member,
        f"this member of {archive} cannot be read, the archive is corrupt or truncated "
        f"({detail}); create the archive again and re-upload the complete file",
    )


@dataclass(frozen=True)
class MemberRef:
    """Where one file of a submission is: a file on disk, or a member of a zip
    archive, read in place. Small and picklable: scoring processes open it themselves."""

    path: Path
    member: str | None = None  # the zip member's stored name; None: ``path`` is the file
    archive: str = ""

    def open(self) -> _Guarded:
        if self.member is None:
            return _Guarded(open(self.path, "rb"), self.archive or self.path.name, self.path.name)
        try:
            zf = zipfile.ZipFile(self.path)
        except _READ_ERRORS as exc:
            raise _corrupt(self.archive, str(exc) or type(exc).__name__).problems[0] from None
        try:
            f = zf.open(self.member)
        except _READ_ERRORS as exc:
            zf.close()
            raise _member_corrupt(self.archive, self.member, exc) from None
        return _Guarded(f, self.archive, self.member, owner=zf)


@dataclass
class Member:
    """One file of a submission: its cleaned path, its declared (uncompressed) size,
    and where to read it (None for a tar member: readable only while the scan is on it)."""

    name: str
    size: int
    ref: MemberRef | None


Want = Callable[[Member], bool]


class Scan:
    """One pass over the files of a submission (a folder, or an archive read in place).

    ``want(member)`` says whether the task reads a member; only those are yielded by
    iteration, with the member's live stream for a tar archive (valid until the next
    member) or None (then open ``member.ref``). Archive-level problems are collected
    in ``problems``: for a folder or a zip they are all known before the first member
    is yielded (iteration then raises them at once); in a tar they are found on the
    way, no further member is yielded, and :meth:`finish` raises them.
    """

    def __init__(self, path: Path, *, limits: Limits, want: Want) -> None:
        self.path = Path(path)
        self.archive = self.path.name
        self.limits = limits
        self.want = want
        self.problems: list[SubmissionError] = []
        self.members: list[Member] = []  # every file seen (junk left out), in order
        self.wanted_bytes = 0
        self.unread_bytes = 0
        self.kind: ArchiveKind | Literal["folder"]
        if self.path.is_dir():
            self.kind = "folder"
        else:
            kind = detect_archive(self.path)
            if kind is None:
                raise SubmissionRejected(
                    [
                        ArchiveError(
                            self.archive,
                            "this file is not a .zip, .tar or .tar.gz archive (its first bytes "
                            "match none of them); upload one archive of your prediction files",
                        )
                    ]
                )
            self.kind = kind
        self._listed: list[Member] | None = None
        if self.kind == "folder":
            self._listed = self._list_folder()
        elif self.kind == "zip":
            self._listed = self._guard(self._list_zip)
        if self._listed is not None:
            self.members = _strip_top(self._listed)
            self._check_names()

    # -- listing ---------------------------------------------------------------------
    def _guard(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except SubmissionRejected:
            raise
        except UnicodeDecodeError:
            raise SubmissionRejected(
                [
                    ArchiveError(
                        self.archive,
                        "a member name is not valid UTF-8 although the archive marks it as "
                        "UTF-8; rename the files with plain letters, digits, '-' and '_' and "
                        "archive them again",
                    )
                ]
            ) from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise  # the server's disk, not the participant's archive
            raise _corrupt(self.archive, exc.strerror or str(exc) or type(exc).__name__) from None
        except _READ_ERRORS as exc:
            raise _corrupt(self.archive, str(exc) or type(exc).__name__) from None

    def _list_folder(self) -> list[Member]:
        out = []
        for p in sorted(q for q in self.path.rglob("*") if q.is_file()):
            name = p.relative_to(self.path).as_posix()
            if not _is_junk(name):
                out.append(Member(name, p.stat().st_size, MemberRef(p, None, self.archive)))
        return out

    def _list_zip(self) -> list[Member]:
        with zipfile.ZipFile(self.path) as zf:
            infos = zf.infolist()
        if len(infos) > self.limits.max_members:
            raise SubmissionRejected(
                [
                    LimitError(
                        self.archive,
                        f"the archive has {len(infos)} members, more than the limit of "
                        f"{self.limits.max_members}; one file per case is expected",
                    )
                ]
            )
        out = []
        for info in infos:
            mode = (info.external_attr >> 16) & 0xFFFF
            name = _clean_name(info.filename, self.archive)
            if isinstance(name, SubmissionError):
                self.problems.append(name)
                continue
            problem = None
            if stat.S_ISLNK(mode):
                problem = _link(info.filename, "symbolic link")
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: not recorded
                problem = _special(info.filename, "a device, FIFO or socket")
            elif info.flag_bits & 0x1:
                problem = (
                    f"member {info.filename!r} is encrypted; upload an archive without a password"
                )
            if problem is not None:
                self.problems.append(ArchiveError(self.archive, problem))
                continue
            if info.is_dir() or not name or _is_junk(name):
                continue
            out.append(
                Member(name, info.file_size, MemberRef(self.path, info.filename, self.archive))
            )
        return out

    def _check_names(self) -> None:
        """Names that collide, or a file that is also a folder; an empty archive."""
        seen: dict[str, str] = {}
        for m in self.members:
            key = unicodedata.normalize("NFC", m.name).casefold()
            if key in seen:
                self.problems.append(
                    ArchiveError(
                        self.archive,
                        f"members {seen[key]!r} and {m.name!r} would be extracted to "
                        "the same file; every file name must be unique",
                    )
                )
                continue
            seen[key] = m.name
        for key, name in seen.items():
            parent = key.rpartition("/")[0]
            while parent:
                if parent in seen:
                    self.problems.append(
                        ArchiveError(
                            self.archive,
                            f"{seen[parent]!r} is a file and also the folder of {name!r}; "
                            "rename one of them",
                        )
                    )
                    break
                parent = parent.rpartition("/")[0]
        if not self.members and not self.problems:
            self.problems.append(
                ArchiveError(
                    self.archive, "the archive holds no files; put your prediction files in it"
                )
            )

    def _take(self, m: Member) -> bool:
        """Whether ``m`` is read: the task wants it and it is within the caps."""
        if not self.want(m):
            return False
        if m.size > self.limits.max_member_bytes:
            self.problems.append(
                LimitError(
                    self.archive,
                    f"member {m.name!r} is {_human(m.size)} uncompressed, over the "
                    f"limit of {_human(self.limits.max_member_bytes)} per file",
                )
            )
            return False
        self.wanted_bytes += m.size
        if self.wanted_bytes > self.limits.max_total_bytes:
            self.problems.append(
                LimitError(
                    self.archive,
                    f"the files to read expand to more than {_human(self.limits.max_total_bytes)}"
                    " (the limit); compress the label maps (.nii.gz) and leave out files "
                    "that are not predictions",
                )
            )
            return False
        return True

    # -- reading ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[Member, _Guarded | None]]:
        if self._listed is not None:
            if self.problems:
                raise SubmissionRejected(self.problems)
            wanted = [m for m in self.members if self._take(m)]
            if self.problems:
                raise SubmissionRejected(self.problems)
            for m in wanted:
                yield m, None
            return
        yield from self._guard_iter(self._iter_tar())

    def _guard_iter(
        self, it: Iterator[tuple[Member, _Guarded | None]]
    ) -> Iterator[tuple[Member, _Guarded | None]]:
        while True:
            try:
                item = self._guard(lambda: next(it, None))
            except SubmissionRejected:
                raise
            if item is None:
                return
            yield item

    def _charge(self, name: str, n: int) -> bool:
        """Charge ``n`` bytes skipped by inflation; False (and a problem) past the cap."""
        if self.kind != "tar.gz":
            return True
        self.unread_bytes += n
        if self.unread_bytes <= self.limits.max_unread_bytes:
            return True
        self.problems.append(
            LimitError(
                self.archive,
                f"member {name!r} ({_human(n)}) is not read by this task (not a file it "
                "accepts, a second copy, or larger than the task can take), and what it "
                f"does not read adds up to more than "
                f"{_human(self.limits.max_unread_bytes)}: a .tar.gz must be inflated to "
                "skip them, so it is not read further; put only the prediction files in "
                "the archive",
            )
        )
        return False

    def _iter_tar(self) -> Iterator[tuple[Member, _Guarded | None]]:
        with contextlib.ExitStack() as stack:
            if self.kind == "tar.gz":
                # inflated by GzipFile in bounded steps (tarfile's own gzip reader can
                # return 16 MB for a 16 KiB read of a bomb)
                gz = stack.enter_context(gzip.GzipFile(self.path, "rb"))
                tf = stack.enter_context(tarfile.open(fileobj=gz, mode="r|"))
            else:
                tf = stack.enter_context(tarfile.open(self.path, "r:"))
            for n, info in enumerate(tf):
                if n >= self.limits.max_members:
                    self.problems.append(
                        LimitError(
                            self.archive,
                            f"the archive has more than {self.limits.max_members} members; "
                            "one file per case is expected",
                        )
                    )
                    break
                name = _clean_name(info.name, self.archive)
                if isinstance(name, SubmissionError):
                    self.problems.append(name)
                elif info.issym() or info.islnk():
                    kind = "symbolic link" if info.issym() else "hard link"
                    self.problems.append(ArchiveError(self.archive, _link(info.name, kind)))
                elif not (info.isfile() or info.isdir()):
                    self.problems.append(
                        ArchiveError(
                            self.archive,
                            _special(info.name, "a device, FIFO or other special file"),
                        )
                    )
                if isinstance(name, SubmissionError) or not (info.isfile() or info.isdir()):
                    if not self._charge(info.name, info.size):
                        break
                    continue
                if info.isdir() or not name or _is_junk(name):
                    if not self._charge(info.name, info.size):
                        break
                    continue
                m = Member(name, info.size, None)
                self.members.append(m)
                if self.problems or not self._take(m):
                    if not self._charge(name, info.size):
                        break
                    continue
                f = tf.extractfile(info)
                if f is None:  # pragma: no cover - a regular file always has a stream
                    continue
                stream = _Guarded(f, self.archive, name)
                yield m, stream
                left = info.size - stream.tell()
                if not self._charge(name, left):
                    break
        self.members = _strip_top(self.members)
        self._check_names()

    def finish(self) -> None:
        """Raise the archive-level problems, if any (after iteration)."""
        if self.problems:
            raise SubmissionRejected(self.problems)


def _link(raw: str, kind: str) -> str:
    return f"member {raw!r} is a {kind}; links are not accepted, put the file itself in the archive"


def _special(raw: str, what: str) -> str:
    return f"member {raw!r} is not a regular file ({what}); only files and folders are accepted"


def _strip_top(members: list[Member]) -> list[Member]:
    """The members with a single top folder stripped from their names (unless that
    folder is a Task 2/3 case folder: then its name is the PatientID)."""
    tops = {m.name.split("/")[0] for m in members}
    if len(tops) == 1 and members and all("/" in m.name for m in members):
        top = next(iter(tops))
        if not any(m.name in (f"{top}/rfs.json", f"{top}/hpv-status.json") for m in members):
            for m in members:
                m.name = m.name[len(top) + 1 :]
    return members


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


class _Stat:
    __slots__ = ("st_size",)

    def __init__(self, size: int) -> None:
        self.st_size = size


class TreePath:
    """A file or folder of an archive, as the table reader sees it: every member's
    name and declared size, and the bytes of the members that were read (the tables),
    without anything written to disk. Reading a member that was not read raises
    :class:`OSError` with the reason."""

    def __init__(self, name: str, tree: dict[str, Any], why: str = "") -> None:
        self.name = name
        self._tree = tree  # folder: name -> TreePath; file: {"": (size, bytes | None)}
        self._why = why

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    def is_file(self) -> bool:
        return self._why != "missing" and "" in self._tree

    def is_dir(self) -> bool:
        return self._why != "missing" and "" not in self._tree

    def iterdir(self) -> Iterator[TreePath]:
        return iter([v for k, v in self._tree.items() if k])

    def __truediv__(self, other: str) -> TreePath:
        child = self._tree.get(other)
        return child if isinstance(child, TreePath) else TreePath(other, {}, "missing")

    def exists(self) -> bool:
        return self._why != "missing"

    def stat(self) -> _Stat:
        entry = self._tree.get("")
        if entry is None or self._why == "missing":
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), self.name)
        return _Stat(entry[0])

    def read_bytes(self) -> bytes:
        entry = self._tree.get("")
        if entry is None or entry[1] is None:
            reason = self._why or "not a file this task reads"
            raise OSError(errno.EFBIG, reason)
        data: bytes = entry[1]
        return data


def read_tree(path: Path, *, limits: Limits, want: Want, cap: int) -> TreePath:
    """The members of the archive ``path`` as a tree; the members ``want`` selects are
    read, each up to ``cap`` bytes and all together up to ``cap`` bytes (a member over
    it keeps only its declared size, for the reader to refuse)."""
    scan = Scan(path, limits=limits, want=want)
    contents: dict[int, bytes | None] = {}
    why: dict[int, str] = {}
    total = 0
    for m, stream in scan:
        if m.size > cap:
            continue  # refused by its declared size, never read
        f = stream if stream is not None else m.ref.open() if m.ref is not None else None
        if f is None:  # pragma: no cover
            continue
        try:
            data = f.read(cap + 1)
        finally:
            if stream is None:
                f.close()
        if total + len(data) > cap:
            why[id(m)] = (
                f"the table files of the submission together hold more than {cap:,} bytes, "
                "the limit for this phase's prediction tables"
            )
            continue
        total += len(data)
        contents[id(m)] = data
    scan.finish()
    root: dict[str, Any] = {}
    for m in scan.members:
        node = root
        parts = m.name.split("/")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, TreePath):
                child = node[part] = TreePath(part, {})
            node = child._tree
        node[parts[-1]] = TreePath(
            parts[-1], {"": (m.size, contents.get(id(m)))}, why.get(id(m), "")
        )
    return TreePath(scan.archive, root)
