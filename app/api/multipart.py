"""Streaming multipart upload: to disk in chunks, size cap enforced while streaming.

The body is parsed as it arrives (python-multipart's push parser); the ``file`` part
goes to a temporary file in the data dir's ``incoming/`` folder in 1 MiB writes, with
its SHA-256 computed on the way, so an upload is never held whole in memory. The
form fields that precede the file (``phase``, ``task``) let the service refuse a
submission (auth, closed phase, quota) before the file is read at all.

The archive type is checked by its magic bytes, never by its name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

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
HEAD_BYTES = 512
FILE_FIELD = "file"


def upload_type(head: bytes, task: int) -> str:
    """``zip``, ``tar``, ``tar.gz`` or, for Task 2/3, ``csv``/``json``, from the upload's
    first bytes (:func:`evaluator.io.sniff.sniff_type`).

    Raises :class:`UnsupportedType` (415) with the evaluator's message, which a
    participant can act on.
    """
    try:
        return sniff_type(head, task)
    except UnsupportedUpload as exc:
        raise UnsupportedType(exc.message, [problem(exc.message, kind=exc.kind)]) from None


@dataclass
class ReceivedFile:
    path: Path
    filename: str
    size: int
    sha256: str
    head: bytes


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


class _TooLarge(Exception):
    pass


class _BadForm(Exception):
    pass


def _clean_filename(raw: str) -> str:
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())
    return name[:255] or "upload"


class MultipartReceiver:
    """Push-parses one multipart body; at most one file part named ``file``."""

    def __init__(self, boundary: bytes, dest_dir: Path, max_file_bytes: int) -> None:
        self.dest_dir = dest_dir
        self.max_file_bytes = max_file_bytes
        self.fields: dict[str, str] = {}
        self.file: ReceivedFile | None = None
        self._part: _Part | None = None
        self._hname = bytearray()
        self._hvalue = bytearray()
        self._n_parts = 0
        self._file_started = False
        self._file_open_pending = False
        self._buf = bytearray()
        self._size = 0
        self._head = bytearray()
        self._sha = hashlib.sha256()
        self._fh: IO[bytes] | None = None
        self._path: Path | None = None
        self._filename = ""
        self._file_done = False
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
        if part.filename is not None:
            if part.name != FILE_FIELD:
                raise _BadForm(f"unexpected file field {part.name!r}; send the archive as 'file'")
            if self._file_started:
                raise _BadForm("send exactly one file per submission")
            self._file_started = True
            self._file_open_pending = True
            self._filename = _clean_filename(part.filename)

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        assert part is not None
        chunk = data[start:end]
        if part.filename is not None:
            self._size += len(chunk)
            if self._size > self.max_file_bytes:
                raise _TooLarge()
            if len(self._head) < HEAD_BYTES:
                self._head.extend(chunk[: HEAD_BYTES - len(self._head)])
            self._sha.update(chunk)
            self._buf.extend(chunk)
        else:
            part.data.extend(chunk)
            if len(part.data) > MAX_FIELD_BYTES:
                raise _BadForm(f"form field {part.name!r} is longer than {MAX_FIELD_BYTES} bytes")

    def _on_part_end(self) -> None:
        part = self._part
        assert part is not None
        if part.filename is not None:
            self._file_done = True
        elif part.name:
            self.fields[part.name] = part.data.decode("utf-8", errors="replace").strip()
        self._part = None

    # -- driving ------------------------------------------------------------------------
    async def _open(self) -> None:
        self.dest_dir.mkdir(parents=True, exist_ok=True)
        self._path = self.dest_dir / f"{uuid.uuid4().hex}.part"
        self._fh = await to_thread.run_sync(open, self._path, "wb")

    async def _flush(self, force: bool = False) -> None:
        if self._fh is not None and self._buf and (force or len(self._buf) >= WRITE_CHUNK):
            data = bytes(self._buf)
            self._buf.clear()
            await to_thread.run_sync(self._fh.write, data)

    async def _finish(self) -> None:
        await self._flush(force=True)
        fh = self._fh
        if fh is not None:

            def _close() -> None:
                fh.flush()
                os.fsync(fh.fileno())
                fh.close()

            await to_thread.run_sync(_close)
            self._fh = None

    def cleanup(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)

    async def receive(
        self, request: Request, on_file_start: Callable[[dict[str, str]], Awaitable[None]]
    ) -> None:
        limit_msg = (
            f"the upload is larger than the limit of {human_size(self.max_file_bytes)}; "
            "remove files that are not predictions, or ask the organizers"
        )
        try:
            async for chunk in request.stream():
                if not chunk:
                    continue
                self.parser.write(chunk)
                if self._file_open_pending:
                    self._file_open_pending = False
                    await on_file_start(dict(self.fields))
                    await self._open()
                await self._flush()
            self.parser.finalize()
            await self._finish()
        except _TooLarge:
            self.cleanup()
            raise TooLarge(limit_msg, [problem(limit_msg, kind="limit")]) from None
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
        if not self._file_started or not self._file_done or self._path is None:
            self.cleanup()
            msg = "the form has no complete 'file' part; send the archive as the field 'file'"
            raise BadRequest(msg, [problem(msg)])
        self.file = ReceivedFile(
            path=self._path,
            filename=self._filename,
            size=self._size,
            sha256=self._sha.hexdigest(),
            head=bytes(self._head),
        )


def boundary_of(request: Request) -> bytes:
    ctype = request.headers.get("content-type", "")
    mime, opts = parse_options_header(ctype)
    if mime != b"multipart/form-data" or b"boundary" not in opts:
        msg = "send the submission as multipart/form-data with the fields file, task and phase"
        raise UnsupportedType(msg, [problem(msg)])
    return opts[b"boundary"]
