"""The synthetic algorithm inputs: a CT and a PET on every case's label grid and its
clinical record, for every ground-truth case of every task; a PET that a fixed
thresholding segments well but not perfectly (checked here with numpy against the
label maps, independently of the generator's own model)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from evaluator.synth import SynthSummary, generate_challenge

EHR_KEYS = {
    "CenterID",
    "Age",
    "Gender",
    "Tobacco Consumption",
    "Alcohol Consumption",
    "Performance Status",
    "Treatment",
    "M-stage",
}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return generate_challenge(tmp_path_factory.mktemp("inputs") / "c", small=True)


def gt_ids(summary: SynthSummary) -> set[str]:
    """Every PatientID of the ground truth, over the three tasks' files."""
    gt = summary.ground_truth_dir
    ids = {p.name for p in (gt / "Task 1").iterdir()}
    for table in [*(gt / "Task 2").glob("*.csv"), *(gt / "Task 3").glob("*.csv")]:
        with table.open(encoding="utf-8", newline="") as f:
            ids |= {row["PatientID"] for row in csv.DictReader(f)}
    return ids


def load(path: Path) -> nib.Nifti1Image:
    img = nib.load(path)
    assert isinstance(img, nib.Nifti1Image)
    return img


def dice(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """(2 |a & b|, |a| + |b|): summed over cases for an aggregated DSC."""
    return 2 * int(np.count_nonzero(a & b)), int(np.count_nonzero(a) + np.count_nonzero(b))


def test_every_ground_truth_case_has_inputs_on_its_grid(small: SynthSummary) -> None:
    ids = gt_ids(small)
    assert ids == set(small.case_ids)
    assert {p.name for p in small.inputs_dir.iterdir()} == ids
    for pid in sorted(ids):
        folder = small.inputs_dir / pid
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [f"{pid}__CT.nii.gz", f"{pid}__PT.nii.gz", "ehr.json"]
        )
        label = load(small.ground_truth_dir / "Task 1" / pid / f"{pid}.nii.gz")
        ct = load(folder / f"{pid}__CT.nii.gz")
        pet = load(folder / f"{pid}__PT.nii.gz")
        for img, dtype in ((ct, np.int16), (pet, np.float32)):
            assert img.shape == label.shape
            assert np.array_equal(img.affine, label.affine)
            assert np.array_equal(img.header.get_qform(), label.header.get_qform())
            assert img.get_data_dtype() == dtype
            assert img.header.get_slope_inter() == (None, None)  # stored unscaled
        hu = np.asanyarray(ct.dataobj)
        assert hu.min() == -1000 and hu[0, 0, 0] == -1000  # air around the body
        assert -100 < np.median(hu[hu.shape[0] // 2, hu.shape[1] // 2 - 5, :]) < 150


def test_ehr_is_the_clinical_record_without_id_or_target(small: SynthSummary) -> None:
    t2 = small.ground_truth_dir / "Task 2"
    with next(t2.glob("*.csv")).open(encoding="utf-8", newline="") as f:
        centres = {row["PatientID"]: row["CenterID"] for row in csv.DictReader(f)}
    for pid in small.case_ids:
        text = (small.inputs_dir / pid / "ehr.json").read_text(encoding="utf-8")
        record = json.loads(text)
        assert isinstance(record, dict) and set(record) == EHR_KEYS
        assert record["CenterID"] == centres[pid]
        assert pid not in text
        assert isinstance(record["Age"], int) and 25 <= record["Age"] <= 95
        assert record["Gender"] in ("M", "F")
        assert record["M-stage"] in ("M0", "M1")


def test_thresholding_the_pet_scores_well_not_perfectly(small: SynthSummary) -> None:
    per_case_p: list[float] = []
    agg = {1: [0, 0], 2: [0, 0]}
    background: list[np.ndarray] = []
    for pid in small.case_ids:
        label = np.asanyarray(
            load(small.ground_truth_dir / "Task 1" / pid / f"{pid}.nii.gz").dataobj
        )
        pet = np.asanyarray(load(small.inputs_dir / pid / f"{pid}__PT.nii.gz").dataobj)
        pred = np.where(pet >= 8, 1, np.where(pet >= 4, 2, 0))
        for lab in (1, 2):
            inter, total = dice(label == lab, pred == lab)
            agg[lab][0] += inter
            agg[lab][1] += total
        inter, total = dice(label == 1, pred == 1)
        if total:
            per_case_p.append(inter / total)
        # background voxels far from any lesion (inside the body: PET > 0)
        far = ~ndimage.binary_dilation(label > 0, iterations=2)
        background.append(pet[far & (pet > 0)])
    mean_p = float(np.mean(per_case_p))
    agg_p = agg[1][0] / agg[1][1]
    agg_n = agg[2][0] / agg[2][1]
    assert 0.6 < mean_p < 0.98, mean_p
    assert 0.6 < agg_p < 0.98, agg_p
    assert 0.6 < agg_n < 0.98, agg_n
    bg = np.concatenate(background)
    assert abs(float(bg.mean()) - 1.0) < 0.05 and 0.25 < float(bg.std()) < 0.35
    assert float(bg.max()) < 4.0  # the background never reaches the GTVn threshold


def test_lesion_levels(small: SynthSummary) -> None:
    """Voxels deep inside a lesion hold its level (10 GTVp, 6 GTVn) plus noise."""
    deep: dict[int, list[np.ndarray]] = {1: [], 2: []}
    for pid in small.case_ids:
        label = np.asanyarray(
            load(small.ground_truth_dir / "Task 1" / pid / f"{pid}.nii.gz").dataobj
        )
        pet = np.asanyarray(load(small.inputs_dir / pid / f"{pid}__PT.nii.gz").dataobj)
        for lab in (1, 2):
            core = ndimage.binary_erosion(label == lab, structure=np.ones((3, 3, 3)))
            deep[lab].append(pet[core])
    for lab, level in ((1, 10.0), (2, 6.0)):
        values = np.concatenate(deep[lab])
        assert values.size > 50
        assert abs(float(values.mean()) - level) < 0.1
        assert 0.2 < float(values.std()) < 0.4


def test_2026_edition_writes_the_same_inputs(tmp_path: Path, small: SynthSummary) -> None:
    s = generate_challenge(tmp_path / "c26", small=True, n_cases=4, edition=2026)
    assert {p.name for p in s.inputs_dir.iterdir()} == gt_ids(s) == set(s.case_ids)
    record = json.loads((s.inputs_dir / s.case_ids[0] / "ehr.json").read_text("utf-8"))
    assert set(record) == EHR_KEYS  # no T or N stage: they are the Task 3 targets
    manifest = json.loads(s.manifest_path.read_text("utf-8"))
    assert "inputs/<PatientID>" in manifest["layout"]["inputs"]


def test_inputs_are_deterministic(tmp_path: Path) -> None:
    a = generate_challenge(tmp_path / "a", small=True, n_cases=3, teams=("good",))
    b = generate_challenge(tmp_path / "b", small=True, n_cases=3, teams=("poor",))
    for pid in a.case_ids:
        for name in (f"{pid}__CT.nii.gz", f"{pid}__PT.nii.gz", "ehr.json"):
            assert (a.inputs_dir / pid / name).read_bytes() == (
                b.inputs_dir / pid / name
            ).read_bytes()
    c = generate_challenge(tmp_path / "c", small=True, n_cases=3, seed=5)
    assert c.case_ids != a.case_ids
