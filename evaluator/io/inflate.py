"""Exact-length reads from a binary stream, gzip-inflated (also multi-member),
zlib-inflated (a MetaImage's ``CompressedData``) or as stored, with bounds on the
compressed input consumed and a checksum check at the end (gzip CRC-32, zlib Adler-32).

zlib-ng decodes about 4x faster than zlib; zlib keeps the reader correct (just slower)
when zlib-ng is missing.
"""

from __future__ import annotations

import types
import zlib
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from evaluator.errors import FormatError

_zlib: types.ModuleType
try:  # zlib-ng is a dependency
    from zlib_ng import zlib_ng as _zlib
except ImportError:  # pragma: no cover
    _zlib = zlib
_ZLIB_ERRORS: tuple[type[BaseException], ...] = (zlib.error, _zlib.error)


_STEP = 256 * 1024  # inflate step
_IN_CHUNK = 64 * 1024  # compressed bytes taken from the stream at a time
TRAILING_LOOK = 1 << 20  # bytes inflated after the voxel data to reach the gzip CRC


Compression = Literal["none", "gzip", "zlib"]

_WBITS = {"gzip": 31, "zlib": 15}
_WHAT = {"none": "file", "gzip": "gzip stream", "zlib": "zlib stream"}


class ByteSource(Protocol):
    """What the readers need of a stream: a file opened "rb", an archive member."""

    def read(self, n: int = -1, /) -> bytes: ...


class GzipStream:
    """Exact-length reads of a label map's bytes from a binary stream: inflated from a
    gzip stream (``mode="gzip"``, also multi-member, a .nii.gz), from one zlib stream
    (``mode="zlib"``, a compressed MetaImage), or as stored (``mode="none"``).

    Compressed input is pulled 64 KiB at a time; ``max_in``, once set, bounds how much
    of it may be consumed (an encoder needs barely more than the bytes it encodes), so
    a stream of empty deflate blocks cannot keep the reader busy without output.

    A zlib stream is checked more strictly than a gzip one (a MetaImage says where its
    data ends): :meth:`finish` requires its end (and Adler-32) right after the declared
    data, nothing after it in the file, and ``expect_in`` compressed bytes when the
    header declares them (``CompressedDataSize``); ``base`` is where the compressed
    data starts in ``f``. ``strict_end`` refuses bytes after stored data too.
    """

    def __init__(
        self, f: ByteSource, name: str, *, mode: Compression, fix: str = "the .nii.gz file"
    ) -> None:
        self.f = f
        self.name = name
        self.mode: Compression = mode
        self.fix = fix  # what to re-create, in messages
        self.d: Any = _zlib.decompressobj(wbits=_WBITS[mode]) if mode != "none" else None
        self.data = b""  # compressed input taken from ``f`` and not yet consumed
        self.taken = 0  # bytes taken from ``f``
        self.produced = 0  # bytes returned by ``read``
        self.max_in: int | None = None
        self.base = 0  # zlib: bytes of ``f`` before the compressed data
        self.expect_in: int | None = None  # zlib: the declared compressed size
        self.strict_end = False

    @property
    def gzipped(self) -> bool:
        return self.mode == "gzip"

    def _fill(self) -> bool:
        chunk = self.f.read(_IN_CHUNK)
        if not chunk:
            return False
        self.taken += len(chunk)
        if self.max_in is not None and self.taken > self.max_in:
            if self.expect_in is not None:
                raise FormatError(
                    self.name,
                    f"the file holds more than the {self.expect_in:,} bytes of compressed "
                    f"data its header declares (CompressedDataSize); re-create {self.fix}",
                )
            raise FormatError(
                self.name,
                f"the {_WHAT[self.mode]} is longer than any encoding of the data its header "
                f"declares (more than {self.max_in:,} compressed bytes consumed, "
                f"{self.produced:,} bytes produced); re-create {self.fix}",
            )
        self.data = self.data + chunk if self.data else chunk
        return True

    def _inflate(self, n: int) -> bytes:
        """At most ``n`` bytes from the current member (never fed once it ended)."""
        if self.d.eof:
            return b""
        out: bytes = self.d.decompress(self.data, n)
        self.data = self.d.unused_data if self.d.eof else self.d.unconsumed_tail
        return out

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only where the stream ends."""
        if self.mode == "none":
            parts = []
            need = n
            while need > 0:
                b = self.f.read(min(need, _STEP))
                if not b:
                    break
                parts.append(b)
                need -= len(b)
            self.produced += n - need
            return parts[0] if len(parts) == 1 else b"".join(parts)
        parts = []
        need = n
        try:
            while need > 0:
                out = self._inflate(need)
                if out:
                    parts.append(out)
                    need -= len(out)
                    if need == 0:
                        break  # a member that just ended stays the current one (finish)
                if self.d.eof:
                    if self.mode == "zlib":
                        break  # one zlib stream: what follows is checked by finish
                    if not self.data and not self._fill():
                        break  # the last member ended
                    self.d = _zlib.decompressobj(wbits=31)  # the next member
                elif not out and not self.data and not self._fill():
                    break  # cut off inside a member
        except _ZLIB_ERRORS as exc:
            raise self._corrupt(exc) from None
        self.produced += n - need
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def skip(self, n: int) -> int:
        """Discard ``n`` bytes (in steps); the number discarded."""
        done = 0
        while done < n:
            b = self.read(min(_STEP, n - done))
            if not b:
                break
            done += len(b)
        return done

    def read_into(self, out: npt.NDArray[np.uint8]) -> int:
        """Fill ``out`` from the stream in 256 KiB steps; the number of bytes written.

        Decoding in steps into one preallocated NumPy buffer is about twice as fast as
        a one-shot decompress: a fresh 50-80 MB ``bytes`` object costs more in page
        faults than the inflation itself, while NumPy's large buffers get huge pages.
        """
        pos = 0
        while pos < out.size:
            b = self.read(min(_STEP, out.size - pos))
            if not b:
                break
            out[pos : pos + len(b)] = np.frombuffer(b, dtype=np.uint8)
            pos += len(b)
        return pos

    def finish(self, declared: int, *, unread: int = 0) -> None:
        """After the voxel data: read on to the end of the gzip member that holds its
        last bytes, where zlib checks the member's CRC-32 (a corrupt file can inflate
        to plausible labels), looking at most TRAILING_LOOK bytes beyond the data.

        A member that goes on for longer is refused: its CRC cannot be checked without
        inflating data no label map needs. What follows the member (another gzip member,
        anything) is never read. An uncompressed file's bytes after the voxel data are
        never read either (unless ``strict_end``); a zlib stream is checked by
        :meth:`_finish_zlib`. ``unread``: bytes after the data already read with the
        header (stored data)."""
        if self.mode == "none":
            if self.strict_end and (unread or self.f.read(1)):
                raise FormatError(
                    self.name,
                    f"the file holds more data than its header declares ({declared:,} bytes "
                    f"of header and voxel data, then more); check DimSize and ElementType, "
                    f"or re-create {self.fix}",
                )
            return
        if self.mode == "zlib":
            self._finish_zlib(declared)
            return
        budget = TRAILING_LOOK
        try:
            while not self.d.eof:
                extra = self._inflate(min(_STEP, budget + 1))
                budget -= len(extra)
                if budget < 0:
                    raise FormatError(
                        self.name,
                        f"the file holds more data than its header declares: the gzip "
                        f"stream goes on for more than {TRAILING_LOOK >> 20:,} MiB after the "
                        f"{declared:,} bytes of header and voxel data; save the label map "
                        "again (a .nii.gz ends with its voxel data)",
                    )
                if not extra and not self.data and not self._fill():
                    return  # cut off after the voxel data: nothing left to check
        except _ZLIB_ERRORS as exc:
            raise gzip_corrupt(self.name, exc) from None

    def _finish_zlib(self, declared: int) -> None:
        """The zlib stream ends right after the declared data (its Adler-32 checked by
        zlib there), the file right after the stream, and the stream's length is the
        declared ``expect_in``."""
        try:
            while not self.d.eof:
                if self._inflate(1):
                    raise FormatError(
                        self.name,
                        f"the file holds more data than its header declares: the zlib "
                        f"stream goes on after the {declared - self.base:,} bytes of voxel data that "
                        f"DimSize and ElementType declare; check them, or re-create {self.fix}",
                    )
                if self.d.eof:
                    break
                if not self.data and not self._fill():
                    raise FormatError(
                        self.name,
                        "the file is truncated: the zlib stream stops before its end (the "
                        f"Adler-32 checksum) after the voxel data; upload the complete file "
                        f"or re-create {self.fix}",
                    )
        except _ZLIB_ERRORS as exc:
            raise self._corrupt(exc) from None
        consumed = self.taken - len(self.data) - self.base
        after = len(self.data) + len(self.f.read(1))
        if self.expect_in is not None and consumed != self.expect_in:
            raise FormatError(
                self.name,
                f"the header declares CompressedDataSize = {self.expect_in:,}, the zlib "
                f"stream is {consumed:,} bytes long; re-create {self.fix}",
            )
        if after:
            raise FormatError(
                self.name,
                f"trailing data after the end of the zlib stream ({consumed:,} compressed "
                f"bytes): the file must end with its compressed voxel data; re-create {self.fix}",
            )

    def _corrupt(self, exc: BaseException) -> FormatError:
        if self.mode == "gzip":
            return gzip_corrupt(self.name, exc)
        return FormatError(
            self.name,
            f"the zlib-compressed voxel data is corrupt ({exc}); re-create {self.fix} and "
            "upload it again",
        )


def gzip_corrupt(name: str, exc: BaseException) -> FormatError:
    return FormatError(
        name,
        f"the gzip data is corrupt ({exc}); re-create the .nii.gz file and upload it again",
    )


def input_bound(nbytes: int) -> int:
    """The most compressed bytes a gzip encoding of ``nbytes`` bytes may take, with room
    to spare: stored deflate blocks add 5 bytes per 64 KiB, a BGZF member 26 bytes per
    64 KiB, a gzip header its file name; we allow 1/64 of the data plus 1 MiB."""
    return nbytes + nbytes // 64 + (1 << 20)
