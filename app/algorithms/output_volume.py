"""The /output folder of one case, with its size capped.

As root, ``sized_output`` makes a sparse ext4 image of the cap's size beside the folder
(``.<name>.ext4``), loop-mounts it on the folder (nodev, nosuid, noexec, nosymfollow: on
the host no symbolic link in it is followed) and gives it to uid 65534, the user the
container runs as: a container that writes more gets ENOSPC, the host's disk holds at
most the image, and no hard link can reach a host file (another file system).

Without root (or when the loop mount fails) the folder is a plain directory writable by
everyone: nothing stops the writes while the container runs,
``full`` then compares the folder's size after the run with the cap, and the outputs
must be read without following links (``O_NOFOLLOW``, ``lstat``).

Everything is unmounted and removed when the block ends, whatever happened, so the
outputs must be validated and staged inside the block. A judge killed inside the block
leaves its volumes mounted: ``unmount_under`` unmounts those below a dead job's folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

CONTAINER_UID = 65534
COMMAND_SECONDS = 60
# usable space of the ext4 (one inode per 64 KiB, no journal, no resize reserve) falls
# short of the image size by 2-3 % of it: the image is that much larger than the cap
_METADATA_BYTES = 512 * 1024
# free space below which a volume counts as full (a failed write of one large block
# leaves the space it would have taken free): 5 % of the volume, at least 8 MiB but
# never more than 10 % of it
_FULL_MARGIN_BYTES = 8 * 1024 * 1024
_FULL_MARGIN_FRACTION = 0.05


def _margin(total: float) -> float:
    return max(min(_FULL_MARGIN_BYTES, total * 0.1), total * _FULL_MARGIN_FRACTION)


# nosymfollow: the judge's reads of the outputs on the host never follow a symbolic link
# the container made (inside the container, through its own bind mount, links work)
_MOUNT_OPTIONS = "nodev,nosuid,noexec,nosymfollow"
# plain-directory fallbacks: folder -> cap, for ``full``
_PLAIN: dict[Path, int] = {}


def _image_bytes(max_bytes: int) -> int:
    size = max_bytes + max_bytes // 32 + _METADATA_BYTES
    return (size + 4095) // 4096 * 4096


def _run(args: list[str]) -> None:
    subprocess.run(
        args, check=True, capture_output=True, timeout=COMMAND_SECONDS, stdin=subprocess.DEVNULL
    )


def _mount_capped(path: Path, image: Path, max_bytes: int) -> bool:
    """Loop-mount a fresh ext4 image of about ``max_bytes`` usable bytes on ``path``;
    False (nothing left behind) when that is not possible here."""
    if os.geteuid() != 0 or not (shutil.which("mkfs.ext4") and shutil.which("mount")):
        return False
    try:
        with open(image, "wb") as fh:
            fh.truncate(_image_bytes(max_bytes))
        _run(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-m",
                "0",
                "-i",
                "65536",
                "-O",
                "^has_journal,^resize_inode",
                str(image),
            ]
        )
        try:
            _run(["mount", "-o", "loop," + _MOUNT_OPTIONS, str(image), str(path)])
        except subprocess.CalledProcessError:
            # kernels before 5.10 do not know nosymfollow
            _run(["mount", "-o", "loop,nodev,nosuid,noexec", str(image), str(path)])
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        log.warning(
            "output volume: loop mount refused (%s %s); plain directory without a size cap",
            exc.__class__.__name__,
            detail.decode(errors="replace").strip()[:200],
        )
        image.unlink(missing_ok=True)
        return False
    try:
        # an extra entry the container did not write would count as its output
        (path / "lost+found").rmdir()
        os.chown(path, CONTAINER_UID, CONTAINER_UID)
        os.chmod(path, 0o755)
    except BaseException:
        _unmount(path)
        image.unlink(missing_ok=True)
        raise
    return True


def _unmount(path: Path) -> None:
    try:
        _run(["umount", str(path)])
    except (OSError, subprocess.SubprocessError):
        # busy (a process still in it): detach now, the kernel frees it when released
        log.warning("output volume: %s busy, detached lazily", path.name)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _run(["umount", "-l", str(path)])


def _mount_points() -> list[Path]:
    """This process's mount points (``/proc/self/mounts``, octal escapes decoded)."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    octal = re.compile(r"\\([0-7]{3})")
    return [
        Path(octal.sub(lambda m: chr(int(m.group(1), 8)), fields[1]))
        for fields in (line.split() for line in lines)
        if len(fields) > 1
    ]


def unmount_under(folder: Path) -> int:
    """Unmount every volume mounted below ``folder`` (the output volumes of a judge that
    was killed before it could unmount them), deepest first, so that the folder can be
    removed and the loop devices are freed. Returns how many were unmounted."""
    folder = Path(folder).resolve()
    found = [p for p in _mount_points() if folder in p.parents]
    for point in sorted(found, key=lambda p: len(p.parts), reverse=True):
        log.warning("output volume %s of a killed judge: unmounted", point.name)
        _unmount(point)
    return len(found)


@contextlib.contextmanager
def sized_output(path: Path, max_bytes: int) -> Iterator[Path]:
    """An empty folder at ``path`` (created; its parent must exist) that uid 65534 can
    write and that holds at most ``max_bytes`` (see the module docstring)."""
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, not {max_bytes}")
    path = Path(path)
    path.mkdir()
    image = path.parent / f".{path.name}.ext4"
    mounted = False
    try:
        mounted = _mount_capped(path, image, max_bytes)
        if not mounted:
            try:
                os.chown(path, CONTAINER_UID, CONTAINER_UID)
            except OSError:
                os.chmod(path, 0o777)
            _PLAIN[path] = max_bytes
        yield path
    finally:
        if mounted:
            _unmount(path)
            image.unlink(missing_ok=True)
        _PLAIN.pop(path, None)
        shutil.rmtree(path, ignore_errors=True)


def is_capped(path: Path) -> bool:
    """Whether ``path`` is a size-capped volume (a mount point), not the fallback."""
    return os.path.ismount(path)


def used_bytes(path: Path) -> int:
    """Bytes the files under ``path`` take on disk (allocated blocks)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def full(path: Path) -> bool:
    """Whether the volume is (nearly) full: a crash then is named "output size limit
    exceeded" rather than blamed on the algorithm alone."""
    path = Path(path)
    if path in _PLAIN:
        cap = _PLAIN[path]
        return used_bytes(path) >= cap - _margin(cap)
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    if not os.path.ismount(path):
        return False
    margin = _margin(st.f_blocks * st.f_frsize)
    return st.f_bavail * st.f_frsize < margin or (st.f_files > 0 and st.f_favail == 0)
