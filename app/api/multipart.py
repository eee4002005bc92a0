"""Streaming multipart upload: to disk in chunks, size cap enforced while streaming.

The body is parsed as it arrives (python-multipart's push parser); the ``file`` part
goes to a temporary file in the data dir's ``incoming/`` folder in 1 MiB writes, with
its SHA-256 computed on the way, so an upload is never held whole in memory. The
form fields that precede the file (``phase``, ``task``) let the service refuse a
submission (auth, closed phase, quota) before the file is read at all.

The archive type is checked by its magic bytes, never by its name. An algorithm
phase's upload may carry a second file part, ``model``, after ``file``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from anyio import to_thread
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request

from app.errors import BadRequest, TooLarge, UnsupportedType, problem
from evaluator.io.sizes import human_size
from evaluator.io.sniff import UnsupportedUpload, sniff_type

WRITE_CHUNK = 1 << 20
MAX_FIELD_BYTES = 4096
MAX_PARTS = 16
HEAD_BYTES = 512  # what the archive and table types are told from
SNIFF_BYTES = 4096  # what is kept of each file's start (an image tarball's first member)
FILE_FIELD = "file"


def upload_type(head: bytes, task: int) -> str:
    """``zip``, ``tar``, ``tar.gz`` or, for Task 2/3, ``csv``/``json``, from the upload's
    first bytes (:func:`evaluator.io.sniff.sniff_type`).

    Raises :class:`UnsupportedType` (415) with the evaluator's message, which a
    participant can act on.
    """
    try:
        return sniff_type(head[:HEAD_BYTES], task)
    except UnsupportedUpload as exc:
        raise UnsupportedType(exc.message, [problem(exc.message, kind=exc.kind)]) from None


@dataclass
class ReceivedFile:
    path: Path
    filename: str
    size: int
    sha256: str
    head: bytes
    form_name: str = FILE_FIELD


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


@dataclass
class _Incoming:
    """A file part on its way to disk."""

    form_name: str
    filename: str
    cap: int
    buf: bytearray = field(default_factory=bytearray)
    head: bytearray = field(default_factory=bytearray)
    size: int = 0
    sha: Any = field(default_factory=hashlib.sha256)
    fh: IO[bytes] | None = None
    path: Path | None = None
    done: bool = False  # all its bytes arrived
    closed: bool = False  # written, synced and closed


class _TooLarge(Exception):
    def __init__(self, part: _Incoming) -> None:
        super().__init__(part.form_name)
        self.part = part


class _BadForm(Exception):
    pass


def _clean_filename(raw: str) -> str:
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())
    return name[:255] or "upload"


def _unexpected_file(name: str) -> str:
    return f"unexpected file field {name!r}; send the archive as 'file'"


class MultipartReceiver:
    """Push-parses one multipart body: one file part named ``file`` and, when the caller
    allows them (:attr:`extra_file_fields`, e.g. ``{"model": cap}``), at most one part
    of each further name, sent after ``file``.

    ``max_file_bytes`` caps the ``file`` part; the caller may change it (and the
    further fields) in ``on_file_start``, once the fields sent before the file are
    known, and in ``on_head``, once the file's first bytes are."""

    def __init__(self, boundary: bytes, dest_dir: Path, max_file_bytes: int) -> None:
        self.dest_dir = dest_dir
        self.max_file_bytes = max_file_bytes
        self.extra_file_fields: dict[str, int] = {}
        self.unexpected_file: Callable[[str], str] = _unexpected_file
        # what a part over its cap is told, by field name and cap
        self.limit_message: Callable[[str, int], str] = _limit_message
        self.fields: dict[str, str] = {}
        self.file: ReceivedFile | None = None
        self.files: dict[str, ReceivedFile] = {}
        self._part: _Part | None = None
        self._hname = bytearray()
        self._hvalue = bytearray()
        self._n_parts = 0
        self._incoming: list[_Incoming] = []
        self._current: _Incoming | None = None
        self._started = False  # on_file_start was called
        self._head_seen = False  # on_head was called
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": lambda d, s, e: self._hname.extend(d[s:e]),
                "on_header_value": lambda d, s, e: self._hvalue.extend(d[s:e]),
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
            },
        )

    # -- parser callbacks (synchronous) ----------------------------------------------
    def _on_part_begin(self) -> None:
        self._n_parts += 1
        if self._n_parts > MAX_PARTS:
            raise _BadForm(f"too many form parts (at most {MAX_PARTS})")
        self._part = _Part()

    def _on_header_end(self) -> None:
        assert self._part is not None
        key = bytes(self._hname).decode("latin-1").strip().lower()
        self._part.headers[key] = bytes(self._hvalue).decode("latin-1").strip()
        self._hname.clear()
        self._hvalue.clear()

    def _on_headers_finished(self) -> None:
        part = self._part
        assert part is not None
        disp = part.headers.get("content-disposition", "")
        _, opts = parse_options_header(disp)
        part.name = opts.get(b"name", b"").decode("utf-8", errors="replace")
        fn = opts.get(b"filename")
        part.filename = fn.decode("utf-8", errors="replace") if fn is not None else None
        if part.filename is None:
            return
        seen = {p.form_name for p in self._incoming}
        if part.name == FILE_FIELD:
            if FILE_FIELD in seen:
                raise _BadForm("send exactly one file per submission")
            cap = self.max_file_bytes
        elif part.name in self.extra_file_fields:
            if FILE_FIELD not in seen:
                raise _BadForm(f"send the field 'file' before {part.name!r}")
            if part.name in seen:
                raise _BadForm(f"send at most one {part.name!r} file")
            cap = self.extra_file_fields[part.name]
        else:
            raise _BadForm(self.unexpected_file(part.name))
        self._current = _Incoming(part.name, _clean_filename(part.filename), cap)
        self._incoming.append(self._current)

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        assert part is not None
        chunk = data[start:end]
        inc = self._current
        if part.filename is not None and inc is not None:
            inc.size += len(chunk)
            if inc.size > inc.cap:
                raise _TooLarge(inc)
            if len(inc.head) < SNIFF_BYTES:
                inc.head.extend(chunk[: SNIFF_BYTES - len(inc.head)])
            inc.sha.update(chunk)
            inc.buf.extend(chunk)
        else:
            part.data.extend(chunk)
            if len(part.data) > MAX_FIELD_BYTES:
                raise _BadForm(f"form field {part.name!r} is longer than {MAX_FIELD_BYTES} bytes")

    def _on_part_end(self) -> None:
        part = self._part
        assert part is not None
        if part.filename is not None and self._current is not None:
            self._current.done = True
            self._current = None
        elif part.name:
            self.fields[part.name] = part.data.decode("utf-8", errors="replace").strip()
        self._part = None

    # -- driving ------------------------------------------------------------------------
    async def _open(self, inc: _Incoming) -> None:
        self.dest_dir.mkdir(parents=True, exist_ok=True)
        inc.path = self.dest_dir / f"{uuid.uuid4().hex}.part"
        inc.fh = await to_thread.run_sync(open, inc.path, "wb")

    async def _flush(self, inc: _Incoming, force: bool = False) -> None:
        if inc.fh is not None and inc.buf and (force or len(inc.buf) >= WRITE_CHUNK):
            data = bytes(inc.buf)
            inc.buf.clear()
            await to_thread.run_sync(inc.fh.write, data)

    async def _close(self, inc: _Incoming) -> None:
        await self._flush(inc, force=True)
        fh = inc.fh
        if fh is not None:

            def _close() -> None:
                fh.flush()
                os.fsync(fh.fileno())
                fh.close()

            await to_thread.run_sync(_close)
            inc.fh = None
        inc.closed = True

    async def _advance(
        self,
        on_file_start: Callable[[dict[str, str]], Awaitable[None]],
        on_head: Callable[[bytes, str], None] | None,
    ) -> None:
        """After a chunk was parsed: the callbacks that are due, then the writes."""
        for inc in self._incoming:
            if inc.form_name == FILE_FIELD:
                if not self._started:
                    self._started = True
                    await on_file_start(dict(self.fields))
                    inc.cap = self.max_file_bytes
                    self._recheck_extra_parts()
                if not self._head_seen and (len(inc.head) >= SNIFF_BYTES or inc.done):
                    self._head_seen = True
                    if on_head is not None:
                        on_head(bytes(inc.head), inc.filename)
                        inc.cap = self.max_file_bytes
                if inc.size > inc.cap:
                    raise _TooLarge(inc)
            if inc.fh is None and not inc.closed:
                await self._open(inc)
            await self._flush(inc)
            if inc.done and not inc.closed:
                await self._close(inc)

    def _recheck_extra_parts(self) -> None:
        """Further file parts parsed before ``on_file_start`` changed what is allowed:
        refused or capped as they would be now."""
        for inc in self._incoming:
            if inc.form_name == FILE_FIELD:
                continue
            if inc.form_name not in self.extra_file_fields:
                raise _BadForm(self.unexpected_file(inc.form_name))
            inc.cap = self.extra_file_fields[inc.form_name]
            if inc.size > inc.cap:
                raise _TooLarge(inc)

    def cleanup(self) -> None:
        for inc in self._incoming:
            if inc.fh is not None:
                with contextlib.suppress(OSError):
                    inc.fh.close()
                inc.fh = None
            if inc.path is not None:
                inc.path.unlink(missing_ok=True)

    async def receive(
        self,
        request: Request,
        on_file_start: Callable[[dict[str, str]], Awaitable[None]],
        on_head: Callable[[bytes, str], None] | None = None,
    ) -> None:
        """Read the body: ``on_file_start`` gets the fields sent before the file, before
        a byte of it is stored; ``on_head`` the file's first :data:`SNIFF_BYTES` bytes
        (fewer for a smaller file). Either may raise to refuse the upload."""
        try:
            async for chunk in request.stream():
                if not chunk:
                    continue
                self.parser.write(chunk)
                await self._advance(on_file_start, on_head)
            self.parser.finalize()
            await self._advance(on_file_start, on_head)
        except _TooLarge as e:
            self.cleanup()
            msg = self.limit_message(e.part.form_name, e.part.cap)
            raise TooLarge(msg, [problem(msg, kind="limit")]) from None
        except _BadForm as e:
            self.cleanup()
            raise BadRequest(str(e), [problem(str(e))]) from None
        except MultipartParseError as e:
            self.cleanup()
            msg = (
                f"the multipart/form-data body is malformed ({e}); send the fields phase, "
                "task and file as a standard form upload (e.g. curl -F)"
            )
            raise BadRequest(msg, [problem(msg)]) from None
        except ClientDisconnect:
            self.cleanup()
            raise
        except BaseException:
            self.cleanup()
            raise
        incomplete = [i for i in self._incoming if not i.closed or i.path is None]
        if FILE_FIELD not in {i.form_name for i in self._incoming} or incomplete:
            self.cleanup()
            msg = "the form has no complete 'file' part; send the archive as the field 'file'"
            raise BadRequest(msg, [problem(msg)])
        for inc in self._incoming:
            assert inc.path is not None
            self.files[inc.form_name] = ReceivedFile(
                path=inc.path,
                filename=inc.filename,
                size=inc.size,
                sha256=inc.sha.hexdigest(),
                head=bytes(inc.head),
                form_name=inc.form_name,
            )
        self.file = self.files[FILE_FIELD]


def _limit_message(field_name: str, cap: int) -> str:
    return (
        f"the upload is larger than the limit of {human_size(cap)}; "
        "remove files that are not predictions, or ask the organizers"
    )


def boundary_of(request: Request) -> bytes:
    ctype = request.headers.get("content-type", "")
    mime, opts = parse_options_header(ctype)
    if mime != b"multipart/form-data" or b"boundary" not in opts:
        msg = "send the submission as multipart/form-data with the fields file, task and phase"
        raise UnsupportedType(msg, [problem(msg)])
    return opts[b"boundary"]
