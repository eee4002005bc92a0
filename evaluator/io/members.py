"""The files of a submission as the archive reader lists them: cleaned names, where to
read each one, and streams whose read errors are the participant's problem.

Names: backslashes become ``/``; NUL bytes, invalid UTF-8, over-long names, absolute
paths and ``..`` are refused; macOS/Windows junk (``__MACOSX/``, ``.DS_Store``,
``Thumbs.db``) is skipped; a single top folder is stripped.
"""

from __future__ import annotations

import errno
import lzma
import posixpath
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from evaluator.errors import ArchiveError, FormatError, SubmissionError, SubmissionRejected

_JUNK_DIRS = {"__MACOSX"}
_JUNK_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}
_MAX_NAME_BYTES = 1024


def clean_name(raw: str, archive: str) -> str | SubmissionError:
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


def is_junk(name: str) -> bool:
    parts = name.split("/")
    return bool(_JUNK_DIRS & set(parts)) or parts[-1] in _JUNK_FILES or parts[-1].startswith("._")


def link_problem(raw: str, kind: str) -> str:
    return f"member {raw!r} is a {kind}; links are not accepted, put the file itself in the archive"


def special_problem(raw: str, what: str) -> str:
    return f"member {raw!r} is not a regular file ({what}); only files and folders are accepted"


def strip_top(members: list[Member]) -> list[Member]:
    """The members with a single top folder stripped from their names (unless that
    folder is a Task 2/3 case folder: then its name is the PatientID)."""
    tops = {m.name.split("/")[0] for m in members}
    if len(tops) == 1 and members and all("/" in m.name for m in members):
        top = next(iter(tops))
        if not any(m.name in (f"{top}/rfs.json", f"{top}/hpv-status.json") for m in members):
            for m in members:
                m.name = m.name[len(top) + 1 :]
    return members


READ_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    tarfile.TarError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,  # a zip compression method Python does not read
    ValueError,
)


class MemberStream:
    """A member's stream whose read errors become the participant's problem (an
    :class:`ArchiveError` naming the member), not a crash of the scorer.

    A file of a folder submission (``path`` set) can open a file beside it (a .mhd's
    data file, :meth:`open_sibling`); an archive member cannot."""

    def __init__(
        self,
        f: IO[bytes],
        archive: str,
        member: str,
        owner: Any = None,
        path: Path | None = None,
    ) -> None:
        self.f = f
        self.archive = archive
        self.member = member
        self.owner = owner  # the ZipFile, closed with the stream
        self.path = path  # the file on disk, for a member of a folder

    def open_sibling(self, name: str) -> MemberStream | None:
        """The file ``name`` beside this one (a plain file name), or None for an
        archive member (its archive holds one file per case)."""
        if self.path is None:
            return None
        sibling = open_data_file(self.path.parent, name, self.member)
        return MemberStream(sibling, self.archive, name, path=self.path.parent / name)

    def read(self, n: int = -1, /) -> bytes:
        try:
            return self.f.read(n)
        except READ_ERRORS as exc:
            raise member_corrupt(self.archive, self.member, exc) from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise member_corrupt(self.archive, self.member, exc) from None

    def tell(self) -> int:
        return self.f.tell()

    def close(self) -> None:
        self.f.close()
        if self.owner is not None:
            self.owner.close()

    def __enter__(self) -> MemberStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_data_file(folder: Path, name: str, header: str) -> IO[bytes]:
    """The data file ``name`` (a plain file name, checked by the header's reader) that
    the MetaImage header ``header`` in ``folder`` names, opened for reading."""
    path = folder / name
    if not path.is_file():
        raise FormatError(
            header,
            f"the header's ElementDataFile names {name!r}, which is not a file beside it "
            f"(in {folder.name}/); put the data file beside the .mhd, or save the label "
            "map as one .mha file",
        )
    try:
        return open(path, "rb")
    except OSError as exc:
        raise FormatError(
            header, f"its data file {name!r} cannot be read ({exc.strerror})"
        ) from None


def member_corrupt(archive: str, member: str, exc: BaseException) -> ArchiveError:
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

    def open(self) -> MemberStream:
        if self.member is None:
            return MemberStream(
                open(self.path, "rb"),
                self.archive or self.path.name,
                self.path.name,
                path=self.path,
            )
        try:
            zf = zipfile.ZipFile(self.path)
        except READ_ERRORS as exc:
            raise corrupt_archive(self.archive, str(exc) or type(exc).__name__).problems[
                0
            ] from None
        try:
            f = zf.open(self.member)
        except READ_ERRORS as exc:
            zf.close()
            raise member_corrupt(self.archive, self.member, exc) from None
        return MemberStream(f, self.archive, self.member, owner=zf)


@dataclass
class Member:
    """One file of a submission: its cleaned path, its declared (uncompressed) size,
    and where to read it (None for a tar member: readable only while the scan is on it)."""

    name: str
    size: int
    ref: MemberRef | None


Want = Callable[[Member], bool]


def corrupt_archive(archive: str, detail: str) -> SubmissionRejected:
    return SubmissionRejected(
        [
            ArchiveError(
                archive,
                f"the archive is corrupt or truncated ({detail}); create it again and "
                "re-upload the complete file",
            )
        ]
    )
