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
import stat
import tarfile
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from evaluator.errors import ArchiveError, LimitError, SubmissionError, SubmissionRejected
from evaluator.io.members import (
    READ_ERRORS,
    Member,
    MemberRef,
    MemberStream,
    Want,
    clean_name,
    corrupt_archive,
    is_junk,
    link_problem,
    special_problem,
    strip_top,
)
from evaluator.io.sizes import human_size
from evaluator.io.sniff import ArchiveKind, detect_archive
from evaluator.protocol import Limits


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
            self.members = strip_top(self._listed)
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
            raise corrupt_archive(
                self.archive, exc.strerror or str(exc) or type(exc).__name__
            ) from None
        except READ_ERRORS as exc:
            raise corrupt_archive(self.archive, str(exc) or type(exc).__name__) from None

    def _list_folder(self) -> list[Member]:
        out = []
        for p in sorted(q for q in self.path.rglob("*") if q.is_file()):
            name = p.relative_to(self.path).as_posix()
            if not is_junk(name):
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
            name = clean_name(info.filename, self.archive)
            if isinstance(name, SubmissionError):
                self.problems.append(name)
                continue
            problem = None
            if stat.S_ISLNK(mode):
                problem = link_problem(info.filename, "symbolic link")
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: not recorded
                problem = special_problem(info.filename, "a device, FIFO or socket")
            elif info.flag_bits & 0x1:
                problem = (
                    f"member {info.filename!r} is encrypted; upload an archive without a password"
                )
            if problem is not None:
                self.problems.append(ArchiveError(self.archive, problem))
                continue
            if info.is_dir() or not name or is_junk(name):
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
                    f"member {m.name!r} is {human_size(m.size)} uncompressed, over the "
                    f"limit of {human_size(self.limits.max_member_bytes)} per file",
                )
            )
            return False
        self.wanted_bytes += m.size
        if self.wanted_bytes > self.limits.max_total_bytes:
            self.problems.append(
                LimitError(
                    self.archive,
                    f"the files to read expand to more than {human_size(self.limits.max_total_bytes)}"
                    " (the limit); compress the label maps (.nii.gz) and leave out files "
                    "that are not predictions",
                )
            )
            return False
        return True

    # -- reading ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[Member, MemberStream | None]]:
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
        self, it: Iterator[tuple[Member, MemberStream | None]]
    ) -> Iterator[tuple[Member, MemberStream | None]]:
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
                f"member {name!r} ({human_size(n)}) is not read by this task (not a file it "
                "accepts, a second copy, or larger than the task can take), and what it "
                f"does not read adds up to more than "
                f"{human_size(self.limits.max_unread_bytes)}: a .tar.gz must be inflated to "
                "skip them, so it is not read further; put only the prediction files in "
                "the archive",
            )
        )
        return False

    def _iter_tar(self) -> Iterator[tuple[Member, MemberStream | None]]:
        with contextlib.ExitStack() as stack:
            tf = self._open_tar(stack)
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
                m = self._tar_member(info)
                if m is None:
                    if not self._charge(info.name, info.size):
                        break
                    continue
                self.members.append(m)
                if self.problems or not self._take(m):
                    if not self._charge(m.name, info.size):
                        break
                    continue
                f = tf.extractfile(info)
                if f is None:  # pragma: no cover - a regular file always has a stream
                    continue
                stream = MemberStream(f, self.archive, m.name)
                yield m, stream
                if not self._charge(m.name, info.size - stream.tell()):
                    break
        self.members = strip_top(self.members)
        self._check_names()

    def _open_tar(self, stack: contextlib.ExitStack) -> tarfile.TarFile:
        if self.kind == "tar.gz":
            # inflated by GzipFile in bounded steps (tarfile's own gzip reader can
            # return 16 MB for a 16 KiB read of a bomb)
            gz = stack.enter_context(gzip.GzipFile(self.path, "rb"))
            return stack.enter_context(tarfile.open(fileobj=gz, mode="r|"))
        return stack.enter_context(tarfile.open(self.path, "r:"))

    def _tar_member(self, info: tarfile.TarInfo) -> Member | None:
        """The member for a regular file with a valid name, else None (folders, junk;
        bad names, links and special files are also recorded as problems)."""
        name = clean_name(info.name, self.archive)
        if isinstance(name, SubmissionError):
            self.problems.append(name)
            return None
        if info.issym() or info.islnk():
            kind = "symbolic link" if info.issym() else "hard link"
            self.problems.append(ArchiveError(self.archive, link_problem(info.name, kind)))
        elif not (info.isfile() or info.isdir()):
            self.problems.append(
                ArchiveError(
                    self.archive, special_problem(info.name, "a device, FIFO or other special file")
                )
            )
        if not info.isfile() or not name or is_junk(name):
            return None
        return Member(name, info.size, None)

    def finish(self) -> None:
        """Raise the archive-level problems, if any (after iteration)."""
        if self.problems:
            raise SubmissionRejected(self.problems)
