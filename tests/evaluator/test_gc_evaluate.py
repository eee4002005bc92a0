"""``hecktor-eval gc-evaluate`` on a grand-challenge-shaped /input built from the
synthetic challenge: the aggregates equal ``hecktor-eval score`` on the team's archive
and tables to the last digit, and each refused input exits 2 with one clear line."""

from __future__ import annotations

import csv
import json
import math
import random
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evaluator.cli import main
from evaluator.gc.errors import GCInputError
from evaluator.gc.evaluate import resolve_settings
from evaluator.gc.mapping import DEFAULT_CASE_PATTERN, compile_pattern
from evaluator.synth import SynthSummary, generate_challenge

sitk = pytest.importorskip("SimpleITK")

TEAM = "good"
SEG = "images/tumor-lymph-node-segmentation"
CT_NAMES = ("{}__CT.nii.gz", "{}_CT.mha", "{}.nii.gz", "{}_0000.nii.gz")


# --- building a grand-challenge /input ---------------------------------------------------


def socket(slug: str, rel: str, kind: str, super_kind: str, pk: int) -> dict[str, Any]:
    return {
        "title": slug.replace("-", " ").title(),
        "description": "",
        "slug": slug,
        "kind": kind,
        "pk": pk,
        "default_value": None,
        "super_kind": super_kind,
        "relative_path": rel,
        "overlay_segments": [],
        "look_up_table": None,
    }


def civ(sock: dict[str, Any], form: str, pk: int, **fields: Any) -> dict[str, Any]:
    """A ComponentInterfaceValue with its socket under ``socket``, ``interface`` or both."""
    value: dict[str, Any] = {"value": None, "file": None, "image": None, "pk": pk, **fields}
    if form in ("socket", "both"):
        value["socket"] = sock
    if form in ("interface", "both"):
        value["interface"] = sock
    return value


def read_table(path: Path) -> dict[str, float]:
    with path.open(newline="") as f:
        return {r["PatientID"]: float(r["Prediction"]) for r in csv.DictReader(f)}


def nifti_to_mha(data: bytes, dest: Path, scratch: Path) -> None:
    """A .nii.gz label map rewritten as grand-challenge stores images: a compressed .mha."""
    scratch.write_bytes(data)
    dest.parent.mkdir(parents=True, exist_ok=True)
    read = sitk.ReadImage(str(scratch))
    image = sitk.GetImageFromArray(sitk.GetArrayFromImage(read))  # as algorithms write it,
    image.CopyInformation(read)  # on the input's grid (no NIfTI metadata carried over)
    sitk.WriteImage(image, str(dest), useCompression=True)


def build_input(s: SynthSummary, dest: Path, *, seed: int = 3) -> dict[str, str]:
    """/input for the team's predictions of every task, one job per case (PatientID ->
    job pk); jobs shuffled, socket forms and CT names varied, half the values null."""
    rng = random.Random(seed)
    sub = s.submissions_dir / TEAM
    rfs, hpv = read_table(sub / "task2.csv"), read_table(sub / "task3.csv")
    with zipfile.ZipFile(sub / "task1.zip") as zf:
        images = {Path(n).name.removesuffix(".nii.gz"): zf.read(n) for n in zf.namelist()}
    jobs, pks = [], {}
    for i, pid in enumerate(s.case_ids):
        pk = str(uuid.UUID(int=rng.getrandbits(128)))
        pks[pid] = pk
        form = ("socket", "interface", "both")[i % 3]
        out = dest / pk / "output"
        image_pk = str(uuid.UUID(int=rng.getrandbits(128)))
        nifti_to_mha(images[pid], out / SEG / f"{image_pk}.mha", dest / "scratch.nii.gz")
        (out / "rfs.json").write_text(json.dumps(rfs[pid]))
        (out / "hpv-status.json").write_text(json.dumps(hpv[pid]))
        in_db = i % 2 == 0  # else stored as a file only: value null in predictions.json
        ct = CT_NAMES[i % len(CT_NAMES)].format(pid)
        ct_pk = str(uuid.UUID(int=rng.getrandbits(128)))
        jobs.append(
            {
                "pk": pk,
                "url": f"https://gc.example/algorithms/x/jobs/{pk}/",
                "api_url": f"https://gc.example/api/v1/algorithms/jobs/{pk}/",
                "algorithm_image": "https://gc.example/api/v1/algorithms/images/1/",
                "status": "Succeeded",
                "hanging_protocol": None,
                "optional_hanging_protocols": [],
                "view_content": {},
                "exec_duration": "PT1M2S",
                "invoke_duration": None,
                "inputs": [
                    civ(
                        socket("ct-image", "images/ct", "Image", "Image", 1),
                        form,
                        10 * i,
                        image={"pk": ct_pk, "name": ct},
                    ),
                    civ(
                        socket("pet-image", "images/pet", "Image", "Image", 2),
                        form,
                        10 * i + 1,
                        image={"pk": str(uuid.UUID(int=rng.getrandbits(128))), "name": "x.mha"},
                    ),
                    civ(
                        socket("electronic-health-record", "ehr.json", "Anything", "Value", 3),
                        form,
                        10 * i + 2,
                        value={"Age": 60 + i, "M-stage": "M0"},
                    ),
                ],
                "outputs": [
                    civ(
                        socket("tumor-lymph-node-segmentation", SEG, "Segmentation", "Image", 4),
                        form,
                        10 * i + 3,
                        image={"pk": image_pk, "name": "output.mha"},
                    ),
                    civ(
                        socket("rfs", "rfs.json", "Float", "Value", 5),
                        form,
                        10 * i + 4,
                        value=rfs[pid] if in_db else None,
                    ),
                    civ(
                        socket("hpv-status", "hpv-status.json", "Float", "Value", 6),
                        form,
                        10 * i + 5,
                        value=hpv[pid] if in_db else None,
                    ),
                ],
            }
        )
    (dest / "scratch.nii.gz").unlink()
    rng.shuffle(jobs)
    (dest / "predictions.json").write_text(json.dumps(jobs, indent=1))
    return pks


@pytest.fixture(scope="module")
def challenge(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return generate_challenge(tmp_path_factory.mktemp("gc") / "synth", small=True, teams=(TEAM,))


@pytest.fixture(scope="module")
def gc_input(
    challenge: SynthSummary, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("gc-input") / "input"
    root.mkdir()
    return root, build_input(challenge, root)


@pytest.fixture()
def fresh_input(
    gc_input: tuple[Path, dict[str, str]], tmp_path: Path
) -> tuple[Path, dict[str, str]]:
    """A copy of the built /input that a test may damage."""
    src, pks = gc_input
    dest = tmp_path / "input"
    shutil.copytree(src, dest)
    return dest, pks


def score_reference(s: SynthSummary, task: int, tmp_path: Path) -> dict[str, Any]:
    """``hecktor-eval score`` on the team's archive (Task 1) or table (Task 2/3)."""
    sub = s.submissions_dir / TEAM
    predictions = {1: sub / "task1.zip", 2: sub / "task2.csv", 3: sub / "task3.csv"}[task]
    out = tmp_path / f"reference-{task}.json"
    gt = s.ground_truth_dir / f"Task {task}"
    rc = main(
        ["score", "--task", str(task), "--ground-truth", str(gt), "--predictions",
         str(predictions), "--output", str(out), "-q"]
    )  # fmt: skip
    assert rc == 0
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def gc_args(s: SynthSummary, input_dir: Path, output: Path, *extra: str) -> list[str]:
    return [
        "gc-evaluate", "--input", str(input_dir), "--output", str(output),
        "--ground-truth", str(s.ground_truth_dir), "--workers", "1", *extra,
    ]  # fmt: skip


def run_gc(
    s: SynthSummary, input_dir: Path, tmp_path: Path, *extra: str
) -> tuple[int, dict[str, Any] | None, str]:
    """gc-evaluate in-process: (exit code, metrics.json or None, stderr)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    output = tmp_path / "output"
    err_file = tmp_path / "stderr.txt"
    with err_file.open("w") as err, _redirect_stderr(err):
        rc = main(gc_args(s, input_dir, output, *extra))
    metrics = output / "metrics.json"
    doc = json.loads(metrics.read_text()) if metrics.exists() else None
    return rc, doc, err_file.read_text()


class _redirect_stderr:
    def __init__(self, f: Any) -> None:
        self.f = f

    def __enter__(self) -> None:
        self.old = sys.stderr
        sys.stderr = self.f

    def __exit__(self, *exc: object) -> None:
        sys.stderr = self.old


# --- equal to `hecktor-eval score` ----------------------------------------------------------


@pytest.mark.parametrize("task", [1, 2, 3])
def test_aggregates_equal_score(
    challenge: SynthSummary, gc_input: tuple[Path, dict[str, str]], tmp_path: Path, task: int
) -> None:
    input_dir, _ = gc_input
    rc, doc, err = run_gc(challenge, input_dir, tmp_path, "--task", str(task))
    assert rc == 0, err
    assert doc is not None
    reference = score_reference(challenge, task, tmp_path)
    assert doc["aggregates"] == reference["metrics"]  # exact: same numbers, same names
    assert doc["case"] == {}
    assert (
        doc["evaluation"]["tasks"][str(task)]["ground_truth_sha256"]
        == (reference["ground_truth_sha256"])
    )
    assert err == ""


def test_subprocess_task_all_per_case(
    challenge: SynthSummary, gc_input: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    input_dir, pks = gc_input
    output = tmp_path / "output"
    res = subprocess.run(
        [sys.executable, "-m", "evaluator.cli", *gc_args(challenge, input_dir, output)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HECKTOR_TASK": "all", "HECKTOR_PER_CASE": "1",
             "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    text = (output / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    doc = json.loads(text)
    assert sorted(doc["aggregates"]) == ["task1", "task2", "task3"]
    scored: dict[str, set[str]] = {pid: {"job"} for pid in challenge.case_ids}
    for task in (1, 2, 3):
        reference = score_reference(challenge, task, tmp_path)
        assert doc["aggregates"][f"task{task}"] == reference["metrics"]
        for c in reference["cases"]:
            scored[c["patient_id"]].add(f"task{task}")
    assert set(doc["case"]) == set(challenge.case_ids)
    hpv = read_table(challenge.submissions_dir / TEAM / "task3.csv")
    for pid, entry in doc["case"].items():
        assert entry["job"] == pks[pid]
        assert set(entry) == scored[pid]  # a case of unknown target: not in that task
        if "task3" in entry:
            assert entry["task3"]["prediction"] == hpv[pid]
        for record in (v for k, v in entry.items() if k != "job"):
            for v in record.values():
                assert v is None or not isinstance(v, float) or math.isfinite(v)
    assert list(tmp_path.glob("hecktor-gc-*")) == []  # the staging folder is removed


def test_per_case_single_task_shape(
    challenge: SynthSummary, gc_input: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    input_dir, pks = gc_input
    rc, doc, err = run_gc(challenge, input_dir, tmp_path, "--task", "2", "--per-case")
    assert rc == 0, err
    assert doc is not None
    reference = score_reference(challenge, 2, tmp_path)
    by_id = {c["patient_id"]: c for c in reference["cases"]}
    assert set(doc["case"]) == set(by_id)
    for pid, entry in doc["case"].items():
        want = {k: v for k, v in by_id[pid].items() if k != "patient_id"}
        assert entry == {"job": pks[pid], **want}


def test_manifest_maps_by_image_pk(
    challenge: SynthSummary, fresh_input: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    input_dir, _ = fresh_input
    jobs = json.loads((input_dir / "predictions.json").read_text())
    manifest = {}
    for job in jobs:
        ct = next(
            v for v in job["inputs"] if (v.get("socket") or v["interface"])["slug"] == "ct-image"
        )
        pid = compile_pattern(DEFAULT_CASE_PATTERN).search(ct["image"]["name"])["patient"]  # type: ignore[index]
        manifest[ct["image"]["pk"]] = pid
        ct["image"]["name"] = "upload.mha"  # the name no longer tells the patient
    (input_dir / "predictions.json").write_text(json.dumps(jobs))
    gt = tmp_path / "gt"
    shutil.copytree(challenge.ground_truth_dir / "Task 2", gt / "Task 2")
    (gt / "manifest.json").write_text(json.dumps(manifest))
    output = tmp_path / "out"
    args = gc_args(challenge, input_dir, output)
    args[args.index("--ground-truth") + 1] = str(gt)
    assert main(args) == 0  # task auto: the only task with a ground truth, Task 2
    doc = json.loads((output / "metrics.json").read_text())
    assert doc["aggregates"] == score_reference(challenge, 2, tmp_path)["metrics"]
    assert doc["evaluation"]["case_rule"] == "manifest.json"


# --- refused inputs: exit 2, one line naming the problem -----------------------------------


def edit_jobs(input_dir: Path, change: Callable[[list[dict[str, Any]]], None]) -> None:
    path = input_dir / "predictions.json"
    jobs = json.loads(path.read_text())
    change(jobs)
    path.write_text(json.dumps(jobs))


def ct_of(job: dict[str, Any]) -> dict[str, Any]:
    return next(
        v for v in job["inputs"] if (v.get("socket") or v["interface"])["slug"] == "ct-image"
    )


def refused(s: SynthSummary, input_dir: Path, tmp_path: Path, task: str) -> str:
    rc, doc, err = run_gc(s, input_dir, tmp_path, "--task", task)
    assert rc == 2, err
    assert doc is None  # nothing written
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_job_mapping_to_no_case(challenge, fresh_input, tmp_path) -> None:
    input_dir, _ = fresh_input
    pk: list[str] = []

    def rename(jobs: list[dict[str, Any]]) -> None:
        ct_of(jobs[0])["image"]["name"] = "ZZZ-999__CT.nii.gz"
        pk.append(jobs[0]["pk"])

    edit_jobs(input_dir, rename)
    line = refused(challenge, input_dir, tmp_path, "2")
    assert f"job {pk[0]}: maps to PatientID 'ZZZ-999'" in line
    assert "not a case of the ground truth" in line


def test_job_name_not_matching_the_pattern(challenge, fresh_input, tmp_path) -> None:
    input_dir, _ = fresh_input
    edit_jobs(input_dir, lambda jobs: ct_of(jobs[0])["image"].update(name="scan"))
    line = refused(challenge, input_dir, tmp_path, "2")
    assert "the CT image name 'scan' does not match the case pattern" in line
    assert "--case-pattern" in line


def test_two_jobs_one_case(challenge, fresh_input, tmp_path) -> None:
    input_dir, pks = fresh_input
    pid = challenge.case_ids[0]
    twin = "00000000-0000-4000-8000-000000000001"
    shutil.copytree(input_dir / pks[pid], input_dir / twin)

    def duplicate(jobs: list[dict[str, Any]]) -> None:
        job = next(j for j in jobs if j["pk"] == pks[pid])
        jobs.append({**job, "pk": twin})

    edit_jobs(input_dir, duplicate)
    line = refused(challenge, input_dir, tmp_path, "2")
    assert f"case {pid}: 2 jobs map to it" in line and twin in line and pks[pid] in line


def test_case_without_job(challenge, fresh_input, tmp_path) -> None:
    input_dir, pks = fresh_input
    pid = challenge.case_ids[-1]
    edit_jobs(input_dir, lambda jobs: jobs.remove(next(j for j in jobs if j["pk"] == pks[pid])))
    line = refused(challenge, input_dir, tmp_path, "1")
    assert f"case {pid}: no job maps to it" in line


def test_nan_rfs(challenge, fresh_input, tmp_path) -> None:
    input_dir, pks = fresh_input
    pid = challenge.case_ids[1]
    (input_dir / pks[pid] / "output" / "rfs.json").write_text("NaN")
    line = refused(challenge, input_dir, tmp_path, "2")
    assert f"case {pid} (job {pks[pid]}, {pks[pid]}/output/rfs.json)" in line
    assert "NaN, not a finite number" in line


def test_rfs_missing_on_disk_uses_the_stored_value_or_refuses(
    challenge, fresh_input, tmp_path
) -> None:
    input_dir, _ = fresh_input
    jobs = json.loads((input_dir / "predictions.json").read_text())
    with_value = [j for j in jobs if j["outputs"][1]["value"] is not None]
    without = [j for j in jobs if j["outputs"][1]["value"] is None]
    (input_dir / with_value[0]["pk"] / "output" / "rfs.json").unlink()
    rc, _, err = run_gc(challenge, input_dir, tmp_path, "--task", "2")
    assert rc == 0, err  # the value stored in predictions.json stands in for the file
    (input_dir / without[0]["pk"] / "output" / "rfs.json").unlink()
    line = refused(challenge, input_dir, tmp_path / "again", "2")
    assert f"job {without[0]['pk']}: no rfs.json at" in line
    assert "no value for it in predictions.json" in line


def test_two_images_in_one_folder(challenge, fresh_input, tmp_path) -> None:
    input_dir, pks = fresh_input
    pid = challenge.case_ids[2]
    folder = input_dir / pks[pid] / "output" / SEG
    (only,) = folder.iterdir()
    shutil.copy(only, folder / "second.mha")
    line = refused(challenge, input_dir, tmp_path, "1")
    assert f"job {pks[pid]}: {folder} holds 2 entries" in line
    assert "second.mha" in line and only.name in line and "expected exactly one .mha" in line


def test_no_image_in_the_folder(challenge, fresh_input, tmp_path) -> None:
    input_dir, pks = fresh_input
    pid = challenge.case_ids[2]
    folder = input_dir / pks[pid] / "output" / SEG
    for p in folder.iterdir():
        p.unlink()
    line = refused(challenge, input_dir, tmp_path, "1")
    assert f"job {pks[pid]}: {folder} holds 0 entries (nothing)" in line


def test_tiff_output(challenge, fresh_input, tmp_path) -> None:
    input_dir, pks = fresh_input
    pid = challenge.case_ids[0]
    folder = input_dir / pks[pid] / "output" / SEG
    (only,) = folder.iterdir()
    only.rename(only.with_suffix(".tif"))
    line = refused(challenge, input_dir, tmp_path, "1")
    assert f"job {pks[pid]}" in line
    assert "TIFF is not a label-map format for this task" in line


def test_wrong_geometry(challenge, fresh_input, tmp_path) -> None:
    input_dir, pks = fresh_input
    pid = challenge.case_ids[0]
    (path,) = (input_dir / pks[pid] / "output" / SEG).iterdir()
    img = sitk.ReadImage(str(path))
    img.SetSpacing(tuple(2.0 * s for s in img.GetSpacing()))
    sitk.WriteImage(img, str(path), useCompression=True)
    line = refused(challenge, input_dir, tmp_path, "1")
    assert f"Task 1 case {pid} (job {pks[pid]}, {pks[pid]}/output/{SEG}/{path.name})" in line


def test_missing_predictions_json(challenge, fresh_input, tmp_path) -> None:
    input_dir, _ = fresh_input
    (input_dir / "predictions.json").unlink()
    line = refused(challenge, input_dir, tmp_path, "2")
    assert f"{input_dir / 'predictions.json'}: not found" in line


def test_malformed_predictions_json(challenge, fresh_input, tmp_path) -> None:
    input_dir, _ = fresh_input
    path = input_dir / "predictions.json"
    path.write_text(path.read_text()[:-20])
    line = refused(challenge, input_dir, tmp_path, "2")
    assert f"{path}: not valid JSON (" in line and "line " in line


def test_failed_job_and_missing_socket(challenge, fresh_input, tmp_path) -> None:
    input_dir, _ = fresh_input
    pk: list[str] = []

    def damage(jobs: list[dict[str, Any]]) -> None:
        jobs[0]["status"] = "Failed"
        pk.append(jobs[0]["pk"])
        jobs[1]["outputs"][0].pop("socket", None)
        jobs[1]["outputs"][0].pop("interface", None)
        pk.append(jobs[1]["pk"])

    edit_jobs(input_dir, damage)
    line = refused(challenge, input_dir, tmp_path, "2")
    assert line.startswith("error: 2 problems: ")
    assert f"job {pk[0]}: status is 'Failed', expected 'Succeeded'" in line
    assert f'job {pk[1]} outputs[0]: has neither a "socket" nor an "interface" object' in line


def test_missing_ground_truth_task(challenge, fresh_input, tmp_path) -> None:
    input_dir, _ = fresh_input
    output = tmp_path / "out"
    args = gc_args(challenge, input_dir, output, "--task", "all")
    args[args.index("--ground-truth") + 1] = str(challenge.ground_truth_dir / "Task 1")
    assert main(args) == 2
    assert not output.exists()


# --- settings ------------------------------------------------------------------------------


def test_flag_beats_environment_beats_default() -> None:
    env = {"HECKTOR_TASK": "3", "HECKTOR_PER_CASE": "yes", "HECKTOR_INPUT_DIR": "/in"}
    s = resolve_settings({"task": "2", "per_case": False}, env)
    assert (s.task, s.per_case, s.input_dir) == ("2", False, Path("/in"))
    s = resolve_settings({}, env)
    assert (s.task, s.per_case) == ("3", True)
    s = resolve_settings({}, {})
    assert s.task is None and s.output_dir == Path("/output")  # the protocol's default
    assert s.ground_truth_dir == Path("/opt/ml/input/data/ground_truth")
    with pytest.raises(GCInputError, match="HECKTOR_TASK='7'"):
        resolve_settings({}, {"HECKTOR_TASK": "7"})
    with pytest.raises(GCInputError, match="HECKTOR_PER_CASE='maybe'"):
        resolve_settings({}, {"HECKTOR_PER_CASE": "maybe"})


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("CHUM-001__CT.nii.gz", "CHUM-001"),
        ("CHUM-001_CT.mha", "CHUM-001"),
        ("CHUM-001.nii.gz", "CHUM-001"),
        ("MDA-010_0000.nii.gz", "MDA-010"),
        ("HGJ-7__ct.nii", "HGJ-7"),
    ],
)
def test_default_case_pattern(name: str, patient: str) -> None:
    m = compile_pattern(DEFAULT_CASE_PATTERN).search(name)
    assert m is not None and m["patient"] == patient


# --- hecktor2026: one job writes all four outputs ------------------------------------------

SEG_2026 = "images/head-neck-tumor-segmentation"


def build_input_2026(s: SynthSummary, dest: Path, *, seed: int = 5) -> dict[str, str]:
    """/input of the 2026 team: per job a segmentation .mha, rfs.json, t-stage.json and
    n-stage.json (the stages stored in predictions.json, rfs.json only on disk)."""
    rng = random.Random(seed)
    sub = s.submissions_dir / TEAM
    files: dict[str, dict[str, bytes]] = {}
    for z in ("task1.zip", "task2.zip", "task3.zip"):
        with zipfile.ZipFile(sub / z) as zf:
            for name in zf.namelist():
                base = Path(name).name
                pid = (
                    base.removesuffix(".nii.gz") if base.endswith(".nii.gz") else name.split("/")[0]
                )
                files.setdefault(pid, {})[base] = zf.read(name)
    jobs, pks = [], {}
    for i, pid in enumerate(s.case_ids):
        pk, image_pk = (str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(2))
        pks[pid] = pk
        out = dest / pk / "output"
        nifti_to_mha(
            files[pid][f"{pid}.nii.gz"], out / SEG_2026 / f"{image_pk}.mha", dest / "x.nii.gz"
        )
        for name in ("rfs.json", "t-stage.json", "n-stage.json"):
            (out / name).write_bytes(files[pid][name])
        form = ("socket", "interface")[i % 2]
        ct = {"pk": str(uuid.UUID(int=rng.getrandbits(128))), "name": f"{pid}__CT.nii.gz"}
        values = [
            civ(socket("rfs", "rfs.json", "Float", "File", 5), form, 2),
            civ(socket("t-stage", "t-stage.json", "String", "Value", 6), form, 3,
                value=json.loads(files[pid]["t-stage.json"])),
            civ(socket("n-stage", "n-stage.json", "String", "Value", 7), form, 4,
                value=json.loads(files[pid]["n-stage.json"])),
        ]  # fmt: skip
        seg = socket("head-neck-tumor-segmentation", SEG_2026, "Segmentation", "Image", 4)
        seg_value = civ(seg, form, 1, image={"pk": image_pk, "name": "output.mha"})
        ct_value = civ(socket("ct-image", "images/ct", "Image", "Image", 1), form, 0, image=ct)
        jobs.append(
            {
                "pk": pk,
                "status": "Succeeded",
                "inputs": [ct_value],
                "outputs": [seg_value, *values],
            }
        )
    (dest / "x.nii.gz").unlink()
    rng.shuffle(jobs)
    (dest / "predictions.json").write_text(json.dumps(jobs))
    return pks


def test_hecktor2026_all_tasks_equal_score(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    s = generate_challenge(
        tmp_path_factory.mktemp("gc26") / "synth", small=True, teams=(TEAM,), edition=2026
    )
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    pks = build_input_2026(s, input_dir)
    rc, doc, err = run_gc(s, input_dir, tmp_path, "--protocol", "hecktor2026", "--per-case")
    assert rc == 0, err
    assert doc is not None
    assert doc["evaluation"]["protocol"]["name"] == "hecktor2026"
    assert sorted(doc["aggregates"]) == ["task1", "task2", "task3"]  # all: the 2026 default
    for task in (1, 2, 3):
        out = tmp_path / f"ref{task}.json"
        rc = main(
            ["score", "--task", str(task), "--protocol", "hecktor2026", "--ground-truth",
             str(s.ground_truth_dir / f"Task {task}"), "--predictions",
             str(s.submissions_dir / TEAM / f"task{task}.zip"), "--output", str(out), "-q"]
        )  # fmt: skip
        assert rc == 0
        assert doc["aggregates"][f"task{task}"] == json.loads(out.read_text())["metrics"]
    assert {e["job"] for e in doc["case"].values()} == set(pks.values())


def test_non_finite_numbers_are_left_out_and_named() -> None:
    from evaluator.gc.mapping import CaseMap
    from evaluator.gc.metrics_json import metrics_document
    from evaluator.gc.predictions import Job

    job = Job(pk="p1", inputs=(), outputs=())
    doc: Any = {
        "task": 2,
        "protocol": {"name": "hecktor2025", "version": "1", "sha256": "x"},
        "ground_truth_sha256": "g",
        "metrics": {"c_index": float("nan"), "n": 3.0},
        "cases": [{"patient_id": "A-1", "center": "A", "prediction": float("inf"), "time": 1.0}],
    }
    out = metrics_document({2: doc}, cases=CaseMap(jobs={"A-1": job}, rule="r"), per_case=True)
    assert out["aggregates"] == {"n": 3.0}
    assert out["case"] == {"A-1": {"job": "p1", "center": "A", "time": 1.0}}
    assert out["notes"] == [
        "task 2 aggregate c_index is nan, left out",
        "task 2 case A-1 prediction is inf, left out",
    ]
    json.dumps(out, allow_nan=False)  # writable as strict JSON


def test_protocol_from_the_ground_truth(
    challenge: SynthSummary, gc_input: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    input_dir, _ = gc_input
    gt = tmp_path / "gt"
    shutil.copytree(challenge.ground_truth_dir / "Task 3", gt / "Task 3")
    (gt / "protocol.json").write_text(json.dumps({"name": "hecktor2025", "hpv_threshold": 0.9}))
    output = tmp_path / "out"
    args = gc_args(challenge, input_dir, output)
    args[args.index("--ground-truth") + 1] = str(gt)
    assert main(args) == 0
    doc = json.loads((output / "metrics.json").read_text())
    assert (
        doc["evaluation"]["protocol"]["sha256"]
        != score_reference(challenge, 3, tmp_path)["protocol"]["sha256"]
    )
    (gt / "protocol.json").write_text("{not json")
    assert main(args) == 2


def test_internal_error_is_one_line_and_exit_1(
    challenge: SynthSummary,
    gc_input: tuple[Path, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import evaluator.gc.evaluate as module

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(module, "score_submission", broken)
    monkeypatch.delenv("HECKTOR_DEBUG", raising=False)
    input_dir, _ = gc_input
    rc, doc, err = run_gc(challenge, input_dir, tmp_path, "--task", "2")
    assert (rc, doc) == (1, None)
    assert err.strip() == "internal error: RuntimeError: disk on fire"


def test_sockets_come_from_the_edition_and_match_the_table_readers() -> None:
    from dataclasses import replace

    from evaluator.gc.sockets import sockets_for
    from evaluator.io.table_staging import STAGE_FILES
    from evaluator.io.table_text import CASE_FILES
    from evaluator.protocol import HECKTOR2025, HECKTOR2026

    s25 = sockets_for(HECKTOR2025)
    assert s25.default_task == "auto"
    assert [o.case_file for o in s25.tasks[2]] == [CASE_FILES[2]]
    assert [o.case_file for o in s25.tasks[3]] == [CASE_FILES[3]]
    s26 = sockets_for(HECKTOR2026)
    assert s26.default_task == "all"
    assert s26.image_socket(1) is not None
    assert s26.image_socket(1).relative_path == "images/head-neck-tumor-segmentation"
    assert tuple(o.case_file for o in s26.tasks[3]) == STAGE_FILES
    # an organizer's variant of an edition, under its own name, keeps the sockets
    variant = replace(HECKTOR2025, name="hecktor2025-strict-iou", iou_strict=True)
    assert sockets_for(variant).tasks == s25.tasks
