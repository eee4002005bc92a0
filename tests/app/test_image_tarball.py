"""Image and model tarballs checked before a runtime sees them (app.algorithms.tarball):
real ``podman save`` outputs of a tiny image, and hand-made hostile tarballs, each with
the message a participant gets."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import time
import zlib
from pathlib import Path

import pytest

from app.algorithms.tarball import (
    TarballProblem,
    check_image_tarball,
    check_model_tarball,
    extract_model,
    host_architecture,
    sniff_image_tarball,
)
from tests.app.image_tars import (
    SavedImages,
    add_bytes,
    add_special,
    docker_save,
    gzip_bomb_layer,
    image_config,
    layer_tar,
    need_podman,
    oci_archive,
    save_tiny_image,
)

MB = 1 << 20


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> SavedImages:
    exe = need_podman()
    return save_tiny_image(exe, tmp_path_factory.mktemp("saved"))


def problem(path: Path, max_bytes: int = 64 * MB, name: str | None = None) -> str:
    with pytest.raises(TarballProblem) as e:
        check_image_tarball(path, max_bytes=max_bytes, name=name)
    assert str(e.value) == e.value.message == e.value.problems[0]
    return e.value.message


# -- real podman outputs ----------------------------------------------------------------
def test_podman_docker_archive(saved: SavedImages) -> None:
    info = check_image_tarball(saved.docker_tar, max_bytes=64 * MB)
    assert info.layout == "docker-save" and not info.compressed
    # podman's image id is the config's digest
    assert info.image_id == saved.image_id.removeprefix("sha256:")
    assert info.config_digest == f"sha256:{info.image_id}"
    assert (info.architecture, info.os) == (host_architecture(), "linux")
    assert info.cmd == ("/hello",) and info.entrypoint == ()
    assert saved.ref in info.repo_tags and info.n_layers == 1
    # the whole tar was read: its size on disk
    assert info.uncompressed_bytes == saved.docker_tar.stat().st_size
    with tarfile.open(saved.docker_tar) as tf:
        members = tf.getmembers()
    # podman writes <layer id>/layer.tar as a symlink to ../<digest>.tar: links that stay
    # inside are accepted
    links = [m for m in members if m.issym()]
    assert links and all(m.linkname.startswith("../") for m in links)
    assert members[0].name.endswith(".tar")  # a 64-hex layer first, not manifest.json


def test_podman_docker_archive_gzipped(saved: SavedImages) -> None:
    info = check_image_tarball(saved.docker_tar_gz, max_bytes=64 * MB)
    assert info.layout == "docker-save" and info.compressed
    assert info.uncompressed_bytes == saved.docker_tar.stat().st_size
    assert info.image_id == saved.image_id.removeprefix("sha256:")


def test_podman_oci_archive(saved: SavedImages) -> None:
    info = check_image_tarball(saved.oci_tar, max_bytes=64 * MB)
    assert info.layout == "oci" and not info.compressed
    assert info.image_id == saved.image_id.removeprefix("sha256:")
    assert saved.ref in info.repo_tags and info.cmd == ("/hello",)
    # the gzip layer counts at its expanded size: tar bytes - compressed + expanded
    expected = saved.oci_tar.stat().st_size
    with tarfile.open(saved.oci_tar) as tf:
        for m in tf:
            data = tf.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
            if data.startswith(b"\x1f\x8b"):
                expected += len(gzip.decompress(data)) - len(data)
    assert info.uncompressed_bytes == expected


def test_podman_outputs_sniffed(saved: SavedImages) -> None:
    for path, kind in (
        (saved.docker_tar, "tar"),
        (saved.docker_tar_gz, "tar.gz"),
        (saved.oci_tar, "tar"),
    ):
        with open(path, "rb") as f:
            assert sniff_image_tarball(f.read(4096)) == kind, path.name


def test_podman_archive_over_the_cap(saved: SavedImages) -> None:
    size = saved.docker_tar.stat().st_size
    msg = problem(saved.docker_tar, max_bytes=size - 1, name="algo.tar")
    assert msg.startswith("algo.tar: is ") and "over the phase's image limit" in msg
    assert "slimmer base" in msg


# -- sniffing ---------------------------------------------------------------------------
def _tar_bytes(*names: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for n in names:
            add_bytes(tf, n, b"x")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("names", "want"),
    [
        (("manifest.json",), "tar"),
        (("./manifest.json",), "tar"),
        (("oci-layout",), "tar"),
        (("index.json",), "tar"),
        (("repositories",), "tar"),
        (("blobs/sha256/" + "a" * 64,), "tar"),
        (("f" * 64 + "/layer.tar",), "tar"),
        (("f" * 64 + ".json",), "tar"),
        (("CHUM-001.nii.gz",), None),
        (("preds/CHUM-001.nii.gz",), None),
        (("predictions.csv",), None),
        # a PAX long name that is an image member
        (("blobs/sha256/" + "b" * 64 + "/" + "c" * 120,), "tar"),
    ],
)
def test_sniff_first_member(names: tuple[str, ...], want: str | None) -> None:
    data = _tar_bytes(*names)
    assert sniff_image_tarball(data[:4096]) == want
    gz_want = "tar.gz" if want else None
    assert sniff_image_tarball(gzip.compress(data)[:512]) == gz_want


def test_sniff_other_files() -> None:
    assert sniff_image_tarball(b"PK\x03\x04" + bytes(600)) is None
    assert sniff_image_tarball(gzip.compress(b"PatientID,Prediction\n")) is None
    assert sniff_image_tarball(b"\x1f\x8b\x08\x00garbage") is None
    assert sniff_image_tarball(b"") is None


# -- hand-made layouts ------------------------------------------------------------------
def test_hand_made_docker_save_and_oci(tmp_path: Path) -> None:
    d = check_image_tarball(docker_save(tmp_path / "a.tar", manifest_last=True), max_bytes=MB)
    o = check_image_tarball(oci_archive(tmp_path / "o.tar"), max_bytes=MB)
    assert (d.layout, o.layout) == ("docker-save", "oci")
    # the same config bytes: the same image id
    assert d.image_id == o.image_id
    assert d.repo_tags == ("myalgo:latest",) and o.repo_tags == ("myalgo:0",)
    e = check_image_tarball(
        docker_save(tmp_path / "e.tar", config=image_config(cmd=None, Entrypoint=["python"])),
        max_bytes=MB,
    )
    assert e.entrypoint == ("python",) and e.cmd == ()


def test_two_images(tmp_path: Path) -> None:
    msg = problem(docker_save(tmp_path / "two.tar", n_images=2))
    assert msg == (
        "two.tar: holds 2 images; save exactly one: `docker save myalgo:latest -o algo.tar` "
        "(or `podman save`)"
    )
    msg = problem(oci_archive(tmp_path / "two-oci.tar", n_manifests=2))
    assert msg.startswith("two-oci.tar: holds 2 images; save exactly one")


def test_names_the_uploaded_file_not_the_stored_path(tmp_path: Path) -> None:
    path = docker_save(tmp_path / "3f2a.part", n_images=2)
    msg = problem(path, name="my-algo.tar")
    assert msg.startswith("my-algo.tar: ") and "3f2a" not in msg and str(tmp_path) not in msg


@pytest.mark.parametrize(
    ("member", "says"),
    [
        ("../escape", "has an absolute name or one with '..'"),
        ("a/../../escape", "has an absolute name or one with '..'"),
        ("/etc/passwd", "has an absolute name or one with '..'"),
    ],
)
def test_traversal(tmp_path: Path, member: str, says: str) -> None:
    path = docker_save(tmp_path / "t.tar", extra=[(member, b"x")])
    assert problem(path) == (
        f"t.tar: its member {member!r} {says}; archives must hold relative names only; "
        "pack it again from inside its folder"
    )


def test_device_and_fifo(tmp_path: Path) -> None:
    for kind, what in ((tarfile.CHRTYPE, "a character device"), (tarfile.FIFOTYPE, "a named pipe")):
        info = tarfile.TarInfo("dev/null")
        info.type, info.devmajor, info.devminor = kind, 1, 3
        msg = problem(docker_save(tmp_path / "d.tar", extra=[info]))
        assert msg.startswith(f"d.tar: its member 'dev/null' is {what};")
        assert "only regular files, folders and links inside" in msg


@pytest.mark.parametrize("target", ["../../etc/passwd", "/etc/passwd", "a/../../x"])
def test_symlink_out(tmp_path: Path, target: str) -> None:
    info = tarfile.TarInfo("link")
    info.type, info.linkname = tarfile.SYMTYPE, target
    msg = problem(docker_save(tmp_path / "s.tar", extra=[info]))
    assert msg.startswith(f"s.tar: its member 'link' is a link to {target!r}, outside the archive")


def test_links_inside_are_followed(tmp_path: Path) -> None:
    # the manifest names a layer through a symlink, as podman writes it
    layer = layer_tar()
    import hashlib
    import json

    cfg = image_config()
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    hexd = hashlib.sha256(layer).hexdigest()
    manifest = [{"Config": cfg_name, "Layers": [f"{'0' * 64}/layer.tar"]}]
    path = tmp_path / "l.tar"
    with tarfile.open(path, "w") as tf:
        add_bytes(tf, f"{hexd}.tar", layer)
        add_special(tf, f"{'0' * 64}/layer.tar", tarfile.SYMTYPE, f"../{hexd}.tar")
        add_bytes(tf, cfg_name, cfg)
        add_bytes(tf, "manifest.json", json.dumps(manifest).encode())
    assert check_image_tarball(path, max_bytes=MB).n_layers == 1
    # a hard link to a member that is not an earlier file
    info = tarfile.TarInfo("hard")
    info.type, info.linkname = tarfile.LNKTYPE, "later"
    msg = problem(docker_save(tmp_path / "h.tar", extra=[info]))
    assert "is a hard link to 'later', which is not an earlier file" in msg


def test_not_a_tar(tmp_path: Path) -> None:
    p = tmp_path / "x.tar"
    p.write_bytes(os.urandom(3000))
    assert problem(p) == (
        "x.tar: is not a tar archive; save the image with `docker save myalgo:latest -o "
        "algo.tar` (or `podman save`)"
    )
    g = tmp_path / "x.tar.gz"
    g.write_bytes(gzip.compress(b"hello, this is no tar" * 100))
    assert problem(g).startswith("x.tar.gz: is a gzip of something that is not a tar archive;")


def test_cut_short(tmp_path: Path) -> None:
    whole = docker_save(tmp_path / "w.tar.gz", gz=True).read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    assert problem(cut).startswith("cut.tar.gz: is cut short (the gzip stream ends early);")
    raw = docker_save(tmp_path / "w.tar").read_bytes()
    cut.write_bytes(raw[:1500])
    assert problem(cut) == "cut.tar.gz: is cut short (the tar archive ends early); upload it again"
    cut.write_bytes(raw[:2000])  # inside a member's data
    assert problem(cut).startswith("cut.tar.gz: is cut short (the tar archive ends early);")
    cut.write_bytes(b"")
    assert problem(cut).startswith("cut.tar.gz: is empty; save the image with")


def test_missing_config_and_layer(tmp_path: Path) -> None:
    msg = problem(docker_save(tmp_path / "c.tar", omit_config=True))
    assert "its manifest.json names the image config" in msg and "does not hold" in msg
    msg = problem(docker_save(tmp_path / "l.tar", omit_layer=True))
    assert "names 1 layer(s) the tarball does not hold" in msg


def test_damaged_oci_blob(tmp_path: Path) -> None:
    msg = problem(oci_archive(tmp_path / "o.tar", damage_config=True))
    assert "does not match its digest" in msg and "damaged" in msg


def test_not_an_image_layout(tmp_path: Path) -> None:
    rootfs = tmp_path / "export.tar"
    with tarfile.open(rootfs, "w") as tf:
        for n in ("bin/sh", "etc/passwd", "usr/bin/python3"):
            add_bytes(tf, n, b"x")
    assert "a container's file system (`docker export`), not a saved image" in problem(rootfs)
    preds = tmp_path / "preds.tar"
    with tarfile.open(preds, "w") as tf:
        add_bytes(tf, "CHUM-001.nii.gz", b"x")
    assert "images or predictions, not a saved container image" in problem(preds)


def test_other_architecture_os_and_no_command(tmp_path: Path) -> None:
    host = host_architecture()
    other = "arm64" if host != "arm64" else "amd64"
    cfg = image_config(arch=other, os_name="windows", cmd=None)
    with pytest.raises(TarballProblem) as e:
        check_image_tarball(docker_save(tmp_path / "arm.tar", config=cfg), max_bytes=MB)
    # every problem of the config at once
    assert e.value.problems == [
        f"arm.tar: the image was built for {other}; the judges run linux/{host} images: "
        f"build it with `docker build --platform linux/{host} ...` (or `podman build --arch "
        f"{host}`)",
        "arm.tar: the image is for windows; the judges run Linux images: build it FROM a "
        "Linux base image",
        "arm.tar: the image has neither an ENTRYPOINT nor a CMD, so the judges cannot start "
        'it; add e.g. `ENTRYPOINT ["python", "/opt/app/inference.py"]` to its Dockerfile '
        "and build it again",
    ]
    # x86_64 is amd64's other name
    if host == "amd64":
        cfg = image_config(arch="x86_64")
        assert check_image_tarball(docker_save(tmp_path / "x.tar", config=cfg), max_bytes=MB)


# -- sizes and bombs --------------------------------------------------------------------
def test_gzip_bomb_stops_at_the_cap(tmp_path: Path) -> None:
    """A gzip whose first 32 MiB expand fine and whose rest is garbage: a checker that
    read past the 8 MiB cap would report damaged data, not the limit."""
    header = tarfile.TarInfo(("a" * 64) + "/layer.tar")
    header.size = 1 << 30
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [c.compress(header.tobuf(format=tarfile.USTAR_FORMAT))]
    zeros = bytes(MB)
    parts += [c.compress(zeros) for _ in range(32)]
    parts.append(c.flush(zlib.Z_SYNC_FLUSH))
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(b"".join(parts) + b"\xff" * 4096)
    assert bomb.stat().st_size < 200_000
    t0 = time.monotonic()
    msg = problem(bomb, max_bytes=8 * MB)
    assert time.monotonic() - t0 < 5
    assert msg == (
        "bomb.tar.gz: is more than 8.0 MiB uncompressed (reading stopped there), over the "
        "phase's image limit of 8.0 MiB; make the image smaller (a slimmer base, no build "
        "caches, no data baked in)"
    )


def test_gzip_layer_bomb_inside_a_small_tarball(tmp_path: Path) -> None:
    layer = gzip_bomb_layer(64 * MB)
    path = oci_archive(tmp_path / "o.tar", layer=layer)
    assert path.stat().st_size < MB
    assert "is more than 16.0 MiB uncompressed" in problem(path, max_bytes=16 * MB)
    # the same layer under a larger cap: counted at its expanded size
    info = check_image_tarball(path, max_bytes=128 * MB)
    assert info.uncompressed_bytes > 64 * MB


# -- models ---------------------------------------------------------------------------
def _model(
    path: Path, add: list[tarfile.TarInfo | tuple[str, bytes, int]], gz: bool = True
) -> Path:
    with tarfile.open(path, "w:gz" if gz else "w") as tf:
        for item in add:
            if isinstance(item, tarfile.TarInfo):
                tf.addfile(item)
            else:
                add_bytes(tf, item[0], item[1], item[2])
    return path


def _info(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    i = tarfile.TarInfo(name)
    i.type, i.linkname, i.mode = kind, linkname, 0o777
    return i


def test_extract_model(tmp_path: Path) -> None:
    weights = os.urandom(50_000)
    path = _model(
        tmp_path / "model.tar.gz",
        [
            _info("./weights", tarfile.DIRTYPE),
            ("./weights/net.pt", weights, 0o4777),  # setuid and world-writable
            ("./run.sh", b"#!/bin/sh\n", 0o700),
            _info("./latest.pt", tarfile.SYMTYPE, "weights/net.pt"),
            _info("./copy.pt", tarfile.LNKTYPE, "./weights/net.pt"),
        ],
    )
    info = check_model_tarball(path, max_bytes=MB)
    assert info.compressed and info.n_files == 2
    dest = tmp_path / "out"
    got = extract_model(path, dest, max_bytes=MB)
    assert got.n_files == 3  # the hard link became a copy
    assert (dest / "weights" / "net.pt").read_bytes() == weights
    assert (dest / "latest.pt").read_bytes() == weights and (dest / "latest.pt").is_symlink()
    assert (dest / "copy.pt").read_bytes() == weights and not (dest / "copy.pt").is_symlink()
    modes = {
        p.relative_to(dest).as_posix(): stat.S_IMODE(p.lstat().st_mode)
        for p in dest.rglob("*")
        if not p.is_symlink()
    }
    assert modes == {"weights": 0o755, "weights/net.pt": 0o755, "run.sh": 0o755, "copy.pt": 0o755}


@pytest.mark.parametrize(
    ("members", "says"),
    [
        ([("../evil", b"x", 0o644)], "its member '../evil' has an absolute name or one with '..'"),
        ([("/evil", b"x", 0o644)], "its member '/evil' has an absolute name or one with '..'"),
        ([_info("up", tarfile.SYMTYPE, "..")], "its member 'up' is a link to '..', outside"),
        ([_info("abs", tarfile.SYMTYPE, "/etc")], "its member 'abs' is a link to '/etc', outside"),
        (
            [_info("d", tarfile.DIRTYPE), _info("d/up", tarfile.SYMTYPE, "../..")],
            "its member 'd/up' is a link to '../..', outside",
        ),
        ([_info("null", tarfile.CHRTYPE)], "its member 'null' is a character device"),
        ([_info("blk", tarfile.BLKTYPE)], "its member 'blk' is a block device"),
    ],
)
def test_extract_model_refuses(
    tmp_path: Path, members: list[tarfile.TarInfo | tuple[str, bytes, int]], says: str
) -> None:
    path = _model(tmp_path / "m.tar", [("ok.txt", b"fine", 0o644), *members], gz=False)
    dest = tmp_path / "out"
    with pytest.raises(TarballProblem) as e:
        extract_model(path, dest, max_bytes=MB, name="model.tar")
    assert e.value.message.startswith(f"model.tar: {says}")
    assert not dest.exists()  # nothing left behind
    with pytest.raises(TarballProblem) as e2:
        check_model_tarball(path, max_bytes=MB, name="model.tar")
    assert e2.value.message.startswith("model.tar: its member")
    assert not (tmp_path / "etc").exists() and not (tmp_path / "evil").exists()


def test_extract_model_symlinked_folder_stays_inside(tmp_path: Path) -> None:
    # a link to a folder inside, then a file through it: written inside
    path = _model(
        tmp_path / "m.tar.gz",
        [
            _info("sub", tarfile.DIRTYPE),
            _info("alias", tarfile.SYMTYPE, "sub"),
            ("alias/f", b"1", 0o644),
        ],
    )
    dest = tmp_path / "out"
    extract_model(path, dest, max_bytes=MB)
    assert (dest / "sub" / "f").read_bytes() == b"1"


def test_model_limits_and_garbage(tmp_path: Path) -> None:
    big = _model(tmp_path / "big.tar.gz", [("w.bin", bytes(4 * MB), 0o644)])
    assert big.stat().st_size < 100_000
    for call in (check_model_tarball, lambda p, **kw: extract_model(p, tmp_path / "o", **kw)):
        with pytest.raises(TarballProblem) as e:
            call(big, max_bytes=MB)
        assert "is more than 1.0 MiB uncompressed" in e.value.message
    assert not (tmp_path / "o").exists()
    junk = tmp_path / "model.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(TarballProblem) as e:
        check_model_tarball(junk, max_bytes=MB)
    assert e.value.message == (
        "model.tar: is not a tar archive; pack the model folder with `tar -czf "
        "model.tar.gz -C model .`"
    )
    empty = _model(tmp_path / "empty.tar", [_info("d", tarfile.DIRTYPE)], gz=False)
    with pytest.raises(TarballProblem) as e:
        check_model_tarball(empty, max_bytes=MB)
    assert "holds no files" in e.value.message
