"""Container image and model tarballs, checked before any container runtime sees them.

:func:`check_image_tarball` reads an uploaded ``docker save`` / ``podman save`` tarball
or OCI archive (``.tar`` or ``.tar.gz``) once, as a stream: the uncompressed bytes are
counted while they are read (gzip layers inside it at their expanded size too), so a
gzip bomb stops at the cap; every member must be a regular file or a directory (or a
link that stays inside), with a relative name and no ``..``; the layout must hold
exactly one image whose config and layers are present; the config must describe a
Linux image for this machine's architecture with an Entrypoint or a Cmd. Small JSON
members are kept in memory while streaming (a config may come after the layers) and the
layout is checked at the end.

:func:`check_model_tarball` and :func:`extract_model` apply the member rules to a
model tarball (``.tar`` or ``.tar.gz``), the second with ``tarfile``'s ``"data"``
filter semantics: no links out of the destination, no devices, no owners, no setuid.

What podman 4.3 writes: ``podman save`` (docker-archive) puts each layer first as
``<digest>.tar``, then the config ``<digest>.json``, a folder per layer whose
``layer.tar`` is a symlink to ``../<digest>.tar``, ``manifest.json`` and
``repositories`` last; ``--format oci-archive`` writes ``blobs/sha256/*`` (gzip layers,
the config, the manifest), ``index.json`` and ``oci-layout``. Docker 25+ writes both
layouts in one tar (read here as docker-save).

Every refusal is a :class:`TarballProblem` whose message names the uploaded file, the
problem and the fix; never a path of the server.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from evaluator.io.sizes import human_size

READ_CHUNK = 1 << 20
# JSON members kept in memory while streaming: each at most, and all of them together
SMALL_JSON_BYTES = 4 << 20
SMALL_JSON_TOTAL = 64 << 20
MAX_MEMBERS = 100_000
MAX_LINK_HOPS = 32
GZIP_MAGIC = b"\x1f\x8b"

SAVE_HINT = "`docker save myalgo:latest -o algo.tar` (or `podman save`)"
SLIM_HINT = "make the image smaller (a slimmer base, no build caches, no data baked in)"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ARCH_ALIASES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)

Layout = Literal["docker-save", "oci"]


class TarballProblem(Exception):
    """An uploaded tarball that cannot be used. ``message`` names the file, the problem
    and the fix; ``problems`` lists every problem found (the message is the first)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or [message]


@dataclass(frozen=True, kw_only=True)
class TarballInfo:
    """What an image tarball holds, as read from it."""

    layout: Layout
    compressed: bool
    # the tar stream's bytes, gzip-compressed layers counted at their expanded size
    uncompressed_bytes: int
    config_digest: str  # "sha256:<hex>" of the image config
    image_id: str  # the config digest's hex: the id docker and podman give the image
    architecture: str
    os: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    repo_tags: tuple[str, ...]
    n_layers: int


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    compressed: bool
    uncompressed_bytes: int
    n_files: int


def host_architecture() -> str:
    """This machine's architecture in the images' spelling (``amd64``, ``arm64``)."""
    machine = platform.machine().lower()
    return _ARCH_ALIASES.get(machine, machine)


# -- sniffing an upload's first bytes ----------------------------------------------------
def _tar_checksum_ok(block: bytes) -> bool:
    try:
        want = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    got = sum(block[:148]) + 8 * 32 + sum(block[156:512])
    return want == got


def _first_member_name(data: bytes) -> str | None:
    """The first member's name in the tar bytes ``data`` (PAX and GNU long names
    followed while the bytes last), or None when ``data`` does not start a tar."""
    pos = 0
    long_name: str | None = None
    for _ in range(8):
        block = data[pos : pos + 512]
        if len(block) < 512 or not block.strip(b"\0"):
            return None
        if block[257:262] != b"ustar" and not _tar_checksum_ok(block):
            return None
        try:
            size = int(block[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        except ValueError:
            return None
        kind = block[156:157]
        body = data[pos + 512 : pos + 512 + size]
        if kind in (b"x", b"g", b"L"):
            if kind == b"L":
                long_name = body.split(b"\0", 1)[0].decode("utf-8", "replace")
            elif kind == b"x":
                m = re.search(rb"\d+ path=([^\n]*)\n", body)
                if m:
                    long_name = m.group(1).decode("utf-8", "replace")
            pos += 512 + (size + 511) // 512 * 512
            continue
        if long_name is not None:
            return long_name
        name = block[:100].split(b"\0", 1)[0]
        prefix = block[345:500].split(b"\0", 1)[0] if block[257:262] == b"ustar" else b""
        full = prefix + b"/" + name if prefix else name
        return full.decode("utf-8", "replace")
    return None


def _is_image_member(name: str) -> bool:
    name = name.removeprefix("./")
    top = name.partition("/")[0]
    if name in ("manifest.json", "oci-layout", "index.json", "repositories"):
        return True
    if top == "blobs":
        return True
    return bool(_HEX64.fullmatch(top.removesuffix(".tar").removesuffix(".json")))


def sniff_image_tarball(head: bytes) -> Literal["tar", "tar.gz"] | None:
    """``tar`` or ``tar.gz`` when the first bytes of an upload (4 KiB are enough) are a
    container image tarball: a tar, or a gzip of a tar, whose first member is one of
    what ``docker save``, ``podman save`` and OCI archives put first (``manifest.json``,
    ``oci-layout``, ``index.json``, ``blobs/``, ``repositories``, a layer named by its
    64-hex digest). None for anything else."""
    data = head
    kind: Literal["tar", "tar.gz"] = "tar"
    if head.startswith(GZIP_MAGIC):
        kind = "tar.gz"
        try:
            data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 1 << 16)
        except zlib.error:
            return None
    name = _first_member_name(data)
    return kind if name is not None and _is_image_member(name) else None


def describe_upload(head: bytes) -> str:
    """What an upload that is no image tarball is, from its first bytes, for messages
    ("a .zip archive", "a tar archive whose first member is 'CHUM-001.nii.gz'")."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "a .zip archive"
    data, packed = head, ""
    if head.startswith(GZIP_MAGIC):
        packed = "gzip-compressed "
        try:
            data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 1 << 16)
        except zlib.error:
            return "damaged gzip data"
    name = _first_member_name(data)
    if name is not None:
        return f"a {packed}tar archive whose first member is {name[:120]!r}"
    if packed:
        return "a gzip-compressed file that is not a tar archive"
    text = head[:512].lstrip()
    if text[:1] in (b"{", b"[") or b"PatientID" in text:
        return "a table (CSV or JSON)"
    return "neither a tar archive nor a gzip of one"


# -- streaming reader with a cap ---------------------------------------------------------
class _OverCap(Exception):
    pass


class _Damaged(Exception):
    pass


class _Counter:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.n = 0

    def add(self, n: int) -> None:
        self.n += n
        if self.n > self.max_bytes:
            raise _OverCap()


class _CappedStream:
    """The tar bytes of a file (gunzipped when it is a gzip), read forwards only, every
    byte handed out counted against the cap."""

    def __init__(self, f: IO[bytes], *, gz: bool, counter: _Counter) -> None:
        self._f = f
        self._counter = counter
        self._d: Any = zlib.decompressobj(16 + zlib.MAX_WBITS) if gz else None
        self._pending = b""  # compressed bytes not yet given to the decompressor
        self._done = False

    def read(self, n: int = -1) -> bytes:
        n = READ_CHUNK if n is None or n < 0 else n
        out = self._read_raw(n) if self._d is None else self._read_gz(n)
        self._counter.add(len(out))
        return out

    def _read_raw(self, n: int) -> bytes:
        return self._f.read(n)

    def _read_gz(self, n: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < n and not self._done:
            d = self._d
            if d.unconsumed_tail:
                data = d.unconsumed_tail
            else:
                data = self._pending or self._f.read(READ_CHUNK)
                self._pending = b""
                if not data:
                    if not d.eof:
                        raise _Damaged("cut")
                    self._done = True
                    break
            try:
                chunk = d.decompress(data, n - got)
            except zlib.error:
                raise _Damaged("gzip") from None
            parts.append(chunk)
            got += len(chunk)
            if d.eof:
                rest = d.unused_data or self._f.read(READ_CHUNK)
                if rest.startswith(GZIP_MAGIC):  # a further gzip member
                    self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    self._pending = rest
                else:  # end of the stream (trailing bytes are ignored, as gzip does)
                    self._done = True
        return b"".join(parts)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


# -- member rules ----------------------------------------------------------------------
def _clean_name(name: str) -> list[str] | None:
    """The name's parts without ``.`` and empty ones; None when it is absolute or
    holds ``..``."""
    if name.startswith("/") or "\\" in name or "\0" in name:
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    return parts


def _link_target(member_parts: list[str], linkname: str, *, hard: bool) -> str | None:
    """Where a link points, as a name inside the tarball; None when it points outside.
    A symlink is relative to its own folder, a hard link to the tarball's root."""
    if linkname.startswith("/"):
        return None
    base = [] if hard else member_parts[:-1]
    out = list(base)
    for p in linkname.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not out:
                return None
            out.pop()
        else:
            out.append(p)
    return "/".join(out)


_MEMBER_KIND = {
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a named pipe",
}


class _Walk:
    """What one pass over a tarball's members saw."""

    def __init__(self) -> None:
        self.files: dict[str, int] = {}  # regular files: name -> size
        self.dirs: set[str] = set()
        self.links: dict[str, str] = {}  # link name -> target name
        self.small: dict[str, bytes] = {}  # small JSON members
        self.small_total = 0
        self.gz_members: set[str] = set()
        self.first_names: list[str] = []

    def resolve(self, name: str) -> str | None:
        """The regular file or folder ``name`` ends at through links; None when it ends
        nowhere or loops."""
        for _ in range(MAX_LINK_HOPS):
            if name in self.files or name in self.dirs:
                return name
            if name not in self.links:
                return None
            name = self.links[name]
        return None


def _refuse_member(label: str, m: tarfile.TarInfo, problem: str, fix: str) -> TarballProblem:
    return TarballProblem(f"{label}: its member {m.name!r} {problem}; {fix}")


def _walk(
    path: Path,
    label: str,
    *,
    max_bytes: int,
    what: str,
    keep_json: bool,
    count_gz_layers: bool,
) -> tuple[_Walk, bool, int]:
    """Stream through the tarball at ``path``: the members seen, whether it was
    gzip-compressed, and its uncompressed bytes. Raises :class:`TarballProblem`."""
    gz = _is_gzip(path)
    counter = _Counter(max_bytes)
    walk = _Walk()
    fix_resave = f"save it again with {SAVE_HINT}" if what == "image" else "pack it again"
    try:
        with _tar_stream(path, label, gz, what, counter) as tf:
            for m in _members(tf, label):
                _visit(tf, m, walk, label, counter, keep_json, count_gz_layers)
    except _OverCap:
        size = path.stat().st_size
        over = (
            f"is {human_size(size)}"
            if not gz and size > max_bytes
            else f"is more than {human_size(max_bytes)} uncompressed (reading stopped there)"
        )
        limit = "the phase's image limit" if what == "image" else "the limit"
        fix = SLIM_HINT if what == "image" else "make the model smaller"
        raise TarballProblem(
            f"{label}: {over}, over {limit} of {human_size(max_bytes)}; {fix}"
        ) from None
    except _Damaged as e:
        problem = (
            "is cut short (the gzip stream ends early)"
            if str(e) == "cut"
            else "is damaged gzip data"
        )
        raise TarballProblem(f"{label}: {problem}; upload it again, or {fix_resave}") from None
    except tarfile.TarError as e:
        raise TarballProblem(
            f"{label}: {_tar_damage(e)}; upload it again, or {fix_resave}"
        ) from None
    return walk, gz, counter.n


@contextlib.contextmanager
def _tar_stream(
    path: Path, label: str, gz: bool, what: str, counter: _Counter
) -> Iterator[tarfile.TarFile]:
    """The file at ``path`` read as a tar, forwards only (``r|``), every byte counted."""
    if path.stat().st_size == 0:
        raise TarballProblem(f"{label}: is empty; {_make_hint(what)}")
    with open(path, "rb") as f:
        try:
            tf = tarfile.open(  # type: ignore[call-overload]  # noqa: SIM115 - closed below
                fileobj=_CappedStream(f, gz=gz, counter=counter), mode="r|"
            )
        except tarfile.ReadError:
            found = "a gzip of something that is not a tar archive" if gz else "not a tar archive"
            raise TarballProblem(f"{label}: is {found}; {_make_hint(what)}") from None
        with tf:
            yield tf
            # a tar ends with a block of zeros; a stream that ends before one was cut short
            if tf.fileobj.pos < tf.offset + tarfile.BLOCKSIZE:
                raise TarballProblem(
                    f"{label}: is cut short (the tar archive ends early); upload it again"
                )


def _tar_damage(e: tarfile.TarError) -> str:
    if "unexpected end of data" in str(e):
        return "is cut short (the tar archive ends early)"
    return f"is a damaged tar archive ({e})"


def _make_hint(what: str) -> str:
    if what == "image":
        return f"save the image with {SAVE_HINT}"
    return "pack the model folder with `tar -czf model.tar.gz -C model .`"


def _visit(
    tf: tarfile.TarFile,
    m: tarfile.TarInfo,
    walk: _Walk,
    label: str,
    counter: _Counter,
    keep_json: bool,
    count_gz_layers: bool,
) -> None:
    parts = _clean_name(m.name)
    if parts is None:
        raise _refuse_member(
            label,
            m,
            "has an absolute name or one with '..'",
            "archives must hold relative names only; pack it again from inside its folder",
        )
    name = "/".join(parts)
    if len(walk.first_names) < 20:
        walk.first_names.append(name)
    if m.isdir():
        if name:
            walk.dirs.add(name)
        return
    if not name:
        raise _refuse_member(label, m, "has no name", "pack it again")
    if m.issym() or m.islnk():
        target = _link_target(parts, m.linkname, hard=m.islnk())
        if target is None:
            raise _refuse_member(
                label,
                m,
                f"is a link to {m.linkname!r}, outside the archive",
                "links may only point inside the archive; replace the link by the file",
            )
        if m.islnk() and target not in walk.files:
            raise _refuse_member(
                label,
                m,
                f"is a hard link to {m.linkname!r}, which is not an earlier file of the archive",
                "replace the link by the file",
            )
        walk.links[name] = target
        return
    if not m.isreg():
        what = _MEMBER_KIND.get(m.type, f"of tar type {m.type!r}")
        raise _refuse_member(
            label,
            m,
            f"is {what}",
            "only regular files, folders and links inside are accepted",
        )
    walk.files[name] = m.size
    walk.links.pop(name, None)
    fh = tf.extractfile(m)
    if fh is None:
        return
    first = fh.read(min(m.size, READ_CHUNK))
    if keep_json and m.size <= SMALL_JSON_BYTES and first.lstrip()[:1] in (b"{", b"["):
        data = first + fh.read()
        walk.small_total += len(data)
        if walk.small_total > SMALL_JSON_TOTAL:
            raise TarballProblem(
                f"{label}: holds more than {human_size(SMALL_JSON_TOTAL)} of JSON "
                f"metadata; save it again with {SAVE_HINT}"
            )
        walk.small[name] = data
        return
    if count_gz_layers and first.startswith(GZIP_MAGIC):
        walk.gz_members.add(name)
        _count_gzip_member(fh, first, m, label, counter)
        return
    while fh.read(READ_CHUNK):
        pass


def _count_gzip_member(
    fh: IO[bytes], first: bytes, m: tarfile.TarInfo, label: str, counter: _Counter
) -> None:
    """Count a gzip-compressed layer at its expanded size (minus its compressed bytes,
    already counted), without holding more than one chunk of it."""
    d: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = first
    while data:
        counter.n -= len(data)  # counted by the stream; its expansion counts instead
        try:
            while data:
                out = d.decompress(data, READ_CHUNK)
                counter.add(len(out))
                data = d.unconsumed_tail
                if d.eof:
                    rest = d.unused_data
                    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    data = rest if rest.startswith(GZIP_MAGIC) else b""
        except zlib.error:
            raise _refuse_member(
                label,
                m,
                "is a layer of damaged gzip data",
                f"save the image again with {SAVE_HINT}",
            ) from None
        data = fh.read(READ_CHUNK)


# -- images ---------------------------------------------------------------------------
def _json(walk: _Walk, name: str, label: str, what: str) -> Any:
    data = walk.small.get(name)
    if data is None:
        raise TarballProblem(
            f"{label}: its {what} {name!r} is not JSON of at most "
            f"{human_size(SMALL_JSON_BYTES)}; save the image again with {SAVE_HINT}"
        )
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise TarballProblem(
            f"{label}: its {what} {name!r} is not valid JSON; save the image again with {SAVE_HINT}"
        ) from None


def _n_images(n: int) -> str:
    return f"{n} images" if n != 1 else "1 image"


def _docker_save(walk: _Walk, label: str) -> tuple[bytes, list[str], list[str]]:
    """The config bytes, the layer names and the repo tags of a docker-save layout."""
    manifest = _json(walk, "manifest.json", label, "manifest")
    if not isinstance(manifest, list) or not all(isinstance(e, dict) for e in manifest):
        raise TarballProblem(
            f"{label}: its manifest.json is not a list of images; save the image again "
            f"with {SAVE_HINT}"
        )
    if len(manifest) != 1:
        problem = "holds no image" if not manifest else f"holds {_n_images(len(manifest))}"
        raise TarballProblem(f"{label}: {problem}; save exactly one: {SAVE_HINT}")
    entry = manifest[0]
    config_ref = entry.get("Config")
    layers = entry.get("Layers")
    if not isinstance(config_ref, str) or not isinstance(layers, list):
        raise TarballProblem(
            f"{label}: its manifest.json names no Config or no Layers; save the image again "
            f"with {SAVE_HINT}"
        )
    config_name = _resolve_ref(walk, config_ref)
    if config_name is None or config_name not in walk.files:
        raise TarballProblem(
            f"{label}: its manifest.json names the image config {config_ref!r}, which the "
            f"tarball does not hold; save the image again with {SAVE_HINT}"
        )
    missing = [str(x) for x in layers if _layer_missing(walk, x)]
    if missing:
        raise TarballProblem(
            f"{label}: its manifest.json names {len(missing)} layer(s) the tarball does not "
            f"hold (first {missing[0]!r}); save the image again with {SAVE_HINT}"
        )
    if not layers:
        raise TarballProblem(f"{label}: the image has no layers; save it again with {SAVE_HINT}")
    tags = entry.get("RepoTags") or []
    config = walk.small.get(config_name)
    if config is None:
        _json(walk, config_name, label, "image config")
    assert config is not None
    return config, [str(x) for x in layers], [str(t) for t in tags if isinstance(t, str)]


def _resolve_ref(walk: _Walk, ref: str) -> str | None:
    parts = _clean_name(ref)
    return walk.resolve("/".join(parts)) if parts else None


def _layer_missing(walk: _Walk, ref: Any) -> bool:
    if not isinstance(ref, str):
        return True
    name = _resolve_ref(walk, ref)
    return name is None or name not in walk.files


def _blob_name(digest: Any) -> str | None:
    if not isinstance(digest, str) or ":" not in digest:
        return None
    alg, _, hexpart = digest.partition(":")
    if not re.fullmatch(r"[a-z0-9]+", alg) or not re.fullmatch(r"[0-9a-fA-F]{32,128}", hexpart):
        return None
    return f"blobs/{alg}/{hexpart}"


def _blob_json(walk: _Walk, digest: Any, label: str, what: str) -> tuple[Any, bytes]:
    name = _blob_name(digest)
    resolved = walk.resolve(name) if name else None
    if resolved is None or resolved not in walk.files:
        raise TarballProblem(
            f"{label}: its {what} {digest!r} is not in the tarball; save the image again "
            f"with {SAVE_HINT}"
        )
    doc = _json(walk, resolved, label, what)
    data = walk.small[resolved]
    alg, _, want = str(digest).partition(":")
    if alg == "sha256" and hashlib.sha256(data).hexdigest() != want.lower():
        raise TarballProblem(
            f"{label}: its {what} does not match its digest {digest}: the tarball is "
            f"damaged; save the image again with {SAVE_HINT}"
        )
    return doc, data


def _platform_ok(desc: dict[str, Any]) -> bool:
    p = desc.get("platform")
    if not isinstance(p, dict):
        return True
    arch = _ARCH_ALIASES.get(str(p.get("architecture", "")).lower(), p.get("architecture"))
    return p.get("os") in (None, "linux") and arch in (None, host_architecture())


def _oci(walk: _Walk, label: str) -> tuple[bytes, list[str], list[str]]:
    """The config bytes, the layer names and the names of an OCI archive."""
    _json(walk, "oci-layout", label, "oci-layout file")
    index = _json(walk, "index.json", label, "index")
    tags: list[str] = []
    for depth in range(3):
        entries = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise TarballProblem(
                f"{label}: its index lists no manifests; save the image again with {SAVE_HINT}"
            )
        if depth == 0 and len(entries) != 1:
            problem = "holds no image" if not entries else f"holds {_n_images(len(entries))}"
            raise TarballProblem(f"{label}: {problem}; save exactly one: {SAVE_HINT}")
        if depth > 0:
            # an index of platforms: the ones whose manifest the archive holds, for here
            present = [e for e in entries if _blob_name(e.get("digest")) in walk.files]
            entries = [e for e in present if _platform_ok(e)] or present
            if len(entries) != 1:
                raise TarballProblem(
                    f"{label}: holds the image for {len(entries) or 'no'} platforms "
                    f"instead of one; save only the linux/{host_architecture()} image: "
                    f"`docker save --platform linux/{host_architecture()} myalgo:latest -o "
                    f"algo.tar`"
                )
        desc = entries[0]
        for key in ("org.opencontainers.image.ref.name", "io.containerd.image.name"):
            ref = (desc.get("annotations") or {}).get(key)
            if isinstance(ref, str) and ref not in tags:
                tags.append(ref)
        doc, _ = _blob_json(walk, desc.get("digest"), label, "manifest")
        if desc.get("mediaType") in _INDEX_TYPES or doc.get("mediaType") in _INDEX_TYPES:
            index = doc
            continue
        config_desc = doc.get("config") if isinstance(doc, dict) else None
        layers = doc.get("layers") if isinstance(doc, dict) else None
        if not isinstance(config_desc, dict) or not isinstance(layers, list):
            raise TarballProblem(
                f"{label}: its image manifest names no config or no layers; save the image "
                f"again with {SAVE_HINT}"
            )
        _, config = _blob_json(walk, config_desc.get("digest"), label, "image config")
        names = [_blob_name(x.get("digest")) if isinstance(x, dict) else None for x in layers]
        missing = [n for n in names if n is None or walk.resolve(n) not in walk.files]
        if missing:
            raise TarballProblem(
                f"{label}: its manifest names {len(missing)} layer(s) the tarball does not "
                f"hold; save the image again with {SAVE_HINT}"
            )
        if not layers:
            raise TarballProblem(
                f"{label}: the image has no layers; save it again with {SAVE_HINT}"
            )
        return config, [n for n in names if n], tags
    raise TarballProblem(f"{label}: its index nests too deep; save one image with {SAVE_HINT}")


def _str_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return ()


def _not_an_image(walk: _Walk, label: str) -> TarballProblem:
    names = walk.first_names
    tops = {n.split("/", 1)[0] for n in [*walk.files, *walk.dirs]}
    if {"bin", "etc", "usr"} <= tops or {"etc", "usr"} <= tops:
        found = "a container's file system (`docker export`), not a saved image"
    elif any(n.endswith((".nii.gz", ".nii", ".mha")) for n in names):
        found = "images or predictions, not a saved container image"
    else:
        found = (
            "a tar archive without manifest.json (docker save) or oci-layout and index.json (OCI)"
        )
    return TarballProblem(f"{label}: is {found}; save the image with {SAVE_HINT}")


def check_image_tarball(path: Path, *, max_bytes: int, name: str | None = None) -> TarballInfo:
    """Check the image tarball at ``path`` (``name``: what the participant called it,
    used in messages) without loading it; raises :class:`TarballProblem`."""
    label = name or Path(path).name
    walk, gz, total = _walk(
        Path(path), label, max_bytes=max_bytes, what="image", keep_json=True, count_gz_layers=True
    )
    if "manifest.json" in walk.files:
        layout: Layout = "docker-save"
        config_bytes, layers, tags = _docker_save(walk, label)
    elif "index.json" in walk.files and "oci-layout" in walk.files:
        layout = "oci"
        config_bytes, layers, tags = _oci(walk, label)
    else:
        raise _not_an_image(walk, label)
    try:
        config = json.loads(config_bytes)
    except (ValueError, UnicodeDecodeError):
        config = None
    if not isinstance(config, dict):
        raise TarballProblem(
            f"{label}: its image config is not a JSON object; save the image again with {SAVE_HINT}"
        )
    arch = str(config.get("architecture") or "")
    os_name = str(config.get("os") or "")
    run_config = config.get("config")
    run: dict[str, Any] = run_config if isinstance(run_config, dict) else {}
    entrypoint = _str_list(run.get("Entrypoint"))
    cmd = _str_list(run.get("Cmd"))
    host = host_architecture()
    problems: list[str] = []
    if _ARCH_ALIASES.get(arch.lower(), arch) != host:
        built = f"was built for {arch}" if arch else "names no architecture"
        problems.append(
            f"{label}: the image {built}; the judges run linux/{host} images: build it with "
            f"`docker build --platform linux/{host} ...` (or `podman build --arch {host}`)"
        )
    if os_name != "linux":
        built = f"is for {os_name}" if os_name else "names no operating system"
        problems.append(
            f"{label}: the image {built}; the judges run Linux images: build it FROM a Linux "
            f"base image"
        )
    if not entrypoint and not cmd:
        problems.append(
            f"{label}: the image has neither an ENTRYPOINT nor a CMD, so the judges cannot "
            f'start it; add e.g. `ENTRYPOINT ["python", "/opt/app/inference.py"]` to its '
            f"Dockerfile and build it again"
        )
    if problems:
        raise TarballProblem(problems[0], problems)
    digest = hashlib.sha256(config_bytes).hexdigest()
    return TarballInfo(
        layout=layout,
        compressed=gz,
        uncompressed_bytes=total,
        config_digest=f"sha256:{digest}",
        image_id=digest,
        architecture=_ARCH_ALIASES.get(arch.lower(), arch),
        os=os_name,
        entrypoint=entrypoint,
        cmd=cmd,
        repo_tags=tuple(tags),
        n_layers=len(layers),
    )


# -- models ---------------------------------------------------------------------------
def check_model_tarball(path: Path, *, max_bytes: int, name: str | None = None) -> ModelInfo:
    """Check that the model tarball at ``path`` is a readable tar (or tar.gz) within
    ``max_bytes`` uncompressed whose members follow the rules of :func:`extract_model`."""
    label = name or Path(path).name
    walk, gz, total = _walk(
        Path(path), label, max_bytes=max_bytes, what="model", keep_json=False, count_gz_layers=False
    )
    if not walk.files:
        raise TarballProblem(
            f"{label}: the model archive holds no files; pack the model folder with "
            "`tar -czf model.tar.gz -C model .`"
        )
    return ModelInfo(compressed=gz, uncompressed_bytes=total, n_files=len(walk.files))


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def extract_model(path: Path, dest: Path, *, max_bytes: int, name: str | None = None) -> ModelInfo:
    """Extract the model tarball at ``path`` into ``dest`` (created; it must not exist
    or be empty) with ``tarfile``'s ``"data"`` filter semantics: regular files, folders
    and links that stay inside ``dest`` only, no owners, files ``0644`` (``0755`` when
    executable), folders ``0755`` (readable by the unprivileged container user), at most
    ``max_bytes`` uncompressed. Anything else raises :class:`TarballProblem` and leaves
    no ``dest`` behind."""
    label = name or Path(path).name
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"{dest} is not empty")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return _extract(Path(path), dest, label, max_bytes)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _extract(path: Path, dest: Path, label: str, max_bytes: int) -> ModelInfo:
    gz = _is_gzip(path)
    counter = _Counter(max_bytes)
    root = os.path.realpath(dest)
    n_files = 0
    try:
        with _tar_stream(path, label, gz, "model", counter) as tf:
            for m in _members(tf, label):
                n_files += _extract_member(tf, m, root, label)
    except _OverCap:
        raise TarballProblem(
            f"{label}: is more than {human_size(max_bytes)} uncompressed, over the limit of "
            f"{human_size(max_bytes)}; make the model smaller"
        ) from None
    except _Damaged as e:
        problem = "is cut short" if str(e) == "cut" else "is damaged gzip data"
        raise TarballProblem(f"{label}: {problem}; upload it again") from None
    except tarfile.TarError as e:
        raise TarballProblem(f"{label}: {_tar_damage(e)}; upload it again") from None
    return ModelInfo(compressed=gz, uncompressed_bytes=counter.n, n_files=n_files)


def _members(tf: tarfile.TarFile, label: str) -> Iterator[tarfile.TarInfo]:
    for n, m in enumerate(tf, 1):
        if n > MAX_MEMBERS:
            raise TarballProblem(
                f"{label}: holds more than {MAX_MEMBERS} members; pack it with fewer, larger files"
            )
        yield m


def _extract_member(tf: tarfile.TarFile, m: tarfile.TarInfo, root: str, label: str) -> int:
    parts = _clean_name(m.name)
    if parts is None:
        raise _refuse_member(
            label,
            m,
            "has an absolute name or one with '..'",
            "pack the model again from inside its folder: `tar -czf model.tar.gz -C model .`",
        )
    if not parts:
        return 0
    target = os.path.join(root, *parts)
    parent = os.path.realpath(os.path.dirname(target))
    if not _inside(root, parent):
        raise _refuse_member(
            label, m, "would be written outside the model folder", "replace links by files"
        )
    target = os.path.join(parent, parts[-1])
    if m.isdir():
        if os.path.islink(target) or (os.path.exists(target) and not os.path.isdir(target)):
            raise _refuse_member(label, m, "is a folder over a file or link", "pack it again")
        os.makedirs(target, exist_ok=True)
        os.chmod(target, 0o755)
        return 0
    if m.issym() or m.islnk():
        if m.issym():
            if m.linkname.startswith("/"):
                dest_of_link = None
            else:
                dest_of_link = os.path.realpath(os.path.join(parent, m.linkname))
        else:
            link_parts = _clean_name(m.linkname)
            dest_of_link = os.path.realpath(os.path.join(root, *link_parts)) if link_parts else None
        if dest_of_link is None or not _inside(root, dest_of_link):
            raise _refuse_member(
                label,
                m,
                f"is a link to {m.linkname!r}, outside the model folder",
                "links may only point inside the archive; replace the link by the file",
            )
        _remove_existing(target, label)
        if m.issym():
            os.symlink(m.linkname, target)
            return 0
        if not os.path.isfile(dest_of_link):
            raise _refuse_member(
                label,
                m,
                f"is a hard link to {m.linkname!r}, which is not an earlier file",
                "replace the link by the file",
            )
        shutil.copyfile(dest_of_link, target)
        os.chmod(target, stat.S_IMODE(os.stat(dest_of_link).st_mode))
        return 1
    if not m.isreg():
        what = _MEMBER_KIND.get(m.type, f"of tar type {m.type!r}")
        raise _refuse_member(
            label, m, f"is {what}", "only regular files, folders and links inside are accepted"
        )
    _remove_existing(target, label)
    fh = tf.extractfile(m)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "wb") as out:
        if fh is not None:
            while chunk := fh.read(READ_CHUNK):
                out.write(chunk)
    os.chmod(target, 0o755 if m.mode & 0o100 else 0o644)
    return 1


def _remove_existing(target: str, label: str) -> None:
    """A later member of the same name replaces the earlier one (as tar does)."""
    if os.path.islink(target) or os.path.isfile(target):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
    elif os.path.isdir(target):
        raise TarballProblem(
            f"{label}: {os.path.basename(target)!r} is both a folder and a file in it; pack "
            "the model folder again"
        )
