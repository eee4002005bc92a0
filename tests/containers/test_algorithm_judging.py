"""Algorithm submissions judged end to end with real containers: an image tarball
uploaded through the API, run case by case on the phase's hidden inputs by the local
dispatcher's judges, scored onto the same leaderboard as prediction archives; and every
hostile algorithm named for what it did, with the next submission judged as usual."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from app.algorithms.runtime import ContainerRuntime
from app.jobs.algorithm_job import container_prefix, image_repository
from tests.app.conftest import ORG, Api, Challenge, auth, judged_service
from tests.containers.conftest import Images

pytestmark = pytest.mark.containers

CASE_SECONDS = 10
PHASE = "final"
HIDDEN = "final-test"
GPU = "final-gpu"
EVERY = "final-every-case"  # fail_fast off


def save(runtime: ContainerRuntime, image: str, dest: Path, *, gz: bool = False) -> Path:
    """``podman save`` of ``image`` (the docker-save layout), gzipped when ``gz``."""
    tar = dest.with_suffix(".tar") if not gz else dest.with_name(dest.name + ".tmp.tar")
    subprocess.run(
        [runtime.executable, "save", "--format", "docker-archive", "-o", str(tar), image],
        check=True,
        capture_output=True,
        timeout=300,
    )
    if not gz:
        return tar
    out = dest.with_suffix(".tar.gz")
    with open(tar, "rb") as src, gzip.open(out, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    tar.unlink()
    return out


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Challenge:
    from evaluator.synth import generate_challenge

    root = tmp_path_factory.mktemp("algo-challenge") / "c"
    generate_challenge(root, seed=3, small=True)
    return Challenge(root)


@pytest.fixture(scope="module")
def tarballs(
    runtime: ContainerRuntime, images: Images, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Each fixture algorithm saved as a tarball (the threshold one also gzipped)."""
    folder = tmp_path_factory.mktemp("tarballs")
    names = ("threshold", "memory", "sleeper", "network", "forkbomb", "garbage", "nothing")
    names += ("bigwriter", "crash", "probe")
    out = {n: save(runtime, images.get(n), folder / n) for n in names}
    out["threshold.gz"] = save(runtime, images.get("threshold"), folder / "threshold-gz", gz=True)
    return out


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, synth: Challenge, runtime: ContainerRuntime
) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("algo-service")
    with judged_service(tmp, synth, container_runtime="podman", job_timeout_seconds=300) as (
        api,
        _d,
    ):
        limits = {
            "case_seconds": CASE_SECONDS,
            "case_memory_mb": 256,
            "case_pids": 64,
            "case_tmp_mb": 32,
            "case_output_mb": 32,
            "parallel_cases": 2,
            "daily_limit": 100,
            "failed_limit": 100,
            "dry_run_limit": 100,
        }
        inputs = str(synth.root / "inputs")
        api.create_phase(PHASE, kind="both", inputs=inputs, tasks=[1, 2], **limits)
        api.create_phase(HIDDEN, kind="algorithm", inputs=inputs, tasks=[1], hidden=True, **limits)
        api.create_phase(GPU, kind="algorithm", inputs=inputs, tasks=[1], case_gpu=True, **limits)
        api.create_phase(
            EVERY, kind="algorithm", inputs=inputs, tasks=[1], fail_fast=False, **limits
        )
        api.data_dir = tmp / "data"  # type: ignore[attr-defined]
        yield api


@pytest.fixture(scope="module")
def tokens(service: Api) -> dict[str, str]:
    return {t: service.create_team(t) for t in ("algo", "archive", "hostile", "tester")}


def threshold_archive(synth: Challenge, dest: Path) -> Path:
    """The threshold rule applied to the released PET with numpy (independently of the
    container and of the MHA conversion), as a Task 1 prediction archive."""
    with zipfile.ZipFile(dest, "w") as zf:
        for case in sorted((synth.root / "inputs").iterdir()):
            pid = case.name
            pet_img = nib.load(case / f"{pid}__PT.nii.gz")
            pet = np.asanyarray(pet_img.dataobj).astype(np.float32)
            labels = np.zeros(pet.shape, dtype=np.uint8)
            labels[(pet >= 4) & (pet < 8)] = 2
            labels[pet >= 8] = 1
            gt = nib.load(synth.ground_truth / "Task 1" / pid / f"{pid}.nii.gz")
            img = nib.Nifti1Image(labels, gt.affine)
            path = dest.parent / f"{pid}.nii.gz"
            nib.save(img, path)
            zf.write(path, f"{pid}.nii.gz")
            path.unlink()
    return dest


def cli_score(synth: Challenge, predictions: Path, task: int) -> dict[str, Any]:
    exe = Path(sys.executable).with_name("hecktor-eval")
    res = subprocess.run(
        [
            str(exe),
            "score",
            "--task",
            str(task),
            "--quiet",
            "--ground-truth",
            str(synth.ground_truth / f"Task {task}"),
            "--predictions",
            str(predictions),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return dict(json.loads(res.stdout)["metrics"])


def submit(api: Api, token: str, phase: str, task: int, path: Path, **kw: Any) -> int:
    return api.submit_ok(token, phase, task, path, **kw)


def errors_of(doc: dict[str, Any]) -> str:
    return " | ".join(e["message"] for e in doc.get("errors") or [])


def test_threshold_algorithm_lands_on_the_board_with_the_scores_of_its_outputs(
    service: Api,
    tokens: dict[str, str],
    tarballs: dict[str, Path],
    synth: Challenge,
    tmp_path: Path,
) -> None:
    algo = submit(service, tokens["algo"], PHASE, 1, tarballs["threshold"])
    archive = threshold_archive(synth, tmp_path / "threshold.zip")
    arch = submit(service, tokens["archive"], PHASE, 1, archive)
    notes = set()  # what the judge says it is doing, as it goes
    deadline = time.monotonic() + 300
    while (doc := service.status(tokens["algo"], algo))["status"] in ("queued", "running"):
        notes.add(doc["progress"]["note"])
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert any(n.startswith("running case ") and n.endswith(" done)") for n in notes), notes
    algo_doc = service.wait(tokens["algo"], algo, timeout=300)
    assert algo_doc["kind"] == "algorithm" and algo_doc["progress"]["note"] == ""
    arch_doc = service.wait(tokens["archive"], arch, timeout=300)
    assert algo_doc["status"] == "scored", errors_of(algo_doc)
    assert arch_doc["status"] == "scored", errors_of(arch_doc)
    expected = cli_score(synth, archive, 1)
    got = algo_doc["result"]["metrics"]
    assert got == arch_doc["result"]["metrics"]
    for key, value in expected.items():
        assert got[key] == value, key
    # it scores well but not perfectly
    assert 0.5 < got["gtvp_dsc_mean"] < 1.0
    board = service.leaderboard(PHASE, 1)
    rows = {r["team"]: r for r in board["rows"]}
    assert rows["algo"]["submission_id"] == algo and rows["archive"]["submission_id"] == arch
    assert rows["algo"]["rank"] == rows["archive"]["rank"]
    assert len(algo_doc["result"]["cases"]) == 12

    # the runtime log: organizers only
    r = service.client.get(f"/api/v1/admin/submissions/{algo}/logs", headers=auth(ORG))
    assert r.status_code == 200 and "case 12 of 12" in r.text
    r = service.client.get(f"/api/v1/admin/submissions/{algo}/logs", headers=auth(tokens["algo"]))
    assert r.status_code == 403

    # a gzipped tarball of the same image, for Task 2 (the same image writes rfs.json)
    sid = submit(service, tokens["algo"], PHASE, 2, tarballs["threshold.gz"])
    doc = service.wait(tokens["algo"], sid, timeout=300)
    assert doc["status"] == "scored", errors_of(doc)
    assert 0.0 <= doc["result"]["metrics"]["c_index"] <= 1.0


def test_a_dry_run_loads_the_image_and_runs_nothing(
    service: Api, tokens: dict[str, str], tarballs: dict[str, Path]
) -> None:
    sid = submit(service, tokens["tester"], PHASE, 1, tarballs["threshold"], dry_run=True)
    doc = service.wait(tokens["tester"], sid, timeout=300)
    assert doc["status"] == "valid", errors_of(doc)
    assert "runs nothing" in json.dumps(doc["result"])
    r = service.client.get(f"/api/v1/admin/submissions/{sid}/logs", headers=auth(ORG))
    assert r.status_code == 200 and "== case" not in r.text


HOSTILE: dict[str, tuple[int, list[str]]] = {
    # name: (task, words the participant's message must hold)
    "memory": (1, ["memory limit of 256 MB"]),
    "sleeper": (1, [f"time limit of {CASE_SECONDS} s"]),
    "forkbomb": (1, ["process limit of 64", "fork loop"]),
    "bigwriter": (1, ["output limit of 32 MB", "/tmp"]),
    "garbage": (1, ["not a MetaImage"]),
    "nothing": (1, ["missing"]),
    "crash": (1, ["exited with code 2", "its last line on stderr"]),
}


def test_hostile_algorithms_are_named_and_the_next_one_is_judged(
    service: Api, tokens: dict[str, str], tarballs: dict[str, Path], runtime: ContainerRuntime
) -> None:
    token = tokens["hostile"]
    ids = {n: submit(service, token, PHASE, task, tarballs[n]) for n, (task, _) in HOSTILE.items()}
    net = submit(service, token, PHASE, 2, tarballs["network"])
    docs = {n: service.wait(token, sid, timeout=600) for n, sid in ids.items()}
    for name, (_, words) in HOSTILE.items():
        doc = docs[name]
        assert doc["status"] == "failed", (name, doc)
        text = errors_of(doc)
        assert "case " in text and " of 12" in text, (name, text)
        for w in words:
            assert w in text, (name, w, text)
        assert all(e["kind"] == "algorithm" for e in doc["errors"]), (name, doc["errors"])
    # the network try: nothing reached, so it wrote its outputs and was scored
    doc = service.wait(token, net, timeout=300)
    assert doc["status"] == "scored", errors_of(doc)
    log = service.client.get(f"/api/v1/admin/submissions/{net}/logs", headers=auth(ORG)).text
    assert "CONNECTED" not in log and "refused" in log
    # no container of these submissions is left, and no loaded image
    names = subprocess.run(
        [runtime.executable, "ps", "-a", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    data_dir = service.data_dir  # type: ignore[attr-defined]
    prefixes = [container_prefix(data_dir, sid) for sid in [*ids.values(), net]]
    assert not [n for n in names if n.startswith(tuple(prefixes))]
    images = subprocess.run(
        [runtime.executable, "images", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    repo = image_repository(data_dir)
    assert not [i for sid in ids.values() for i in images if i == f"{repo}:sub-{sid}"]
    # and the next submission is judged as usual
    sid = submit(service, token, PHASE, 1, tarballs["threshold"])
    doc = service.wait(token, sid, timeout=300)
    assert doc["status"] == "scored", errors_of(doc)


def test_a_hidden_phase_names_only_the_rule(
    service: Api, tokens: dict[str, str], tarballs: dict[str, Path]
) -> None:
    token = tokens["tester"]
    crash = submit(service, token, HIDDEN, 1, tarballs["crash"])
    mem = submit(service, token, HIDDEN, 1, tarballs["memory"])
    crash_doc = service.wait(token, crash, timeout=300)
    mem_doc = service.wait(token, mem, timeout=300)
    assert crash_doc["status"] == mem_doc["status"] == "failed"
    text = errors_of(crash_doc)
    assert text == "a case failed: the algorithm exited with an error", text
    assert "stderr" not in text and " of 12" not in text
    assert errors_of(mem_doc) == "a case failed: memory limit (256 MB)"
    # the organizer still has the whole story
    log = service.client.get(f"/api/v1/admin/submissions/{crash}/logs", headers=auth(ORG)).text
    assert "exit code 2" in log


def test_every_output_volume_is_unmounted(service: Api) -> None:
    data_dir = str(service.data_dir)  # type: ignore[attr-defined]
    mounts = Path("/proc/mounts").read_text().splitlines()
    assert not [line for line in mounts if data_dir in line]


def test_the_model_tarball_is_mounted_read_only(
    service: Api, tokens: dict[str, str], tarballs: dict[str, Path], tmp_path: Path
) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00" * 1000)
    model = tmp_path / "model.tar.gz"
    with tarfile.open(model, "w:gz") as tf:
        tf.add(weights, "weights.bin")
    r = service.client.post(
        "/api/v1/submissions",
        data={"phase": PHASE, "task": "2"},
        files=[
            ("file", ("probe.tar", tarballs["probe"].read_bytes(), "application/x-tar")),
            ("model", ("model.tar.gz", model.read_bytes(), "application/gzip")),
        ],
        headers=auth(tokens["tester"]),
    )
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    doc = service.wait(tokens["tester"], sid, timeout=300)
    # the probe writes no rfs.json: the case fails, and the log shows what it saw
    assert doc["status"] == "failed" and "rfs.json is missing" in errors_of(doc), doc
    log = service.client.get(f"/api/v1/admin/submissions/{sid}/logs", headers=auth(ORG)).text
    seen = json.loads(next(line for line in log.splitlines() if line.startswith('{"uid"')))
    assert seen["model_files"] == ["weights.bin"]
    assert seen["model"] == "Read-only file system" and seen["input"] == "Read-only file system"
    assert seen["uid"] == 65534 and seen["interfaces"] == ["lo"]


def test_a_gpu_phase_on_a_machine_without_one_is_a_platform_failure(
    service: Api, tokens: dict[str, str], tarballs: dict[str, Path]
) -> None:
    sid = submit(service, tokens["tester"], GPU, 1, tarballs["threshold"])
    doc = service.wait(tokens["tester"], sid, timeout=300)
    assert doc["status"] == "failed"
    assert [e["kind"] for e in doc["errors"]] == ["platform"]
    assert "GPU" in errors_of(doc) and "does not count against your quota" in errors_of(doc)


def test_without_fail_fast_every_case_runs_and_every_failure_is_listed(
    service: Api, tokens: dict[str, str], tarballs: dict[str, Path]
) -> None:
    sid = submit(service, tokens["tester"], EVERY, 1, tarballs["nothing"])
    doc = service.wait(tokens["tester"], sid, timeout=300)
    assert doc["status"] == "failed"
    messages = [e["message"] for e in doc["errors"]]
    assert [m.split(":")[0] for m in messages] == [f"case {i} of 12" for i in range(1, 13)]
    assert all("is missing" in m for m in messages)
    assert "were not run" not in errors_of(doc)
    log = service.client.get(f"/api/v1/admin/submissions/{sid}/logs", headers=auth(ORG)).text
    assert all(f"== case {i} of 12 " in log for i in range(1, 13))
