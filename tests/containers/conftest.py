"""Real algorithm containers (marker ``containers``): the fixture algorithms under
``algorithms/<name>/`` are built FROM the local base image and run through
``app.algorithms.runtime`` with podman (and docker through podman's API socket).

Without a working runtime or without the base image the tests skip with the fix;
with CI=true they fail instead, so CI cannot pass them by skipping."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from app.algorithms.runtime import (
    CaseLimits,
    CaseOutcome,
    CaseRun,
    ContainerRuntime,
    RuntimeUnavailable,
    detect_runtime,
)

HERE = Path(__file__).resolve().parent
ALGORITHMS = HERE / "algorithms"
BASE_IMAGE = "localhost/debian-python:3.11"
TEST_REPOSITORY = "localhost/hecktor-test-algo"
SETUP = "run `docker/local/setup-runtime.sh up` and `docker/local/build-base.sh` (as root)"
DOCKER_SOCKET = "unix:///run/podman/podman.sock"
SEGMENTATION = "images/tumor-lymph-node-segmentation/output.mha"

LIMITS = CaseLimits(
    seconds=30, memory_mb=512, cpus=1.0, pids=64, gpu=False, tmp_mb=64, output_mb=64
)


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail with it in CI (which must run these tests)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the container tests must run here)", pytrace=False)
    pytest.skip(reason)


def case_name(tag: str) -> str:
    return f"hecktor-test-{tag}-{uuid.uuid4().hex[:10]}"


def container_listed(rt: ContainerRuntime, name: str) -> bool:
    res = subprocess.run(
        [rt.executable, "ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(rt.env or {})},
        check=True,
    )
    return name in res.stdout.split()


@dataclass
class Images:
    """The fixture algorithms, built on first use (``podman build`` caches the layers);
    one build at a time across the test workers."""

    rt: ContainerRuntime
    lock_path: Path

    def ref(self, name: str) -> str:
        return f"{TEST_REPOSITORY}/{name}:latest"

    def get(self, name: str) -> str:
        """The image id of the fixture algorithm ``name``."""
        with open(self.lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            res = subprocess.run(
                [
                    self.rt.executable,
                    "build",
                    "--pull=never",
                    "--quiet",
                    "-t",
                    self.ref(name),
                    "-f",
                    str(ALGORITHMS / name / "Containerfile"),
                    str(ALGORITHMS / name),
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        assert res.returncode == 0, f"build of {name} failed:\n{res.stdout}\n{res.stderr}"
        return res.stdout.strip().splitlines()[-1].removeprefix("sha256:")


@pytest.fixture(scope="session")
def runtime() -> ContainerRuntime:
    try:
        rt = detect_runtime("podman")
    except RuntimeUnavailable as exc:
        unavailable(f"{str(exc).split('. Fix:')[0]}: {SETUP}")
        raise
    if not rt.exists(BASE_IMAGE):
        unavailable(f"the base image {BASE_IMAGE} is missing: {SETUP}")
    return rt


@pytest.fixture(scope="session")
def docker_runtime(runtime: ContainerRuntime) -> ContainerRuntime:
    """The docker flavour: the docker CLI against podman's API socket."""
    if shutil.which("docker") is None:
        unavailable(f"the docker CLI is not installed (docker flavour tests): {SETUP}")
    host = os.environ.get("DOCKER_HOST", DOCKER_SOCKET)
    try:
        return detect_runtime("docker", env={"DOCKER_HOST": host})
    except RuntimeUnavailable as exc:
        unavailable(f"docker at {host}: {str(exc).split('. Fix:')[0]}: {SETUP}")
        raise


@pytest.fixture(scope="session")
def images(runtime: ContainerRuntime, tmp_path_factory: pytest.TempPathFactory) -> Images:
    return Images(runtime, tmp_path_factory.getbasetemp().parent / "hecktor-test-build.lock")


# --- inputs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseInput:
    folder: Path
    ct: sitk.Image
    pet: np.ndarray  # z, y, x


def make_input(folder: Path, *, seed: int = 0, extra: dict[str, object] | None = None) -> CaseInput:
    """A small PET/CT case in the container input layout: images/ct/<uuid>.mha and
    images/pet/<uuid>.mha (compressed, on one grid with a rotated direction), ehr.json.
    The PET holds values on both sides of 4 and 8, and exactly 4.0 and 8.0."""
    rng = np.random.default_rng(seed)
    shape = (7, 11, 13)  # z, y, x
    ct_arr = rng.integers(-1000, 1000, size=shape, dtype=np.int16)
    pet = rng.uniform(0.0, 12.0, size=shape).astype(np.float32)
    pet[0, 0, :4] = [4.0, 8.0, np.nextafter(np.float32(4.0), np.float32(0)), 7.999]
    ct = sitk.GetImageFromArray(ct_arr)
    ct.SetSpacing((0.97, 1.25, 3.0))
    ct.SetOrigin((-120.5, 33.25, -700.0))
    c, s = np.cos(0.3), np.sin(0.3)
    ct.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    pet_img = sitk.GetImageFromArray(pet)
    pet_img.CopyInformation(ct)
    for kind, img in (("ct", ct), ("pet", pet_img)):
        d = folder / "images" / kind
        d.mkdir(parents=True)
        sitk.WriteImage(img, str(d / f"{uuid.uuid4()}.mha"), useCompression=True)
    (folder / "ehr.json").write_text(json.dumps({"Age": 61, "Gender": 1}))
    for name, value in (extra or {}).items():
        (folder / name).write_text(json.dumps(value))
    for root, _dirs, files in os.walk(folder):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    return CaseInput(folder=folder, ct=ct, pet=pet)


@pytest.fixture
def case_input(tmp_path: Path) -> CaseInput:
    return make_input(tmp_path / "input")


def expected_labels(pet: np.ndarray) -> np.ndarray:
    """The threshold algorithm's rule, written again: 1 at PET >= 8, 2 at 4 <= PET < 8."""
    out = np.zeros(pet.shape, dtype=np.uint8)
    out[(pet >= 4) & (pet < 8)] = 2
    out[pet >= 8] = 1
    return out


def check_threshold_outputs(out: Path, case: CaseInput) -> None:
    seg = sitk.ReadImage(str(out / SEGMENTATION))
    assert seg.GetPixelID() == sitk.sitkUInt8
    assert seg.GetSize() == case.ct.GetSize()
    np.testing.assert_allclose(seg.GetOrigin(), case.ct.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(seg.GetSpacing(), case.ct.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(seg.GetDirection(), case.ct.GetDirection(), atol=1e-12)
    want = expected_labels(case.pet)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(seg), want)
    assert json.loads((out / "rfs.json").read_text()) == float(np.count_nonzero(want))
    hpv = json.loads((out / "hpv-status.json").read_text())
    assert hpv == pytest.approx(np.count_nonzero(want) / want.size)


# --- running -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """What the block around a run saw inside the output volume."""

    name: str  # the container's
    files: dict[str, int]  # relative path -> size
    full: bool
    capped: bool
    allocated: int  # bytes the volume's image takes on the host


def run_in(
    rt: ContainerRuntime,
    image: str,
    case: CaseInput | Path,
    work: Path,
    *,
    limits: CaseLimits = LIMITS,
    tag: str = "case",
    inside: Callable[[Path], None] | None = None,
    model_dir: Path | None = None,
) -> tuple[CaseOutcome, Seen]:
    """Run ``image`` on the case with a sized /output (``inside`` looks at it before it
    goes); checks that the container, the volume and its image are gone afterwards."""
    from app.algorithms.output_volume import full, is_capped, sized_output

    folder = case.folder if isinstance(case, CaseInput) else case
    out_path = work / f"out-{uuid.uuid4().hex[:6]}"
    name = case_name(tag)
    with sized_output(out_path, limits.output_mb * 1024 * 1024) as out:
        outcome = rt.run_case(
            CaseRun(
                image=image,
                input_dir=folder,
                output_dir=out,
                model_dir=model_dir,
                limits=limits,
                name=name,
            )
        )
        image_file = out.parent / f".{out.name}.ext4"
        seen = Seen(
            name=name,
            files={
                str(p.relative_to(out)): p.stat().st_size
                for p in sorted(out.rglob("*"))
                if p.is_file()
            },
            full=full(out),
            capped=is_capped(out),
            allocated=image_file.stat().st_blocks * 512 if image_file.exists() else 0,
        )
        if inside is not None:
            inside(out)
    assert not out_path.exists(), "the output folder is left behind"
    assert not (out_path.parent / f".{out_path.name}.ext4").exists(), "the volume image is left"
    assert not os.path.ismount(out_path)
    assert not container_listed(rt, name), f"container {name} still exists after the run"
    return outcome, seen


@pytest.fixture
def healthy(runtime: ContainerRuntime, images: Images, tmp_path: Path) -> Iterator[None]:
    """After the test: the threshold algorithm still runs and is right (the host and the
    runtime survived whatever the test ran)."""
    yield
    assert subprocess.run(["true"], timeout=30).returncode == 0, "the host cannot start a process"
    case = make_input(tmp_path / "after-input", seed=5)
    outcome, _ = run_in(runtime, images.get("threshold"), case, tmp_path, tag="after")
    assert outcome.ok, outcome
