"""The synthetic challenge generator: layout, determinism, realism, team order.

Metrics here are simple, independent numpy/scipy versions of docs/scoring.md section 3 (no
evaluator code), so the generator's promises are checked even while the scorer moves.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import itertools
import json
import math
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from evaluator.synth import (
    CENTRES,
    GTVN_ML,
    GTVP_ML,
    TASK2_CSV,
    TASK3_CSV,
    SynthSummary,
    generate_challenge,
    nifti_gz_bytes,
)

TEAMS = ("perfect", "good", "mediocre", "poor")
CUBE = np.ones((3, 3, 3), dtype=bool)


# --- simple reference metrics ------------------------------------------------------


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s


def detection(gt: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """TP, FP, FN of docs/scoring.md section 3 (groups of overlapping lesions, IoU >= 0.3)."""
    gl, ng = ndimage.label(gt, structure=CUBE)
    pl, npr = ndimage.label(pred, structure=CUBE)
    parent = {("g", i): ("g", i) for i in range(1, ng + 1)}
    parent.update({("p", i): ("p", i) for i in range(1, npr + 1)})

    def find(x: tuple[str, int]) -> tuple[str, int]:
        while parent[x] != x:
            x = parent[x]
        return x

    both = (gl > 0) & (pl > 0)
    for g, p in set(zip(gl[both].tolist(), pl[both].tolist(), strict=True)):
        parent[find(("g", g))] = find(("p", p))
    groups: dict[tuple[str, int], list[tuple[str, int]]] = {}
    for node in parent:
        groups.setdefault(find(node), []).append(node)
    tp = fp = fn = 0
    for members in groups.values():
        gs = [i for k, i in members if k == "g"]
        ps = [i for k, i in members if k == "p"]
        if gs and ps:
            gm, pm = np.isin(gl, gs), np.isin(pl, ps)
            inter, union = int((gm & pm).sum()), int((gm | pm).sum())
            if 10 * inter >= 3 * union:
                tp += 1
                continue
        fp += len(ps)
        fn += len(gs)
    return tp, fp, fn


def c_index(time: list[float], event: list[int], risk: list[float]) -> float:
    num = den = 0.0
    for i in range(len(time)):
        for j in range(len(time)):
            if not event[i]:
                continue
            if time[i] < time[j] or (time[i] == time[j] and not event[j]):
                den += 1
                num += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return num / den


def auc(label: list[int], score: list[float]) -> float:
    pos = [s for y, s in zip(label, score, strict=True) if y == 1]
    neg = [s for y, s in zip(label, score, strict=True) if y == 0]
    tot = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return tot / (len(pos) * len(neg))


# --- reading the output ------------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def gt_image(s: SynthSummary, pid: str) -> nib.Nifti1Image:
    img = nib.load(s.ground_truth_dir / "Task 1" / pid / f"{pid}.nii.gz")
    assert isinstance(img, nib.Nifti1Image)
    return img


def zip_images(path: Path) -> Iterator[tuple[str, nib.Nifti1Image]]:
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            pid = name.rsplit("/", 1)[-1].removesuffix(".nii.gz")
            raw = gzip.decompress(zf.read(name))
            yield pid, nib.Nifti1Image.from_bytes(raw)


def labels(img: nib.Nifti1Image) -> np.ndarray:
    return np.asanyarray(img.dataobj)


def team_metrics(s: SynthSummary) -> dict[str, dict[str, float]]:
    gts = {pid: (labels(gt_image(s, pid)), gt_image(s, pid)) for pid in s.case_ids}
    t2 = {r["PatientID"]: r for r in read_csv(s.ground_truth_dir / "Task 2" / TASK2_CSV)}
    t3 = {r["PatientID"]: r for r in read_csv(s.ground_truth_dir / "Task 3" / TASK3_CSV)}
    rfs_ids = [p for p in s.case_ids if t2[p]["RFS"] != ""]
    hpv_ids = [p for p in s.case_ids if t3[p]["HPV Status"] != ""]
    out: dict[str, dict[str, float]] = {}
    for team in s.teams:
        dscs: list[float] = []
        inter = total = 0.0
        tp = fp = fn = 0
        for pid, img in zip_images(s.submissions_dir / team / "task1.zip"):
            gt, gimg = gts[pid]
            pred = labels(img)
            vv = float(np.prod(gimg.header.get_zooms()))
            dscs.append(dice(gt == 1, pred == 1))
            inter += vv * int(((gt == 2) & (pred == 2)).sum())
            total += vv * (int((gt == 2).sum()) + int((pred == 2).sum()))
            a, b, c = detection(gt == 2, pred == 2)
            tp, fp, fn = tp + a, fp + b, fn + c
        risk = {
            r["PatientID"]: float(r["Prediction"])
            for r in read_csv(s.submissions_dir / team / "task2.csv")
        }
        prob = {
            r["PatientID"]: float(r["Prediction"])
            for r in read_csv(s.submissions_dir / team / "task3.csv")
        }
        out[team] = {
            "gtvp_dsc_mean": float(np.mean(dscs)),
            "gtvn_dsc_agg": 1.0 if total == 0 else 2 * inter / total,
            "gtvn_f1_agg": 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 1.0,
            "c_index": c_index(
                [float(t2[p]["RFS"]) for p in rfs_ids],
                [int(t2[p]["Relapse"]) for p in rfs_ids],
                [risk[p] for p in rfs_ids],
            ),
            "auc": auc([int(t3[p]["HPV Status"]) for p in hpv_ids], [prob[p] for p in hpv_ids]),
        }
    return out


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return generate_challenge(tmp_path_factory.mktemp("synth") / "challenge", small=True)


@pytest.fixture(scope="module")
def manifest(small: SynthSummary) -> dict[str, Any]:
    return json.loads(small.manifest_path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    s = generate_challenge(
        tmp_path_factory.mktemp("synth200") / "c",
        small=True,
        n_cases=200,
        seed=3,
        teams=("perfect",),
    )
    return json.loads(s.manifest_path.read_text(encoding="utf-8"))


# --- layout ------------------------------------------------------------------------


def test_layout_matches_spec(small: SynthSummary) -> None:
    assert len(small.case_ids) == 12
    assert small.teams == TEAMS
    gt = small.ground_truth_dir
    for pid in small.case_ids:
        assert (gt / "Task 1" / pid / f"{pid}.nii.gz").is_file()
    assert sorted(p.name for p in (gt / "Task 1").iterdir()) == sorted(small.case_ids)
    t2 = read_csv(gt / "Task 2" / TASK2_CSV)
    t3 = read_csv(gt / "Task 3" / TASK3_CSV)
    assert list(t2[0]) == ["PatientID", "CenterID", "RFS", "Relapse"]
    assert list(t3[0]) == ["PatientID", "CenterID", "HPV Status"]
    for team in TEAMS:
        d = small.submissions_dir / team
        assert sorted(p.name for p in d.iterdir()) == ["task1.zip", "task2.csv", "task3.csv"]
        with zipfile.ZipFile(d / "task1.zip") as zf:
            names = zf.namelist()
            tops = {n.split("/")[0] for n in names if "/" in n}
            assert len(tops) <= 1 and all(n.count("/") <= 1 for n in names)
            assert all(i.date_time == (2025, 1, 1, 0, 0, 0) for i in zf.infolist())
        assert list(read_csv(d / "task2.csv")[0]) == ["PatientID", "Prediction"]
        assert list(read_csv(d / "task3.csv")[0]) == ["PatientID", "Prediction"]


def test_same_ids_everywhere(small: SynthSummary, manifest: dict[str, Any]) -> None:
    ids = sorted(small.case_ids)
    assert list(small.case_ids) == ids and len(set(ids)) == len(ids)
    gt = small.ground_truth_dir
    for rows in (read_csv(gt / "Task 2" / TASK2_CSV), read_csv(gt / "Task 3" / TASK3_CSV)):
        assert [r["PatientID"] for r in rows] == ids
        assert all(r["CenterID"] == r["PatientID"].split("-")[0] for r in rows)
    for team in TEAMS:
        d = small.submissions_dir / team
        assert sorted(pid for pid, _ in zip_images(d / "task1.zip")) == ids
        assert sorted(r["PatientID"] for r in read_csv(d / "task2.csv")) == ids
        assert sorted(r["PatientID"] for r in read_csv(d / "task3.csv")) == ids
    assert [c["patient_id"] for c in manifest["cases"]] == ids
    assert manifest["teams"] == list(TEAMS)
    assert manifest["expected_order"]["task1"] == list(TEAMS)


def test_label_maps_and_geometry(small: SynthSummary, manifest: dict[str, Any]) -> None:
    cases = {c["patient_id"]: c for c in manifest["cases"]}
    for pid in small.case_ids:
        img = gt_image(small, pid)
        hdr = img.header
        assert hdr.get_data_dtype() == np.uint8
        assert int(hdr["qform_code"]) == 1 and int(hdr["sform_code"]) == 1
        arr = labels(img)
        c = cases[pid]
        assert arr.shape == tuple(c["shape"]) and arr.shape[:2] == (64, 64)
        assert 24 <= arr.shape[2] <= 48
        assert set(np.unique(arr).tolist()) <= {0, 1, 2}
        aff = img.affine
        assert np.allclose(aff[:3, :3], np.diag(c["spacing_mm"]), atol=1e-5)
        assert np.allclose(aff[:3, 3], c["origin_mm"], atol=1e-3)
        vv = float(np.prod(hdr.get_zooms()))
        assert math.isclose(vv, c["voxel_volume_mm3"], rel_tol=1e-5)
        gtvp_ml = int((arr == 1).sum()) * vv / 1000
        assert math.isclose(gtvp_ml, c["gtvp_ml"] or 0.0, abs_tol=1e-3)
        assert math.isclose(int((arr == 2).sum()) * vv / 1000, sum(c["gtvn_ml"]), abs_tol=1e-3)
        assert ndimage.label(arr == 2, structure=CUBE)[1] == c["gtvn_components"]
        # GTVp and GTVn never touch in the truth
        assert not np.any(ndimage.binary_dilation(arr == 1, structure=CUBE) & (arr == 2))
    for team in TEAMS:
        for pid, img in zip_images(small.submissions_dir / team / "task1.zip"):
            ref = gt_image(small, pid)
            assert img.shape == ref.shape
            assert np.allclose(img.affine, ref.affine, atol=1e-6)
            assert img.get_data_dtype() == np.uint8
            assert set(np.unique(labels(img)).tolist()) <= {0, 1, 2}


def test_perfect_is_the_truth_byte_for_byte(small: SynthSummary) -> None:
    with zipfile.ZipFile(small.submissions_dir / "perfect" / "task1.zip") as zf:
        for pid in small.case_ids:
            gt = (small.ground_truth_dir / "Task 1" / pid / f"{pid}.nii.gz").read_bytes()
            assert zf.read(f"{pid}.nii.gz") == gt


def test_tables_are_valid(small: SynthSummary) -> None:
    gt = small.ground_truth_dir
    t2 = read_csv(gt / "Task 2" / TASK2_CSV)
    assert sum(r["RFS"] == "" for r in t2) <= 2
    for r in t2:
        assert r["Relapse"] in ("0", "1")
        if r["RFS"]:
            assert float(r["RFS"]) >= 0
    t3 = read_csv(gt / "Task 3" / TASK3_CSV)
    assert all(r["HPV Status"] in ("", "0", "1") for r in t3)
    for team in TEAMS:
        risks = [
            float(r["Prediction"]) for r in read_csv(small.submissions_dir / team / "task2.csv")
        ]
        assert all(math.isfinite(x) for x in risks)
        probs = [
            float(r["Prediction"]) for r in read_csv(small.submissions_dir / team / "task3.csv")
        ]
        assert all(0.0 <= p <= 1.0 for p in probs)


# --- determinism -------------------------------------------------------------------


def test_same_seed_same_bytes(tmp_path: Path, small: SynthSummary) -> None:
    again = generate_challenge(tmp_path / "again", small=True)
    assert tree_hashes(again.out_dir) == tree_hashes(small.out_dir)
    other = generate_challenge(tmp_path / "other", small=True, seed=1, n_cases=4)
    assert other.case_ids != small.case_ids[:4]


def test_team_output_does_not_depend_on_other_teams(tmp_path: Path, small: SynthSummary) -> None:
    only = generate_challenge(tmp_path / "only", small=True, teams=("mediocre",))
    a = tree_hashes(only.submissions_dir / "mediocre")
    b = tree_hashes(small.submissions_dir / "mediocre")
    assert a == b
    assert tree_hashes(only.ground_truth_dir) == tree_hashes(small.ground_truth_dir)


def test_gzip_is_deterministic_and_nibabel_compatible() -> None:
    arr = np.zeros((7, 5, 3), dtype=np.uint8, order="F")
    arr[2:4, 1:3, 1] = 1
    arr[5, 4, 2] = 2
    aff = np.diag([0.9765625, 0.9765625, 3.27, 1.0])
    img = nib.Nifti1Image(arr, aff)
    img.header.set_data_dtype(np.uint8)
    for codec, level in (("zlib", 1), ("zlib-ng", 6)):
        data = nifti_gz_bytes(img, codec=codec, level=level)  # type: ignore[arg-type]
        assert data[4:8] == b"\x00\x00\x00\x00"  # gzip mtime
        assert gzip.decompress(data) == img.to_bytes()
        back = nib.Nifti1Image.from_bytes(gzip.decompress(data))
        assert np.array_equal(np.asanyarray(back.dataobj), arr)


def test_out_dir_rules(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        generate_challenge(foreign, small=True, n_cases=2)
    assert (foreign / "notes.txt").read_text() == "mine"
    s = generate_challenge(tmp_path / "redo", small=True, n_cases=3, teams=("good",))
    s2 = generate_challenge(tmp_path / "redo", small=True, n_cases=2, teams=("poor",))
    assert sorted(p.name for p in (s2.ground_truth_dir / "Task 1").iterdir()) == list(s2.case_ids)
    assert [p.name for p in s.submissions_dir.iterdir()] == ["poor"]
    # an interrupted run (no manifest) is not deleted blindly
    s2.manifest_path.unlink()
    with pytest.raises(FileExistsError, match="not a complete earlier"):
        generate_challenge(tmp_path / "redo", small=True, n_cases=2)
    assert (s2.submissions_dir / "poor" / "task1.zip").is_file()
    with pytest.raises(ValueError, match="teams"):
        generate_challenge(tmp_path / "bad", small=True, teams=("excellent",))
    with pytest.raises(ValueError, match="n_cases"):
        generate_challenge(tmp_path / "bad", small=True, n_cases=0)


def test_small_set_is_fast(tmp_path: Path) -> None:
    start = time.perf_counter()
    generate_challenge(tmp_path / "fast", small=True)
    assert time.perf_counter() - start < 10.0


def test_progress_is_reported(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate_challenge(
        tmp_path / "p",
        small=True,
        n_cases=3,
        teams=("perfect",),
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]


# --- realism -----------------------------------------------------------------------


def test_volumes_in_range(
    small: SynthSummary, manifest: dict[str, Any], large: dict[str, Any]
) -> None:
    for m in (manifest, large):
        for c in m["cases"]:
            if c["gtvp_ml"] is not None:
                assert GTVP_ML[0] <= c["gtvp_ml"] <= GTVP_ML[1]
            assert len(c["gtvn_ml"]) <= 6
            assert all(GTVN_ML[0] <= v <= GTVN_ML[1] for v in c["gtvn_ml"])
    # separate nodes are separate lesions; a touching node merges with its neighbour
    # (a touching node usually joins one neighbour, rarely two)
    for c in large["cases"]:
        n_nodes, touching = len(c["gtvn_ml"]), c["gtvn_touching"]
        assert n_nodes - 2 * touching <= c["gtvn_components"] <= n_nodes - touching
        assert (c["gtvn_components"] > 0) == (n_nodes > 0)


def test_proportions_roughly_right(large: dict[str, Any]) -> None:
    cases = large["cases"]
    n = len(cases)
    assert n == 200
    total = sum(c.patients for c in CENTRES)
    for centre in CENTRES:
        expected = n * centre.patients / total
        assert abs(large["centres"].get(centre.name, 0) - expected) < 1.0
    assert all(c["patient_id"].split("-")[0] == c["center"] for c in cases)
    with_gtvp = sum(c["gtvp_ml"] is not None for c in cases) / n
    with_nodes = sum(bool(c["gtvn_ml"]) for c in cases) / n
    assert 0.90 <= with_gtvp <= 1.0
    assert 0.80 <= with_nodes <= 0.96
    assert sum(c["gtvn_touching"] for c in cases) >= 3  # grouping gets exercised
    known = [c for c in cases if c["rfs_days"] is not None]
    censored = sum(c["relapse"] == 0 for c in known) / len(known)
    assert 0.70 <= censored <= 0.90
    hpv = [c["hpv"] for c in cases if c["hpv"] is not None]
    assert 0.57 <= sum(hpv) / len(hpv) <= 0.77
    assert len(cases) - len(known) <= 2 and len(cases) - len(hpv) <= 3


def test_ct_size_case(tmp_path: Path) -> None:
    s = generate_challenge(tmp_path / "ct", n_cases=1, teams=("good",))
    img = gt_image(s, s.case_ids[0])
    assert img.shape[:2] == (512, 512) and 90 <= img.shape[2] <= 300
    zooms = img.header.get_zooms()
    assert 0.85 <= zooms[0] == zooms[1] <= 1.4 and 1.5 <= zooms[2] <= 5.0


# --- the teams' order --------------------------------------------------------------


def assert_order(metrics: dict[str, dict[str, float]]) -> None:
    for name in ("gtvp_dsc_mean", "gtvn_dsc_agg", "gtvn_f1_agg", "c_index", "auc"):
        values = [metrics[t][name] for t in TEAMS]
        assert values[0] == 1.0, (name, values)
        assert all(a > b for a, b in itertools.pairwise(values)), (name, values)


def test_team_order_holds_on_the_default_small_set(small: SynthSummary) -> None:
    assert_order(team_metrics(small))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 7])
def test_team_order_holds_on_other_seeds(tmp_path: Path, seed: int) -> None:
    assert_order(
        team_metrics(generate_challenge(tmp_path / "s", small=True, seed=seed, n_cases=20))
    )


def test_official_scorer_agrees(small: SynthSummary) -> None:
    from evaluator import scoring

    ours = team_metrics(small)
    names = {1: ("gtvp_dsc_mean", "gtvn_dsc_agg", "gtvn_f1_agg"), 2: ("c_index",), 3: ("auc",)}
    files = {1: "task1.zip", 2: "task2.csv", 3: "task3.csv"}
    dirs = {1: "Task 1", 2: "Task 2", 3: "Task 3"}
    for task in (1, 2, 3):
        gt = scoring.load_ground_truth(task, small.ground_truth_dir / dirs[task])
        for team in TEAMS:
            doc = scoring.score_submission(task, gt, small.submissions_dir / team / files[task])
            for name in names[task]:
                assert doc["metrics"][name] == pytest.approx(ours[team][name], abs=1e-9), (
                    task,
                    team,
                    name,
                )
