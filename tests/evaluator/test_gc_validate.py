"""A case's /output checked as grand-challenge checks it (every rule with its message's
key words, and that messages never show what a file holds), then staged and scored by
``score_submission``: the DSC equals a numpy computation, the C-index lifelines'."""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evaluator.gc.validate import CaseOutputProblem, stage_case_outputs, validate_case_outputs
from evaluator.protocol import HECKTOR2025, HECKTOR2026, Protocol
from evaluator.scoring import load_ground_truth, score_submission

sitk = pytest.importorskip("SimpleITK")

SEG25 = "images/tumor-lymph-node-segmentation"
SEG26 = "images/head-neck-tumor-segmentation"
SPACING = (1.0, 1.0, 2.0)


def write_mha(path: Path, zyx: np.ndarray, *, spacing: tuple[float, ...] = SPACING) -> Path:
    """``zyx`` (SimpleITK's array order) as a compressed .mha, as algorithms write it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(zyx)
    image.SetSpacing(spacing[: image.GetDimension()])
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def label_map(seed: int = 0, shape: tuple[int, int, int] = (6, 16, 16)) -> np.ndarray:
    """A small uint8 label map with a GTVp box and a GTVn box (z, y, x)."""
    rng = np.random.default_rng(seed)
    arr = np.zeros(shape, dtype=np.uint8)
    z, y, x = (int(v) for v in rng.integers(0, 3, size=3))
    arr[z : z + 3, y + 2 : y + 8, x + 2 : x + 8] = 1
    arr[z + 1 : z + 4, y + 9 : y + 12, x + 9 : x + 13] = 2
    return arr


def output(tmp_path: Path, name: str = "output") -> Path:
    out = tmp_path / name
    out.mkdir(parents=True)
    return out


def write_json(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def only(problems: list[CaseOutputProblem]) -> CaseOutputProblem:
    assert len(problems) == 1, [p.message for p in problems]
    return problems[0]


def seg_case(tmp_path: Path, seg: str = SEG25, **extra: str) -> Path:
    out = output(tmp_path)
    write_mha(out / seg / "output.mha", label_map())
    for rel, text in extra.items():
        write_json(out / rel, text)
    return out


def full_2026_case(tmp_path: Path) -> Path:
    """Every output a 2026 container writes for one case."""
    out = output(tmp_path)
    write_mha(out / SEG26 / "output.mha", label_map())
    write_json(out / "rfs.json", "1042.0")
    write_json(out / "t-stage.json", '"T2"')
    write_json(out / "n-stage.json", '"N1"')
    return out


# --- valid outputs ------------------------------------------------------------------------


def test_valid_outputs_of_each_edition_and_task(tmp_path: Path) -> None:
    assert validate_case_outputs(seg_case(tmp_path / "a"), 1, HECKTOR2025) == []
    assert (
        validate_case_outputs(
            write_json(tmp_path / "b" / "rfs.json", "-0.7").parent, 2, HECKTOR2025
        )
        == []
    )
    out = write_json(tmp_path / "c" / "hpv-status.json", "1").parent  # the 2025 template's 0/1
    assert validate_case_outputs(out, 3, HECKTOR2025) == []
    full = full_2026_case(tmp_path / "d")
    for task in (1, 2, 3):  # one job writes every task's outputs: the others' are allowed
        assert validate_case_outputs(full, task, HECKTOR2026) == []


def test_an_accepted_alternative_path_is_valid_and_two_of_them_are_extra(tmp_path: Path) -> None:
    out = seg_case(tmp_path, seg=SEG26)  # the 2026 path in a 2025 phase: accepted
    assert validate_case_outputs(out, 1, HECKTOR2025) == []
    write_mha(out / SEG25 / "output.mha", label_map())
    p = only(validate_case_outputs(out, 1, HECKTOR2025))
    assert (p.rule, p.path) == ("extra", SEG26)
    assert "also written to" in p.message and f"write it once, to {SEG25}" in p.message


# --- missing --------------------------------------------------------------------------------


def test_missing_image_and_value_outputs(tmp_path: Path) -> None:
    empty = output(tmp_path, "empty")
    p = only(validate_case_outputs(empty, 1, HECKTOR2025))
    assert (p.rule, p.path) == ("missing", SEG25)
    assert "is missing" in p.message and f"/output/{SEG25}/output.mha" in p.message
    assert "SimpleITK.WriteImage" in p.message
    p = only(validate_case_outputs(empty, 2, HECKTOR2025))
    assert (p.rule, p.path) == ("missing", "rfs.json")
    assert "a number as JSON to /output/rfs.json" in p.message and "1042.0" in p.message
    problems = validate_case_outputs(empty, 3, HECKTOR2026)
    assert [(p.rule, p.path) for p in problems] == [
        ("missing", "t-stage.json"),
        ("missing", "n-stage.json"),
    ]
    assert '"T2"' in problems[0].message and '"N1"' in problems[1].message


def test_an_empty_image_folder_is_missing(tmp_path: Path) -> None:
    out = output(tmp_path)
    (out / SEG25).mkdir(parents=True)
    p = only(validate_case_outputs(out, 1, HECKTOR2025))
    assert (p.rule, p.path) == ("missing", SEG25)
    assert "empty folder" in p.message and "output.mha" in p.message


# --- extra ------------------------------------------------------------------------------------


def test_extra_entries_are_named_with_the_declared_outputs(tmp_path: Path) -> None:
    out = seg_case(tmp_path, **{"rfs.json": "1.0", "notes.txt": "x"})
    (out / "images" / "debug").mkdir()
    (out / "cache").mkdir()
    problems = validate_case_outputs(out, 1, HECKTOR2025)
    # rfs.json is Task 2's output: one image may serve every task of its edition
    assert [(p.rule, p.path) for p in problems] == [
        ("extra", "cache"),
        ("extra", "notes.txt"),
        ("extra", "images/debug"),
    ]
    by_path = {p.path: p.message for p in problems}
    assert "not an output of Task 1" in by_path["notes.txt"] and "/tmp" in by_path["notes.txt"]
    assert f"{SEG25}/ (one .mha)" in by_path["images/debug"]


def test_the_other_tasks_outputs_are_allowed_and_other_editions_are_extra(
    tmp_path: Path,
) -> None:
    full = full_2026_case(tmp_path)
    write_json(full / "notes.txt", "x")
    for task in (1, 2, 3):
        p = only(validate_case_outputs(full, task, HECKTOR2026))
        assert (p.rule, p.path) == ("extra", "notes.txt")
        assert f"not an output of Task {task}" in p.message
    # 2025 declares no stages: those files are extra there (and 2026's segmentation
    # folder, under 2025's images/, only when Task 1 is asked for)
    problems = validate_case_outputs(full, 2, HECKTOR2025)
    assert {p.path for p in problems if p.rule == "extra"} == {
        "n-stage.json",
        "notes.txt",
        "t-stage.json",
    }


def test_hidden_files_are_extra_and_said_to_be_hidden(tmp_path: Path) -> None:
    out = seg_case(tmp_path)
    (out / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (out / SEG25 / ".output.mha.swp").write_bytes(b"x")
    problems = validate_case_outputs(out, 1, HECKTOR2025)
    assert sorted((p.rule, p.path) for p in problems) == [
        ("extra", ".DS_Store"),
        ("extra", f"{SEG25}/.output.mha.swp"),
    ]
    assert all("hidden file" in p.message for p in problems)


def test_odd_names_are_shown_escaped_and_short(tmp_path: Path) -> None:
    out = seg_case(tmp_path)
    (out / "a\nb").write_text("x")
    (out / ("x" * 200)).write_text("x")
    problems = validate_case_outputs(out, 1, HECKTOR2025)
    assert [p.rule for p in problems] == ["extra", "extra"]
    assert problems[0].message.startswith("'a\\nb' is not an output of Task 1")
    assert "x" * 78 not in problems[1].message and "x" * 60 in problems[1].message


def test_many_extras_are_counted_not_listed(tmp_path: Path) -> None:
    out = seg_case(tmp_path)
    for i in range(50):
        (out / f"junk{i:02d}.txt").write_text("x")
    problems = validate_case_outputs(out, 1, HECKTOR2025)
    assert len(problems) == 20 and all(p.rule == "extra" for p in problems)
    assert "... and 31 more entries" in problems[-1].message


# --- image outputs -------------------------------------------------------------------------


def test_two_images_in_the_socket_folder(tmp_path: Path) -> None:
    out = seg_case(tmp_path)
    write_mha(out / SEG25 / "second.mha", label_map(1))
    p = only(validate_case_outputs(out, 1, HECKTOR2025))
    assert (p.rule, p.path) == ("invalid", SEG25)
    assert "holds 2 entries (output.mha, second.mha)" in p.message
    assert "exactly one image" in p.message


def test_nifti_output(tmp_path: Path) -> None:
    out = output(tmp_path)
    (out / SEG25).mkdir(parents=True)
    image = sitk.GetImageFromArray(label_map())
    sitk.WriteImage(image, str(out / SEG25 / "output.nii.gz"))
    p = only(validate_case_outputs(out, 1, HECKTOR2025))
    assert (p.rule, p.path) == ("invalid", f"{SEG25}/output.nii.gz")
    assert "is a NIfTI file" in p.message and "fails the job" in p.message
    assert "output.mha" in p.message and "SimpleITK.WriteImage" in p.message


def test_tiff_and_mhd_outputs(tmp_path: Path) -> None:
    out = output(tmp_path, "tif")
    (out / SEG25).mkdir(parents=True)
    sitk.WriteImage(sitk.GetImageFromArray(label_map()), str(out / SEG25 / "output.tif"))
    p = only(validate_case_outputs(out, 1, HECKTOR2025))
    assert (p.rule, p.path) == ("invalid", f"{SEG25}/output.tif")
    assert "is a TIFF file" in p.message and "output.mha" in p.message
    out = output(tmp_path, "mhd")
    (out / SEG25).mkdir(parents=True)
    sitk.WriteImage(sitk.GetImageFromArray(label_map()), str(out / SEG25 / "output.mhd"))
    p = only(validate_case_outputs(out, 1, HECKTOR2025))  # .mhd and .raw: two entries
    assert (p.rule, p.path) == ("invalid", SEG25) and "holds 2 entries" in p.message


def test_sub_folder_in_the_socket_folder(tmp_path: Path) -> None:
    out = output(tmp_path)
    write_mha(out / SEG25 / "nested" / "output.mha", label_map())
    p = only(validate_case_outputs(out, 1, HECKTOR2025))
    assert (p.rule, p.path) == ("invalid", f"{SEG25}/nested")
    assert "is a sub-folder" in p.message and f"directly in {SEG25}/" in p.message


def test_socket_folder_written_as_a_file(tmp_path: Path) -> None:
    out = output(tmp_path)
    write_mha(out / "images" / "x.mha", label_map())
    os.replace(out / "images" / "x.mha", out / SEG25)
    problems = validate_case_outputs(out, 1, HECKTOR2025)
    p = only(problems)
    assert (p.rule, p.path) == ("invalid", SEG25) and "is a file, not a folder" in p.message


def test_garbage_bytes_named_mha(tmp_path: Path) -> None:
    out = output(tmp_path)
    secret = b"PATIENT-SECRET-1234 " * 40
    write_json(out / SEG25 / "output.mha", "").write_bytes(secret)
    p = only(validate_case_outputs(out, 1, HECKTOR2025))
    assert p.rule == "invalid"
    assert p.message == (
        f"{SEG25}/output.mha is not a MetaImage file (its first bytes are not an MHA "
        "header); write it with SimpleITK.WriteImage(image, path, useCompression=True)"
    )


def test_a_gzip_file_named_mha_and_an_empty_file(tmp_path: Path) -> None:
    out = output(tmp_path, "gz")
    (out / SEG25).mkdir(parents=True)
    sitk.WriteImage(sitk.GetImageFromArray(label_map()), str(tmp_path / "x.nii.gz"))
    shutil.copyfile(tmp_path / "x.nii.gz", out / SEG25 / "output.mha")
    p = only(validate_case_outputs(out, 1, HECKTOR2025))
    assert "is not a MetaImage file" in p.message
    out = output(tmp_path, "empty")
    write_json(out / SEG25 / "output.mha", "")
    assert "is empty (0 bytes)" in only(validate_case_outputs(out, 1, HECKTOR2025)).message


def test_a_label_outside_the_declared_set(tmp_path: Path) -> None:
    out = output(tmp_path)
    arr = label_map()
    arr[0, 0, 0] = 3
    write_mha(out / SEG25 / "output.mha", arr)
    p = only(validate_case_outputs(out, 1, HECKTOR2025))
    assert (p.rule, p.path) == ("invalid", f"{SEG25}/output.mha")
    assert "voxel values other than the labels 0, 1, 2" in p.message
    assert "uint8" in p.message
    assert "3" not in p.message.replace("3-D", "")  # the value found is not shown
    assert "3" in p.detail  # the reader's words, for organizers


@pytest.mark.parametrize("ndim", [2, 4])
def test_an_image_that_is_not_3d(tmp_path: Path, ndim: int) -> None:
    out = output(tmp_path)
    (out / SEG25).mkdir(parents=True)
    a = sitk.GetImageFromArray(label_map())
    image = sitk.JoinSeries([a, a]) if ndim == 4 else a[:, :, 0]
    assert image.GetDimension() == ndim
    sitk.WriteImage(image, str(out / SEG25 / "output.mha"), useCompression=True)
    p = only(validate_case_outputs(out, 1, HECKTOR2025))
    assert (p.rule, p.path) == ("invalid", f"{SEG25}/output.mha")
    assert f"is a {ndim}-D image" in p.message and "3-D label map" in p.message


def test_a_huge_declared_grid_is_refused_before_any_voxel_is_read(tmp_path: Path) -> None:
    out = output(tmp_path)
    header = (
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        "CompressedData = True\nElementSpacing = 1 1 1\nDimSize = 4096 4096 4096\n"
        "ElementType = MET_UCHAR\nElementDataFile = LOCAL\n"
    )
    write_json(out / SEG25 / "output.mha", header)
    start = time.perf_counter()
    p = only(validate_case_outputs(out, 1, HECKTOR2025))
    assert time.perf_counter() - start < 1.0
    assert "declares more voxels than a label map may hold" in p.message


def test_a_truncated_image_names_the_fix_and_keeps_the_detail(tmp_path: Path) -> None:
    out = output(tmp_path)
    path = write_mha(out / SEG25 / "output.mha", label_map())
    path.write_bytes(path.read_bytes()[:-20])
    p = only(validate_case_outputs(out, 1, HECKTOR2025))
    assert "cannot be read as a MetaImage label map" in p.message
    assert "SimpleITK.WriteImage" in p.message and p.detail


def test_symbolic_links_are_not_followed(tmp_path: Path) -> None:
    elsewhere = write_mha(tmp_path / "host" / "truth.mha", label_map())
    out = output(tmp_path)
    (out / SEG25).mkdir(parents=True)
    (out / SEG25 / "output.mha").symlink_to(elsewhere)
    (out / "rfs.json").symlink_to(tmp_path / "host" / "nothing.json")
    problems = {p.path: p for p in validate_case_outputs(out, 1, HECKTOR2025)}
    image = problems[f"{SEG25}/output.mha"]
    assert image.rule == "invalid"
    assert "is a symbolic link" in image.message and "not followed" in image.message
    assert "rfs.json" not in problems  # Task 2's output: allowed, never read for Task 1
    value = only(validate_case_outputs(out, 2, HECKTOR2025))
    assert (value.rule, value.path) == ("invalid", "rfs.json")
    assert "symbolic link" in value.message


def test_a_fifo_is_not_opened(tmp_path: Path) -> None:
    out = output(tmp_path)
    os.mkfifo(out / "rfs.json")
    p = only(validate_case_outputs(out, 2, HECKTOR2025))
    assert p.rule == "invalid" and "special file" in p.message


# --- value outputs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("NaN", ["holds NaN", "stores as null", "finite value", "1042.0"]),
        ("Infinity", ["holds Infinity", "stores as null"]),
        ("-Infinity", ["holds -Infinity", "stores as null"]),
        ('"1.5"', ["holds a string, not a number", "without quotes"]),
        ("true", ["holds a boolean, not a number"]),
        ("null", ["holds null, not a number"]),
        ("[1.5]", ["holds a list, not a number"]),
        ("1e999", ["too large to be finite"]),
        ("1042,0", ["is not valid JSON"]),
        ("", ["is empty"]),
    ],
)
def test_rfs_values_grand_challenge_refuses(tmp_path: Path, text: str, words: list[str]) -> None:
    out = write_json(tmp_path / "o" / "rfs.json", text).parent
    p = only(validate_case_outputs(out, 2, HECKTOR2025))
    assert (p.rule, p.path) == ("invalid", "rfs.json")
    for w in words:
        assert w in p.message, p.message
    assert "json.dump" in p.message or "e.g. 1042.0" in p.message


def test_numbers_pass_in_every_json_spelling(tmp_path: Path) -> None:
    for i, text in enumerate(["1042", "-3.5e2", " 0.25\n", "\ufeff7"]):
        out = tmp_path / f"o{i}"
        (out).mkdir()
        (out / "rfs.json").write_bytes(text.encode("utf-8"))
        assert validate_case_outputs(out, 2, HECKTOR2026) == [], text


def test_a_large_value_file_is_refused_unread(tmp_path: Path) -> None:
    out = write_json(tmp_path / "o" / "rfs.json", "1" * 10_000).parent
    p = only(validate_case_outputs(out, 2, HECKTOR2025))
    assert "10,000 bytes" in p.message and "at most 4,096 bytes" in p.message


def test_stages_from_the_protocol_classes(tmp_path: Path) -> None:
    full = full_2026_case(tmp_path)
    write_json(full / "t-stage.json", '"T9-SECRET"')
    write_json(full / "n-stage.json", '"n2b"')  # an alias, any case: the scorer reads N2
    p = only(validate_case_outputs(full, 3, HECKTOR2026))
    assert (p.rule, p.path) == ("invalid", "t-stage.json")
    assert "not one of T1, T2, T3, T4" in p.message and '"T2"' in p.message
    assert "SECRET" not in p.message and "T9" not in p.message
    write_json(full / "t-stage.json", "2")
    p = only(validate_case_outputs(full, 3, HECKTOR2026))
    assert "holds a number, not a string" in p.message
    # a variant's stage set is the one checked
    variant = HECKTOR2026.with_changes(t_stages=("T1", "T2"), stage_aliases=())
    write_json(full / "t-stage.json", '"T3"')
    write_json(full / "n-stage.json", '"n2B"')  # no alias in the variant
    t, n = validate_case_outputs(full, 3, variant)
    assert "t-stage.json holds a string that is not one of T1, T2;" in t.message
    assert "n-stage.json holds a string that is not one of N0, N1, N2, N3" in n.message


def test_messages_never_show_file_content(tmp_path: Path) -> None:
    secret = "CHUM-001 Age 71 SECRET"
    out = output(tmp_path)
    write_json(out / "rfs.json", json.dumps(secret))
    write_json(out / SEG25 / "output.mha", f"NDims = 3\nComment = {secret}\nElementDataFile = x")
    for task in (1, 2):
        for p in validate_case_outputs(out, task, HECKTOR2025):
            assert "SECRET" not in p.message and "Age" not in p.message, p.message


def test_unknown_task_or_missing_folder_is_a_caller_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no outputs for task 4"):
        validate_case_outputs(output(tmp_path), 4, HECKTOR2025)
    with pytest.raises(ValueError, match="is not a folder"):
        validate_case_outputs(tmp_path / "absent", 1, HECKTOR2025)


# --- staged and scored ----------------------------------------------------------------------


def _metrics(doc: Any) -> dict[str, float]:
    """The metrics of a scored result document."""
    assert doc["status"] == "scored"
    return dict(doc["metrics"])


def _dsc(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _run_case(tmp_path: Path, pid: str, files: dict[str, np.ndarray | str]) -> Path:
    """A case's /output as a container leaves it (a folder removed after staging)."""
    out = tmp_path / "runs" / pid
    out.mkdir(parents=True)
    for rel, content in files.items():
        if isinstance(content, str):
            write_json(out / rel, content)
        else:
            write_mha(out / rel / f"{pid.lower()}-pred.mha", content)
    return out


def _stage_all(
    tmp_path: Path, task: int, protocol: Protocol, cases: dict[str, dict[str, np.ndarray | str]]
) -> Path:
    stage = tmp_path / "staged" / f"task{task}"
    for pid, files in cases.items():
        out = _run_case(tmp_path, pid, files)
        assert validate_case_outputs(out, task, protocol) == []
        stage_case_outputs(out, task, protocol, pid, stage)
        shutil.rmtree(out)  # the output volume goes away after the case
    return stage


def test_staged_segmentations_score_the_numpy_dsc(tmp_path: Path) -> None:
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    truths, preds = {}, {}
    rng = np.random.default_rng(7)
    for i in range(5):
        pid = f"CHUM-{i + 1:03d}"
        truth = label_map(i)
        pred = truth.copy()
        flip = rng.random(pred.shape) < 0.08  # some voxels wrong, some labels swapped
        pred[flip] = rng.integers(0, 3, size=int(flip.sum()), dtype=np.uint8)
        if i == 4:
            truth[truth == 2] = 0  # no GTVn in the truth of one case
        image = sitk.GetImageFromArray(truth)
        image.SetSpacing(SPACING)
        sitk.WriteImage(image, str(gt_dir / f"{pid}.nii.gz"), useCompression=True)
        truths[pid], preds[pid] = truth, pred
    stage = _stage_all(tmp_path, 1, HECKTOR2025, {p: {SEG25: a} for p, a in preds.items()})
    assert sorted(p.name for p in stage.iterdir()) == [f"{p}.mha" for p in sorted(preds)]
    assert not any(p.is_symlink() for p in stage.iterdir())
    doc = _metrics(score_submission(1, load_ground_truth(1, gt_dir), stage))
    gtvp = np.mean([_dsc(truths[p] == 1, preds[p] == 1) for p in truths])
    inter = sum(int(((truths[p] == 2) & (preds[p] == 2)).sum()) for p in truths)
    size = sum(int((truths[p] == 2).sum() + (preds[p] == 2).sum()) for p in truths)
    assert doc["gtvp_dsc_mean"] == pytest.approx(gtvp, abs=1e-12)
    assert doc["gtvn_dsc_agg"] == pytest.approx(2.0 * inter / size, abs=1e-12)
    assert 0.5 < gtvp < 1.0


def test_staged_rfs_values_score_the_lifelines_c_index(tmp_path: Path) -> None:
    from lifelines.utils import concordance_index

    rng = np.random.default_rng(11)
    n = 12
    pids = [f"MDA-{i + 1:03d}" for i in range(n)]
    times = rng.uniform(100, 2000, size=n).round(1)
    events = (rng.random(n) < 0.6).astype(int)
    risk = -times / 1000 + rng.normal(0, 0.4, size=n)  # informative, not perfect
    truth = tmp_path / "gt" / "task2.csv"
    truth.parent.mkdir()
    with truth.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["PatientID", "RFS", "Relapse"])
        for pid, t, e in zip(pids, times, events, strict=True):
            w.writerow([pid, t, e])
    cases: dict[str, dict[str, np.ndarray | str]] = {
        pid: {"rfs.json": json.dumps(float(r))} for pid, r in zip(pids, risk, strict=True)
    }
    stage = _stage_all(tmp_path, 2, HECKTOR2025, cases)
    assert sorted(p.name for p in stage.iterdir()) == pids
    assert (stage / pids[0] / "rfs.json").read_text() == cases[pids[0]]["rfs.json"]
    doc = _metrics(score_submission(2, load_ground_truth(2, truth.parent), stage))
    expected = concordance_index(times, -risk, events)  # higher risk = earlier recurrence
    assert doc["c_index"] == pytest.approx(expected, abs=1e-12)


def test_staging_2026_staging_outputs_and_a_bad_patient_id(tmp_path: Path) -> None:
    full = full_2026_case(tmp_path)
    stage = tmp_path / "staged"
    stage_case_outputs(full, 3, HECKTOR2026, "CHUP-010", stage)
    assert sorted(p.name for p in (stage / "CHUP-010").iterdir()) == [
        "n-stage.json",
        "t-stage.json",
    ]
    stage_case_outputs(full, 1, HECKTOR2026, "CHUP-010", stage / "t1")
    assert (stage / "t1" / "CHUP-010.mha").is_file()
    with pytest.raises(ValueError, match="not a PatientID"):
        stage_case_outputs(full, 2, HECKTOR2026, "../x", stage)
    with pytest.raises(ValueError, match="no such output"):
        stage_case_outputs(output(tmp_path, "none"), 2, HECKTOR2026, "CHUP-010", stage)


def test_hpv_status_takes_a_probability_or_the_status_itself(tmp_path: Path) -> None:
    for i, text in enumerate(("0.83", "1", "true", "false")):
        out = output(tmp_path / str(i))
        (out / "hpv-status.json").write_text(text)
        assert validate_case_outputs(out, 3, HECKTOR2025) == [], text
    out = output(tmp_path / "s")
    (out / "hpv-status.json").write_text('"positive"')
    p = only(validate_case_outputs(out, 3, HECKTOR2025))
    assert p.rule == "invalid" and "not a number" in p.message and "0.83" in p.message
