"""Image tarballs for the tests: real ones saved by podman from a tiny imported image,
and hand-made ones in the ``docker save`` and OCI layouts (valid or hostile), built
member by member with ``tarfile`` so that each test states what its tarball holds."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.algorithms.tarball import host_architecture


def need_podman() -> str:
    """The podman executable; skips (fails when ``CI=true``) when it cannot run."""
    exe = shutil.which("podman")
    reason = None
    if exe is None:
        reason = "podman is not installed"
    else:
        r = subprocess.run([exe, "info"], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            reason = f"`podman info` fails: {r.stderr.strip()[-200:]}"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the real image tarball tests")
        pytest.skip(reason)
    assert exe is not None
    return exe


@dataclass
class SavedImages:
    ref: str
    image_id: str  # as podman inspect reports it
    docker_tar: Path  # podman save (docker-archive)
    docker_tar_gz: Path  # the same, gzip-compressed
    oci_tar: Path  # podman save --format oci-archive


def save_tiny_image(exe: str, out: Path) -> SavedImages:
    """A tiny image (one 10 KiB layer holding a shell script) imported into podman under
    a unique tag, saved in the three forms participants upload; the tag is removed
    again (the saved files stay)."""
    out.mkdir(parents=True, exist_ok=True)
    rootfs = out / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tf:
        data = b"#!/bin/sh\necho hello\n"
        info = tarfile.TarInfo("hello")
        info.size, info.mode = len(data), 0o755
        tf.addfile(info, io.BytesIO(data))
    ref = f"localhost/hecktor-test-upload:{uuid.uuid4().hex[:12]}"
    run = [exe, "import", "--change", 'CMD ["/hello"]', str(rootfs), ref]
    subprocess.run(run, check=True, capture_output=True, timeout=120)
    try:
        image_id = subprocess.run(
            [exe, "image", "inspect", "--format", "{{.Id}}", ref],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
        docker_tar, oci_tar = out / "algo.tar", out / "algo-oci.tar"
        for fmt, dest in (("docker-archive", docker_tar), ("oci-archive", oci_tar)):
            subprocess.run(
                [exe, "save", "--format", fmt, "-o", str(dest), ref],
                check=True,
                capture_output=True,
                timeout=120,
            )
    finally:
        subprocess.run([exe, "rmi", "-f", ref], capture_output=True, timeout=120)
    docker_tar_gz = out / "algo.tar.gz"
    docker_tar_gz.write_bytes(gzip.compress(docker_tar.read_bytes()))
    return SavedImages(ref, image_id, docker_tar, docker_tar_gz, oci_tar)


# -- hand-made tarballs -----------------------------------------------------------------
def add_bytes(tf: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tf.addfile(info, io.BytesIO(data))


def add_special(
    tf: tarfile.TarFile, name: str, kind: bytes, linkname: str = "", devmajor: int = 0
) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.devmajor = devmajor
    tf.addfile(info)


def layer_tar(files: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (files or {"hello": b"#!/bin/sh\necho hi\n"}).items():
            add_bytes(tf, name, data, 0o755)
    return buf.getvalue()


def image_config(
    *, arch: str | None = None, os_name: str = "linux", cmd: Any = ("/hello",), **extra: Any
) -> bytes:
    run: dict[str, Any] = {}
    if cmd is not None:
        run["Cmd"] = list(cmd)
    run.update(extra)
    doc = {
        "architecture": arch if arch is not None else host_architecture(),
        "os": os_name,
        "config": run,
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    return json.dumps(doc).encode()


def docker_save(
    path: Path,
    *,
    n_images: int = 1,
    config: bytes | None = None,
    omit_config: bool = False,
    omit_layer: bool = False,
    extra: list[tarfile.TarInfo | tuple[str, bytes]] | None = None,
    manifest_last: bool = False,
    gz: bool = False,
) -> Path:
    """A ``docker save`` layout: ``<layer hex>/layer.tar``, ``<config hex>.json``,
    ``manifest.json`` listing ``n_images`` entries (the same config and layer)."""
    layer = layer_tar()
    layer_hex = hashlib.sha256(layer).hexdigest()
    cfg = config if config is not None else image_config()
    cfg_name = f"{hashlib.sha256(cfg).hexdigest()}.json"
    entry = {
        "Config": cfg_name,
        "RepoTags": ["myalgo:latest"],
        "Layers": [f"{layer_hex}/layer.tar"],
    }
    manifest = json.dumps([entry] * n_images).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        if not manifest_last:
            add_bytes(tf, "manifest.json", manifest)
        if not omit_layer:
            add_bytes(tf, f"{layer_hex}/layer.tar", layer)
        if not omit_config:
            add_bytes(tf, cfg_name, cfg)
        for item in extra or []:
            if isinstance(item, tarfile.TarInfo):
                tf.addfile(item)
            else:
                add_bytes(tf, item[0], item[1])
        if manifest_last:
            add_bytes(tf, "manifest.json", manifest)
    data = buf.getvalue()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def oci_archive(
    path: Path,
    *,
    n_manifests: int = 1,
    config: bytes | None = None,
    layer: bytes | None = None,
    damage_config: bool = False,
) -> Path:
    """An OCI image layout archive: ``oci-layout``, ``index.json``, ``blobs/sha256/*``
    (a gzip layer, the config, the manifest)."""
    layer_gz = layer if layer is not None else gzip.compress(layer_tar())
    cfg = config if config is not None else image_config()
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return f"sha256:{digest}"

    cfg_digest = blob(cfg)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": cfg_digest,
                "size": len(cfg),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": blob(layer_gz),
                    "size": len(layer_gz),
                }
            ],
        }
    ).encode()
    man_digest = blob(manifest)
    if damage_config:
        blobs[cfg_digest.split(":")[1]] = cfg + b" "
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": man_digest,
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": f"myalgo:{i}"},
            }
            for i in range(n_manifests)
        ],
    }
    with tarfile.open(path, "w") as tf:
        for hexd, data in blobs.items():
            add_bytes(tf, f"blobs/sha256/{hexd}", data)
        add_bytes(tf, "index.json", json.dumps(index).encode())
        add_bytes(tf, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
    return path


def gzip_bomb_layer(expanded: int) -> bytes:
    """A gzip stream of ``expanded`` zero bytes (about 1000 times smaller)."""
    import zlib

    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    parts = [c.compress(zeros) for _ in range(expanded >> 20)]
    parts.append(c.flush())
    return b"".join(parts)
