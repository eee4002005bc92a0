"""Image tarballs loaded for real (docker-save layout .tar and .tar.gz, OCI archive),
without the names they carry, and the store of loaded submission images (slots,
release, sweep)."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.algorithms.image_store import ImageStore, image_ref
from app.algorithms.runtime import ContainerRuntime, RuntimeFailure
from tests.containers.conftest import (
    ALGORITHMS,
    TEST_REPOSITORY,
    CaseInput,
    Images,
    check_threshold_outputs,
    run_in,
)

pytestmark = pytest.mark.containers


def podman(rt: ContainerRuntime, *args: str, check: bool = True) -> str:
    res = subprocess.run(
        [rt.executable, *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert not check or res.returncode == 0, f"{args}: {res.stderr}"
    return res.stdout.strip()


@dataclass(frozen=True)
class Saved:
    image_id: str
    name: str  # the name saved inside the tarballs
    tar: Path
    tar_gz: Path
    oci: Path


@pytest.fixture(scope="module")
def saved(
    runtime: ContainerRuntime, images: Images, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Saved]:
    """The threshold algorithm as an image of its own (a unique label: an id no other
    image has), saved three ways, then removed from the store."""
    images.get("threshold")  # its layers cached
    folder = tmp_path_factory.mktemp("saved")
    nonce = uuid.uuid4().hex[:12]
    name = f"{TEST_REPOSITORY}/saved-{nonce}:latest"
    podman(
        runtime,
        "build",
        "--pull=never",
        "--quiet",
        "--label",
        f"hecktor.test.nonce={nonce}",
        "-t",
        name,
        str(ALGORITHMS / "threshold"),
    )
    image_id = runtime.inspect(name).id
    tar, oci = folder / "algo.tar", folder / "algo-oci.tar"
    podman(runtime, "save", "-o", str(tar), name)
    podman(runtime, "save", "--format", "oci-archive", "-o", str(oci), name)
    tar_gz = folder / "algo.tar.gz"
    with open(tar, "rb") as src, gzip.open(tar_gz, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    podman(runtime, "rmi", name)
    yield Saved(image_id=image_id, name=name, tar=tar, tar_gz=tar_gz, oci=oci)
    podman(runtime, "rmi", "--force", image_id, check=False)


@pytest.mark.parametrize("form", ["tar", "tar_gz", "oci"])
def test_load_each_tarball_form_and_run_it(
    runtime: ContainerRuntime, saved: Saved, form: str, case_input: CaseInput, tmp_path: Path
) -> None:
    assert not runtime.exists(saved.image_id)
    image_id = runtime.load(getattr(saved, form))
    try:
        assert image_id == saved.image_id
        # the name inside the tarball is not applied: the image is known by its id
        assert not runtime.exists(saved.name)
        outcome, _ = run_in(
            runtime,
            image_id,
            case_input,
            tmp_path,
            inside=lambda out: check_threshold_outputs(out, case_input),
        )
        assert outcome.ok, outcome
    finally:
        podman(runtime, "rmi", "--force", image_id, check=False)


def test_a_tarball_cannot_take_another_images_name(
    runtime: ContainerRuntime, images: Images, tmp_path: Path
) -> None:
    victim_id = images.get("nothing")
    victim = f"{TEST_REPOSITORY}/victim-{uuid.uuid4().hex[:8]}:latest"
    crash_id = images.get("crash")
    podman(runtime, "tag", crash_id, victim)
    tar = tmp_path / "impostor.tar"
    podman(runtime, "save", "-o", str(tar), victim)  # the crash image, named as the victim
    podman(runtime, "tag", victim_id, victim)  # the name back on the victim
    try:
        assert runtime.load(tar) == crash_id
        assert runtime.inspect(victim).id == victim_id
    finally:
        podman(runtime, "rmi", victim, check=False)


def test_unreadable_tarball_is_named(runtime: ContainerRuntime, tmp_path: Path) -> None:
    bad = tmp_path / "algo.tar"
    bad.write_bytes(b"\x00not a tar" * 100)
    with pytest.raises(RuntimeFailure, match=r"algo\.tar"):
        runtime.load(bad)


def test_store_slots_release_and_sweep(
    runtime: ContainerRuntime, saved: Saved, images: Images, tmp_path: Path
) -> None:
    repo = f"localhost/hecktor-test-store-{uuid.uuid4().hex[:8]}"
    store = ImageStore(tmp_path / "locks", slots=1, repository=repo, wait_seconds=1.0)
    other = ImageStore(tmp_path / "locks", slots=1, repository=repo, wait_seconds=1.0)
    try:
        image_id = store.acquire(runtime, saved.tar, 11)
        assert image_id == saved.image_id
        assert runtime.inspect(image_ref(11, repo)).id == image_id
        assert store.acquire(runtime, saved.tar, 11) == image_id  # shared, counted
        # the one slot is taken: another holder (another worker) waits, then gives up
        with pytest.raises(RuntimeFailure, match="no free image slot"):
            other.acquire(runtime, saved.tar, 12)
        assert other.holders() == {11}
        store.release(11)
        assert runtime.exists(image_ref(11, repo))  # one acquire still holds it
        store.release(11)
        assert not runtime.exists(image_ref(11, repo))
        assert not runtime.exists(image_id)  # no other name held it: gone

        # a waiting holder gets the slot as soon as it is released
        store.acquire(runtime, saved.tar, 13)
        threading.Timer(0.5, store.release, args=(13,)).start()
        started = time.monotonic()
        other.wait_seconds = 30
        assert other.acquire(runtime, saved.tar, 14) == image_id
        assert time.monotonic() - started < 15

        # leftovers: names of submissions not judged go, kept and held ones stay
        nothing = images.get("nothing")
        for sid in (21, 22):
            runtime.tag(nothing, image_ref(sid, repo))
        removed = ImageStore(tmp_path / "locks", slots=1, repository=repo).sweep(runtime, {22})
        assert removed == [image_ref(21, repo)]
        assert runtime.exists(image_ref(22, repo)) and runtime.exists(image_ref(14, repo))
        assert runtime.exists(nothing)  # its own name keeps the image
        other.release(14)
    finally:
        for name in runtime.images(repo):
            podman(runtime, "rmi", name, check=False)


def test_store_removes_the_image_when_tagging_fails(
    runtime: ContainerRuntime, saved: Saved, tmp_path: Path
) -> None:
    store = ImageStore(tmp_path / "locks", slots=1, repository="localhost/Invalid Name")
    with pytest.raises(RuntimeFailure):
        store.acquire(runtime, saved.tar, 5)
    assert not runtime.exists(saved.image_id)
    assert store.holders() == set()  # the slot is free again
