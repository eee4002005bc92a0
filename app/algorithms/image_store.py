"""The images of the submissions being judged: each loaded once per judging, tagged
``<repository>:sub-<id>`` (the judge passes ``localhost/hecktor-algorithm-<service>``), at most ``slots`` loaded at once on this
machine, removed when released or when loading fails.

The bound holds across the worker processes of one machine: a slot is an exclusive
``flock`` on ``<directory>/slot-<n>.lock`` (the file names the submission holding it),
released when the holder releases it or dies. ``sweep`` (at worker start) removes the
images that submissions left behind, except those named in ``keep`` and those a live
holder has.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app.algorithms.runtime import ContainerRuntime, RuntimeFailure

log = logging.getLogger(__name__)

REPOSITORY = "localhost/hecktor-algorithm"


def image_ref(submission_id: int, repository: str = REPOSITORY) -> str:
    return f"{repository}:sub-{submission_id}"


@dataclass
class _Held:
    runtime: ContainerRuntime
    image_id: str
    slot: int  # the open, locked slot file
    count: int = 1


@dataclass
class ImageStore:
    directory: Path  # the lock files' folder (in the data dir), shared by the workers
    slots: int = 4  # settings.container_image_store
    repository: str = REPOSITORY
    wait_seconds: float = 3600.0  # for a free slot, then RuntimeFailure
    poll_seconds: float = 0.5
    _held: dict[int, _Held] = field(default_factory=dict, repr=False)
    _mutex: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"slots must be at least 1, not {self.slots}")
        self.directory = Path(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _slot_path(self, n: int) -> Path:
        return self.directory / f"slot-{n}.lock"

    def _take_slot(self, ref: int) -> int:
        deadline = time.monotonic() + self.wait_seconds
        while True:
            for n in range(self.slots):
                fd = os.open(self._slot_path(n), os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(ref).encode(), 0)
                return fd
            if time.monotonic() >= deadline:
                raise RuntimeFailure(
                    f"no free image slot: {self.slots} algorithm images are loaded on this "
                    f"machine and none was released in {self.wait_seconds:.0f} s"
                )
            time.sleep(self.poll_seconds)

    @staticmethod
    def _free_slot(fd: int) -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # the lock goes with the descriptor

    def acquire(self, runtime: ContainerRuntime, tarball: Path, ref: int) -> str:
        """The image of submission ``ref`` loaded from ``tarball`` and tagged; its id.
        Waits for a free slot. A second acquire of the same ref in this process shares
        the first one's image (each needs its release)."""
        with self._mutex:
            held = self._held.get(ref)
            if held is not None:
                held.count += 1
                return held.image_id
        slot = self._take_slot(ref)
        image_id = ""
        try:
            image_id = runtime.load(tarball)
            runtime.tag(image_id, image_ref(ref, self.repository))
        except BaseException:
            if image_id:
                # an image with other names (the same image under another submission)
                # keeps them: only an unnamed one goes
                with contextlib.suppress(RuntimeFailure):
                    runtime.remove(image_id)
            self._free_slot(slot)
            raise
        with self._mutex:
            self._held[ref] = _Held(runtime=runtime, image_id=image_id, slot=slot)
        return image_id

    def release(self, ref: int) -> None:
        """Give up submission ``ref``'s image: its name removed (the image with it when
        nothing else holds it), its slot freed. Nothing when ``ref`` is not held."""
        with self._mutex:
            held = self._held.get(ref)
            if held is None:
                return
            held.count -= 1
            if held.count > 0:
                return
            del self._held[ref]
        try:
            held.runtime.untag(image_ref(ref, self.repository))
        except RuntimeFailure as exc:
            # in use by a container still being removed: the next sweep takes it
            log.warning("image of submission %s not removed: %s", ref, exc)
        finally:
            self._free_slot(held.slot)

    @contextlib.contextmanager
    def loaded(self, runtime: ContainerRuntime, tarball: Path, ref: int) -> Iterator[str]:
        """``acquire`` for the length of a block."""
        image_id = self.acquire(runtime, tarball, ref)
        try:
            yield image_id
        finally:
            self.release(ref)

    def holders(self) -> set[int]:
        """Submissions whose slot a live holder has (this process included)."""
        holders: set[int] = set()
        for n in range(self.slots):
            path = self._slot_path(n)
            if not path.exists():
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    text = os.pread(fd, 64, 0).decode(errors="replace").strip()
                    if text.isdigit():
                        holders.add(int(text))
                else:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        return holders

    def sweep(self, runtime: ContainerRuntime, keep: set[int]) -> list[str]:
        """Remove this store's leftover images: every ``sub-<id>`` name whose id is
        neither in ``keep`` nor held by a live holder. Returns the names removed."""
        spared = set(keep) | self.holders()
        with self._mutex:
            spared |= set(self._held)
        pattern = re.compile(re.escape(self.repository) + r":sub-(\d+)$")
        removed = []
        for name in sorted(runtime.images(self.repository)):
            match = pattern.match(name)
            if match is None or int(match.group(1)) in spared:
                continue
            try:
                runtime.untag(name)
            except RuntimeFailure as exc:
                log.warning("leftover image %s not removed: %s", name, exc)
                continue
            removed.append(name)
        return removed
