"""Converting a phase's hidden inputs into grand-challenge's per-job ``/input`` form:
images as SimpleITK converts them (compared with SimpleITK reading the NIfTI), the
socket values of ``inputs.json``, no PatientID in anything a container sees, and every
problem of every case listed at once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from evaluator.gc.inputs import InputsError, convert_inputs, load_input_index, read_input_index
from evaluator.synth import SynthSummary, generate_challenge

HEX16 = re.compile(r"[0-9a-f]{16}")
UUID_MHA = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.mha")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return generate_challenge(tmp_path_factory.mktemp("gcin") / "c", small=True, n_cases=4)


def assert_same_as_simpleitk(nifti: Path, mha: Path) -> None:
    """The .mha holds what SimpleITK reads from the NIfTI: the voxels bit for bit (type
    included), the geometry within 1e-4 mm."""
    ref = sitk.ReadImage(str(nifti))
    got = sitk.ReadImage(str(mha))
    assert got.GetPixelIDValue() == ref.GetPixelIDValue()
    a, b = sitk.GetArrayFromImage(ref), sitk.GetArrayFromImage(got)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()
    assert np.allclose(got.GetSpacing(), ref.GetSpacing(), rtol=0, atol=1e-4)
    assert np.allclose(got.GetOrigin(), ref.GetOrigin(), rtol=0, atol=1e-4)
    assert np.allclose(got.GetDirection(), ref.GetDirection(), rtol=0, atol=1e-6)


def only_file(folder: Path) -> Path:
    files = list(folder.iterdir())
    assert len(files) == 1
    return files[0]


def test_synthetic_inputs_convert_as_simpleitk_reads_them(
    synth: SynthSummary, tmp_path: Path
) -> None:
    ids = list(synth.case_ids)
    index = convert_inputs(synth.inputs_dir, tmp_path / "store", ids)
    assert sorted(index.cases) == sorted(ids) and len(index) == len(ids)
    assert re.fullmatch(r"[0-9a-f]{64}", index.sha256)
    assert sorted(p.name for p in index.root.iterdir()) == sorted(
        [*index.cases.values(), "index.json"]
    )
    doc = json.loads((index.root / "index.json").read_text("utf-8"))
    assert doc == {"version": 1, "cases": index.cases, "sha256": index.sha256}
    assert read_input_index(index.root) == {p: index.root / f for p, f in index.cases.items()}
    for pid, folder in index.cases.items():
        assert HEX16.fullmatch(folder)
        case = index.root / folder
        ct, pet = only_file(case / "images" / "ct"), only_file(case / "images" / "pet")
        assert UUID_MHA.fullmatch(ct.name) and UUID_MHA.fullmatch(pet.name)
        src = synth.inputs_dir / pid
        assert_same_as_simpleitk(src / f"{pid}__CT.nii.gz", ct)
        assert_same_as_simpleitk(src / f"{pid}__PT.nii.gz", pet)
        ehr = json.loads((case / "ehr.json").read_text("utf-8"))
        assert ehr == json.loads((src / "ehr.json").read_text("utf-8"))
        values = json.loads((case / "inputs.json").read_text("utf-8"))
        by_slug = {v["socket"]["slug"]: v for v in values}
        assert set(by_slug) == {"ct-image", "pet-image", "electronic-health-record"}
        for v in values:
            assert v["interface"] == v["socket"]
            assert set(v) == {"pk", "socket", "interface", "value", "file", "image"}
        c, p, e = by_slug["ct-image"], by_slug["pet-image"], by_slug["electronic-health-record"]
        assert c["socket"]["relative_path"] == "images/ct"
        assert p["socket"]["relative_path"] == "images/pet"
        assert e["socket"]["relative_path"] == "ehr.json"
        assert (c["socket"]["kind"], c["socket"]["super_kind"]) == ("Image", "Image")
        assert e["socket"]["super_kind"] == "Value" and e["value"] == ehr and e["image"] is None
        assert c["image"] == {"pk": ct.name[:-4], "name": ct.name}
        assert p["image"] == {"pk": pet.name[:-4], "name": pet.name}
        # nothing the container sees names the patient
        for f in case.rglob("*"):
            assert pid not in f.name
            if f.is_file():
                assert pid.encode() not in f.read_bytes()


def test_the_hash_identifies_the_content_not_the_random_names(
    synth: SynthSummary, tmp_path: Path
) -> None:
    ids = synth.case_ids[:2]
    a = convert_inputs(synth.inputs_dir, tmp_path / "a", ids)
    b = convert_inputs(synth.inputs_dir, tmp_path / "b", ids)
    assert a.sha256 == b.sha256 and a.cases != b.cases
    c = convert_inputs(synth.inputs_dir, tmp_path / "c", ids[:1])
    assert c.sha256 != a.sha256


def nifti(path: Path, arr: np.ndarray, affine: np.ndarray, *, qcode: int = 1, scode: int = 1,
          qform: np.ndarray | None = None, slope: tuple[float, float] | None = None) -> Path:  # fmt: skip
    img = nib.Nifti1Image(arr, affine)
    img.set_qform(affine if qform is None else qform, code=qcode)
    img.set_sform(affine, code=scode)
    if slope is not None:
        img.header.set_slope_inter(*slope)
    nib.save(img, path)
    return path


def rotated_affine(
    spacing: tuple[float, float, float], origin: tuple[float, float, float]
) -> np.ndarray:
    t = np.deg2rad(12.0)
    rot = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(spacing) @ np.diag([1.0, -1.0, 1.0])
    aff[:3, 3] = origin
    return aff


def case_folder(root: Path, pid: str, ct: np.ndarray, pet: np.ndarray, **kw: object) -> Path:
    d = root / pid
    d.mkdir(parents=True)
    ct_aff = kw.pop("ct_affine", rotated_affine((0.98, 0.98, 3.0), (-250.3, 120.7, -400.25)))
    pet_aff = kw.pop("pet_affine", rotated_affine((4.0, 4.0, 3.0), (-251.0, 121.0, -400.0)))
    nifti(d / f"{pid}__CT.nii.gz", ct, ct_aff, **kw)  # type: ignore[arg-type]
    nifti(d / f"{pid}__PT.nii.gz", pet, pet_aff, **kw)  # type: ignore[arg-type]
    (d / "ehr.json").write_text(json.dumps({"Age": 61, "M-stage": "M0"}), "utf-8")
    return d


def test_geometry_and_types_as_simpleitk_converts_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ct = rng.integers(-1024, 3000, size=(20, 18, 7), dtype=np.int16)
    pet = (rng.random((6, 5, 7)) * 12).astype(np.float32)  # its own, coarser grid
    src = tmp_path / "src"
    case_folder(src, "A-001", ct, pet)  # rotated, flipped axis, qform = sform
    aff = rotated_affine((1.0, 1.2, 2.5), (10.0, -5.5, 3.0))
    shifted = aff.copy()
    shifted[:3, 3] += 0.5
    # qform 1 and sform 2: ITK takes the qform (nibabel would take the sform)
    case_folder(src, "A-002", ct, pet, ct_affine=aff, pet_affine=aff, qform=shifted, scode=2)
    # only a qform
    case_folder(src, "A-003", ct, pet, scode=0)
    # scaled images: ITK gives float32, scaled in double precision (0.37 and -12.5 are
    # not exact in float32: float32 arithmetic would differ in the last bit)
    case_folder(src, "A-004", ct, pet, slope=(0.5, -1024.25))
    case_folder(src, "A-005", ct, pet, slope=(0.37, -12.5))
    uint8 = (pet * 20).astype(np.uint8)
    case_folder(src, "A-006", ct.astype(np.int32), uint8, slope=(1.7, 3.3))
    ids = [f"A-00{i}" for i in range(1, 7)]
    index = convert_inputs(src, tmp_path / "store", ids)
    for pid, folder in index.cases.items():
        case = index.root / folder
        for tag, sub in (("CT", "ct"), ("PT", "pet")):
            assert_same_as_simpleitk(
                src / pid / f"{pid}__{tag}.nii.gz", only_file(case / "images" / sub)
            )
    scaled = sitk.ReadImage(str(only_file(index.case_dir("A-004") / "images" / "ct")))
    assert scaled.GetPixelIDTypeAsString() == "32-bit float"
    qform_case = sitk.ReadImage(str(only_file(index.case_dir("A-002") / "images" / "ct")))
    assert np.allclose(qform_case.GetOrigin()[2], 3.5, atol=1e-4)  # the qform's origin


def test_flat_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    src = tmp_path / "flat"
    src.mkdir()
    aff = np.diag([2.0, 2.0, 3.0, 1.0])
    nifti(src / "B-01__CT.nii.gz", rng.integers(-1000, 100, (5, 6, 4)).astype(np.int16), aff)
    nifti(src / "B-01__PT.nii", rng.random((5, 6, 4)).astype(np.float32), aff)
    (src / "B-01__ehr.json").write_text('{"Age": 70}', "utf-8")
    index = convert_inputs(src, tmp_path / "store", ["B-01"])
    case = index.case_dir("B-01")
    assert_same_as_simpleitk(src / "B-01__PT.nii", only_file(case / "images" / "pet"))
    assert json.loads((case / "ehr.json").read_text("utf-8")) == {"Age": 70}


def test_every_problem_of_every_case_at_once(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    ct = rng.integers(-1000, 100, (6, 6, 4)).astype(np.int16)
    pet = rng.random((6, 6, 4)).astype(np.float32)
    src = tmp_path / "src"
    case_folder(src, "C-001", ct, pet)  # fine
    (case_folder(src, "C-002", ct, pet) / "C-002__CT.nii.gz").unlink()
    (case_folder(src, "C-003", ct, pet) / "C-003__PT.nii.gz").write_bytes(b"not an image")
    (case_folder(src, "C-004", ct, pet) / "ehr.json").write_text("[1, 2]", "utf-8")
    (case_folder(src, "C-005", ct, pet) / "ehr.json").write_text('{"Age": NaN}', "utf-8")
    (case_folder(src, "C-006", ct, pet) / "ehr.json").write_text('{"id": "C-006"}', "utf-8")
    (case_folder(src, "C-007", ct, pet) / "ehr.json").unlink()
    four_d = case_folder(src, "C-008", ct, pet)
    nifti(four_d / "C-008__PT.nii.gz", np.zeros((3, 3, 3, 2), np.float32), np.eye(4))
    dest = tmp_path / "store"
    ids = [f"C-00{i}" for i in range(1, 9)] + ["C-009", "../x"]
    with pytest.raises(InputsError) as info:
        convert_inputs(src, dest, ids)
    problems = info.value.problems
    text = "\n".join(problems)
    assert len(problems) == 9, text
    assert "C-001" not in text
    assert "C-002: missing C-002__CT.nii.gz" in text
    assert re.search(r"C-003: C-003__PT\.nii\.gz.*(NIfTI|header)", text)
    assert "C-004: ehr.json holds a JSON list, expected an object" in text
    assert "C-005: ehr.json is not valid JSON" in text
    assert "C-006: ehr.json names the PatientID C-006" in text
    assert "C-007: missing ehr.json" in text
    assert re.search(r"C-008: C-008__PT\.nii\.gz.*4-D", text)
    assert "C-009: no inputs" in text
    assert "'../x': not a PatientID" in text
    assert str(tmp_path) not in text  # no host path
    assert not dest.exists()  # nothing left behind


def test_refusals_of_the_folders(synth: SynthSummary, tmp_path: Path) -> None:
    with pytest.raises(InputsError, match="does not exist"):
        convert_inputs(tmp_path / "nowhere", tmp_path / "d", ["X"])
    (tmp_path / "taken").mkdir()
    with pytest.raises(InputsError, match="exists already"):
        convert_inputs(synth.inputs_dir, tmp_path / "taken", synth.case_ids)
    with pytest.raises(InputsError, match="no case"):
        convert_inputs(synth.inputs_dir, tmp_path / "d", [])


def test_a_damaged_store_is_refused(synth: SynthSummary, tmp_path: Path) -> None:
    index = convert_inputs(synth.inputs_dir, tmp_path / "s", synth.case_ids[:2])
    assert load_input_index(index.root).sha256 == index.sha256
    pid = synth.case_ids[0]
    (index.case_dir(pid) / "inputs.json").unlink()
    with pytest.raises(InputsError, match=f"{pid}: case folder"):
        read_input_index(index.root)
    (index.root / "index.json").write_text('{"version": 2}', "utf-8")
    with pytest.raises(InputsError, match="version 1"):
        read_input_index(index.root)


def _header_case(kind: str) -> nib.Nifti1Image:
    a = np.arange(60, dtype=np.int16).reshape(5, 4, 3)
    aff = rotated_affine((0.9, 1.1, 3.0), (10.0, -20.0, 30.0))
    img = nib.Nifti1Image(a, None)
    sform, qcode, scode, units = aff.copy(), 1, 1, "mm"
    if kind == "sform-2-only":
        qcode, scode = 0, 2
    elif kind == "shearing-sform":  # ITK falls back to the qform
        sform[0, 1] += 0.3
    elif kind == "metres":
        units = "meter"
    elif kind == "no-form":
        qcode = scode = 0
    img.set_qform(aff, code=qcode)
    img.set_sform(sform, code=scode)
    img.header.set_xyzt_units(units)
    return img


@pytest.mark.parametrize("kind", ["sform-2-only", "shearing-sform", "metres", "no-form"])
def test_unusual_headers_as_simpleitk_reads_them(tmp_path: Path, kind: str) -> None:
    src = tmp_path / "src" / "D-1"
    src.mkdir(parents=True)
    nib.save(_header_case(kind), src / "D-1__CT.nii.gz")
    nib.save(_header_case(kind), src / "D-1__PT.nii.gz")
    (src / "ehr.json").write_text("{}", "utf-8")
    index = convert_inputs(tmp_path / "src", tmp_path / "store", ["D-1"])
    ct = only_file(index.case_dir("D-1") / "images" / "ct")
    assert_same_as_simpleitk(src / "D-1__CT.nii.gz", ct)
