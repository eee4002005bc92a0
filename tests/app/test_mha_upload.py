"""MetaImage predictions through the API: an archive of ``<PatientID>.mha`` files (as
SimpleITK, and so grand-challenge algorithms, write them) scores exactly as the same
predictions as ``.nii.gz``; a single ``.mha`` uploaded on its own gets told to archive it."""

from __future__ import annotations

import io
import tarfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from tests.app.conftest import Challenge, local_on

sitk.ProcessObject.SetGlobalWarningDisplay(False)  # NIfTI fields MetaImage has no key for


def _as_mha(challenge: Challenge, team: str, tmp: Path) -> dict[str, bytes]:
    """The team's Task 1 predictions re-written by SimpleITK as compressed .mha."""
    out: dict[str, bytes] = {}
    for name, data in challenge.predictions(team).items():
        pid = name.removesuffix(".nii.gz")
        src, dst = tmp / name, tmp / f"{pid}.mha"
        src.write_bytes(data)
        sitk.WriteImage(sitk.ReadImage(str(src)), str(dst), useCompression=True)
        out[dst.name] = dst.read_bytes()
    return out


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"predictions/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_mha_archive_scores_as_the_nifti_one(
    sqlite_url: str, app_factory: Any, pool: ProcessPoolExecutor, challenge: Challenge, tmp_path
) -> None:
    api = app_factory(sqlite_url, dispatcher=local_on(pool))
    api.create_phase("validation")
    token = api.create_team("good")
    mha = _as_mha(challenge, "good", tmp_path)
    nifti_id = api.submit_ok(token, "validation", 1, challenge.archive("good", 1))
    mha_id = int(
        api.upload(token, "validation", 1, content=_tar_gz(mha), filename="mha.tar.gz").json()["id"]
    )
    nifti, from_mha = api.wait(token, nifti_id), api.wait(token, mha_id)
    assert nifti["status"] == from_mha["status"] == "scored", from_mha.get("errors")
    assert from_mha["result"]["metrics"] == nifti["result"]["metrics"]
    assert [c["gtvp_dsc"] for c in from_mha["result"]["cases"]] == [
        c["gtvp_dsc"] for c in nifti["result"]["cases"]
    ]
    # formats may be mixed in one archive, one file per case
    mixed = dict(list(mha.items())[:3])
    for name, data in list(challenge.predictions("good").items())[3:]:
        mixed[name] = data
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in mixed.items():
            zf.writestr(name, data)
    r = api.upload(token, "validation", 1, content=buf.getvalue(), filename="mixed.zip")
    doc = api.wait(token, int(r.json()["id"]))
    assert doc["status"] == "scored", doc.get("errors")
    assert doc["result"]["metrics"] == nifti["result"]["metrics"]


def test_a_single_mha_upload_is_told_to_archive_it(
    sqlite_url: str, app_factory: Any, challenge: Challenge, tmp_path
) -> None:
    api = app_factory(sqlite_url)
    api.create_phase("validation")
    token = api.create_team("solo")
    name, data = next(iter(_as_mha(challenge, "good", tmp_path).items()))
    r = api.upload(token, "validation", 1, content=data, filename=name)
    assert r.status_code == 415, r.text
    assert r.json()["detail"] == (
        "Task 1 expects a .zip, .tar or .tar.gz archive of <PatientID>.nii.gz (or .mha) "
        "files; the upload is a single MetaImage (.mha) image."
    )
