"""Uploads to phases that judge algorithms: an image tarball (and a model) is sniffed by
content, streamed under the phase's image limit, checked before it is queued, stored as
``submissions/<id>/algorithm.tar[.gz]`` (+ ``model.tar[.gz]``); what a phase does not
take is refused with what it is and what the phase takes, and nothing is stored. The
judging is not part of this: a recording dispatcher takes the queued ids."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import socket
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from app.algorithms.tarball import host_architecture
from app.cli import main
from app.db.models import Phase, Submission
from app.db.session import make_engine, session_factory
from app.main import create_app
from tests.app.conftest import (
    ORG,
    Api,
    RecordingDispatcher,
    auth,
    db_execute,
    make_settings,
    served,
)
from tests.app.image_tars import (
    SavedImages,
    add_bytes,
    docker_save,
    gzip_bomb_layer,
    image_config,
    need_podman,
    oci_archive,
    save_tiny_image,
)

KIB = 1024
IMAGE_CAP = 256 * KIB
IMAGE_TYPES = [
    "application/x-tar (a container image: docker save / podman save, or an OCI archive)",
    "application/gzip (such a container image tarball, gzip-compressed)",
]


def make_phase(api: Api, db_url: str, name: str, kind: str, **values: Any) -> None:
    """A phase with task 1's ground truth, then made one of ``kind`` in its row (what
    the phase import does for algorithm phases is not this test's business)."""
    api.create_phase(name, tasks=[1])
    if kind != "predictions" or values:
        db_execute(db_url, update(Phase).where(Phase.name == name).values(kind=kind, **values))


@pytest.fixture
def svc(sqlite_url: str, app_factory: Any) -> dict[str, Any]:
    api: Api = app_factory(sqlite_url, dispatcher=RecordingDispatcher())
    make_phase(api, sqlite_url, "alg", "algorithm", image_max_bytes=IMAGE_CAP)
    make_phase(api, sqlite_url, "both", "both", image_max_bytes=IMAGE_CAP)
    make_phase(api, sqlite_url, "val", "predictions")
    return {"api": api, "db": sqlite_url, "token": api.create_team("t1")}


def post(
    svc: dict[str, Any],
    phase: str,
    file: tuple[str, bytes],
    model: tuple[str, bytes] | None = None,
    *,
    dry_run: bool = False,
    task: int = 1,
) -> httpx.Response:
    files = [("file", (file[0], file[1], "application/octet-stream"))]
    if model is not None:
        files.append(("model", (model[0], model[1], "application/octet-stream")))
    r: httpx.Response = svc["api"].client.post(
        "/api/v1/submissions",
        params={"dry_run": "true"} if dry_run else None,
        data={"phase": phase, "task": str(task)},
        files=files,
        headers=auth(svc["token"]),
    )
    return r


def stored(svc: dict[str, Any]) -> list[str]:
    """Every file under the data dir's submissions/ and incoming/ folders."""
    settings = svc["api"].settings
    return sorted(
        p.relative_to(settings.data_dir).as_posix()
        for d in (settings.submissions_dir, settings.incoming_dir)
        if d.exists()
        for p in d.rglob("*")
        if p.is_file()
    )


def row(db_url: str, sid: int) -> dict[str, Any]:
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        sub = s.get(Submission, sid)
        assert sub is not None
        out = {
            "kind": sub.kind,
            "archive_type": sub.archive_type,
            "archive_path": sub.archive_path,
            "status": sub.status,
            "size_bytes": sub.size_bytes,
            "sha256": sub.sha256,
        }
    engine.dispose()
    return out


def refused(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"detail", "errors"} and body["errors"], body
    assert "Traceback" not in r.text and "/tmp" not in r.text
    return str(body["detail"])


def model_tar(files: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in (files or {"weights/net.bin": b"\x01" * 1000}).items():
            add_bytes(tf, name, data)
    return buf.getvalue()


def config_id(tar_bytes: bytes) -> str:
    """The image id, worked out from the tarball itself: the SHA-256 of the config that
    manifest.json names."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tf:
        manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
        config = tf.extractfile(manifest[0]["Config"]).read()  # type: ignore[union-attr]
    return hashlib.sha256(config).hexdigest()


# -- accepted ----------------------------------------------------------------------------
def test_image_tarballs_are_stored_and_queued(svc: dict[str, Any], tmp_path: Path) -> None:
    api, db = svc["api"], svc["db"]
    tar = docker_save(tmp_path / "algo.tar").read_bytes()
    tar_gz = gzip.compress(tar)
    oci = oci_archive(tmp_path / "oci.tar").read_bytes()
    ids = []
    for name, data, stored_name in (
        ("algo.tar", tar, "algorithm.tar"),
        ("algo.tar.gz", tar_gz, "algorithm.tar.gz"),
        ("oci.tar", oci, "algorithm.tar"),
    ):
        r = post(svc, "alg", (name, data))
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["kind"] == "algorithm" and body["model_sha256"] is None
        assert body["sha256"] == hashlib.sha256(data).hexdigest()
        assert body["size_bytes"] == len(data)
        sid = body["id"]
        got = row(db, sid)
        assert got["kind"] == "algorithm" and got["status"] == "queued"
        assert got["archive_path"] == f"submissions/{sid}/{stored_name}"
        assert got["archive_type"] == "image." + stored_name.split(".", 1)[1]
        assert (api.settings.data_dir / got["archive_path"]).read_bytes() == data
        ids.append(sid)
    # the same config in all three: one image id, the config's SHA-256
    assert config_id(tar) == post(svc, "alg", ("again.tar", tar)).json()["image_id"]
    assert api.dispatcher.submitted[:3] == ids
    assert not [p for p in stored(svc) if p.startswith("incoming/")]


def test_image_with_a_model(svc: dict[str, Any], tmp_path: Path) -> None:
    api, db = svc["api"], svc["db"]
    tar = docker_save(tmp_path / "algo.tar").read_bytes()
    model = model_tar()
    r = post(svc, "alg", ("algo.tar", tar), ("weights.tar.gz", model))
    assert r.status_code == 202, r.text
    body = r.json()
    sid = body["id"]
    assert body["model_sha256"] == hashlib.sha256(model).hexdigest()
    assert body["size_bytes"] == len(tar) + len(model) == row(db, sid)["size_bytes"]
    folder = api.settings.submissions_dir / str(sid)
    assert sorted(p.name for p in folder.iterdir()) == [
        "algorithm.tar",
        "model.sha256",
        "model.tar.gz",
    ]
    assert (folder / "model.tar.gz").read_bytes() == model
    assert (folder / "model.sha256").read_text().strip() == hashlib.sha256(model).hexdigest()
    # an uncompressed model keeps its type
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as tf:
        add_bytes(tf, "w.bin", b"x" * 10)
    r = post(svc, "alg", ("algo.tar", tar), ("model.tar", plain.getvalue()), dry_run=True)
    assert r.status_code == 202, r.text
    assert (api.settings.submissions_dir / str(r.json()["id"]) / "model.tar").is_file()


def test_a_both_phase_takes_either(svc: dict[str, Any], challenge: Any, tmp_path: Path) -> None:
    db = svc["db"]
    zip_path = challenge.archive("good", 1)
    r = post(svc, "both", ("task1.zip", zip_path.read_bytes()))
    assert r.status_code == 202, r.text
    assert r.json()["kind"] == "predictions"
    got = row(db, r.json()["id"])
    assert (got["kind"], got["archive_type"]) == ("predictions", "zip")
    r = post(svc, "both", ("algo.tar.gz", docker_save(tmp_path / "a.tar.gz", gz=True).read_bytes()))
    assert r.status_code == 202, r.text
    got = row(db, r.json()["id"])
    assert (got["kind"], got["archive_type"]) == ("algorithm", "image.tar.gz")
    # a prediction archive sent with a model: the model has nothing to go with
    msg = refused(
        post(svc, "both", ("task1.zip", zip_path.read_bytes()), ("m.tar.gz", model_tar())), 400
    )
    assert msg == (
        "m.tar.gz: a model goes with an algorithm's image tarball only; task1.zip is a "
        "prediction upload: send it without 'model'"
    )


def test_real_podman_save_outputs_are_accepted(
    svc: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    saved: SavedImages = save_tiny_image(need_podman(), tmp_path_factory.mktemp("podman"))
    for path in (saved.docker_tar, saved.docker_tar_gz, saved.oci_tar):
        r = post(svc, "alg", (path.name, path.read_bytes()))
        assert r.status_code == 202, (path.name, r.text)
        assert r.json()["image_id"] == saved.image_id.removeprefix("sha256:")


# -- refused by kind -----------------------------------------------------------------------
def test_wrong_kind_for_the_phase_is_415(
    svc: dict[str, Any], challenge: Any, tmp_path: Path
) -> None:
    image = docker_save(tmp_path / "algo.tar").read_bytes()
    msg = refused(post(svc, "val", ("algo.tar", image)), 415)
    assert msg == (
        "algo.tar: is a container image tarball; phase 'val' judges prediction archives "
        "and tables, not algorithms: upload your predictions (Task 1: a .zip/.tar/.tar.gz "
        "of <PatientID>.nii.gz; Task 2/3: a .csv/.json table)"
    )
    zip_bytes = challenge.archive("good", 1).read_bytes()
    msg = refused(post(svc, "alg", ("task1.zip", zip_bytes)), 415)
    assert msg == (
        "task1.zip: is a .zip archive, not a container image tarball; phase 'alg' judges "
        "algorithms: a container image tarball (`docker save` output, .tar or .tar.gz): "
        "save your algorithm's image with `docker save myalgo:latest -o algo.tar` and "
        "upload that"
    )
    preds = io.BytesIO()
    with tarfile.open(fileobj=preds, mode="w:gz") as tf:
        add_bytes(tf, "CHUM-001.nii.gz", b"x")
    msg = refused(post(svc, "alg", ("preds.tar.gz", preds.getvalue())), 415)
    assert "is a gzip-compressed tar archive whose first member is 'CHUM-001.nii.gz'" in msg
    csv = b"PatientID,Prediction\nCHUM-001,0.5\n"
    msg = refused(post(svc, "alg", ("t.csv", csv), task=2), 404)  # the phase has task 1 only
    msg = refused(post(svc, "alg", ("t.csv", csv)), 415)
    assert msg.startswith("t.csv: is a table (CSV or JSON), not a container image tarball")
    # a model sent to a phase of predictions
    zip_with_model = post(svc, "val", ("task1.zip", zip_bytes), ("m.tar.gz", model_tar()))
    assert refused(zip_with_model, 400) == (
        "unexpected file field 'model'; phase 'val' takes prediction archives, which come "
        "without a model: send the archive as 'file'"
    )
    assert stored(svc) == []
    # the service still answers, and took a good upload afterwards
    assert post(svc, "val", ("task1.zip", zip_bytes)).status_code == 202


# -- refused by the check ---------------------------------------------------------------
def test_bad_images_are_422_with_every_problem_and_nothing_stored(
    svc: dict[str, Any], tmp_path: Path
) -> None:
    two = docker_save(tmp_path / "two.tar", n_images=2).read_bytes()
    r = post(svc, "alg", ("two.tar", two))
    assert refused(r, 422) == (
        "two.tar: holds 2 images; save exactly one: `docker save myalgo:latest -o "
        "algo.tar` (or `podman save`)"
    )
    assert r.json()["errors"][0]["kind"] == "image"
    other = "arm64" if host_architecture() != "arm64" else "amd64"
    bad = image_config(arch=other, os_name="windows", cmd=None)
    r = post(svc, "alg", ("arm.tar", docker_save(tmp_path / "arm.tar", config=bad).read_bytes()))
    refused(r, 422)
    messages = [e["message"] for e in r.json()["errors"]]
    assert len(messages) == 3 and all(m.startswith("arm.tar: the image ") for m in messages)
    assert "neither an ENTRYPOINT nor a CMD" in messages[2]
    info = tarfile.TarInfo("link")
    info.type, info.linkname = tarfile.SYMTYPE, "../../etc/shadow"
    out = docker_save(tmp_path / "s.tar", extra=[info]).read_bytes()
    assert "is a link to '../../etc/shadow', outside the archive" in refused(
        post(svc, "alg", ("s.tar", out)), 422
    )
    assert stored(svc) == []
    r = svc["api"].client.get("/api/v1/submissions", headers=auth(svc["token"]))
    assert r.status_code == 200 and r.json() == []


def test_bad_models(svc: dict[str, Any], tmp_path: Path) -> None:
    image = ("algo.tar", docker_save(tmp_path / "algo.tar").read_bytes())
    msg = refused(post(svc, "alg", image, ("weights.bin", b"\x00" * 2000)), 415)
    assert msg.startswith("weights.bin: the model must be a .tar or .tar.gz archive")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("dev")
        info.type = tarfile.CHRTYPE
        tf.addfile(info)
    r = post(svc, "alg", image, ("m.tar.gz", buf.getvalue()))
    assert refused(r, 422).startswith("m.tar.gz: its member 'dev' is a character device")
    assert r.json()["errors"][0]["kind"] == "model"
    big = model_tar({"w.bin": bytes(2 * IMAGE_CAP)})  # small compressed, over the cap expanded
    assert "is more than 256.0 KiB uncompressed" in refused(
        post(svc, "alg", image, ("m.tar.gz", big)), 422
    )
    huge = model_tar({"w.bin": os.urandom(IMAGE_CAP + KIB)})
    assert refused(post(svc, "alg", image, ("m.tar.gz", huge)), 413).startswith(
        "the model tarball is larger than the limit of 256.0 KiB"
    )
    # the form: the model after the file, at most one
    r = svc["api"].client.post(
        "/api/v1/submissions",
        data={"phase": "alg", "task": "1"},
        files=[("model", ("m.tar.gz", model_tar(), "x")), ("file", (*image, "x"))],
        headers=auth(svc["token"]),
    )
    assert refused(r, 400) == "send the field 'file' before 'model'"
    r = svc["api"].client.post(
        "/api/v1/submissions",
        data={"phase": "alg", "task": "1"},
        files=[
            ("file", (*image, "x")),
            ("model", ("m.tar.gz", model_tar(), "x")),
            ("model", ("n.tar.gz", model_tar(), "x")),
        ],
        headers=auth(svc["token"]),
    )
    assert refused(r, 400) == "send at most one 'model' file"
    assert stored(svc) == []


# -- sizes ------------------------------------------------------------------------------
def test_the_phase_image_limit(svc: dict[str, Any], tmp_path: Path) -> None:
    big = docker_save(tmp_path / "big.tar", extra=[("junk.bin", os.urandom(IMAGE_CAP))])
    msg = refused(post(svc, "alg", ("big.tar", big.read_bytes())), 413)
    assert msg == (
        "the image tarball is larger than the phase's image limit of 256.0 KiB; make the "
        "image smaller (a slimmer base, no build caches, no data baked in)"
    )
    # a both phase: the image limit for an image, the archive limit for an archive
    assert refused(post(svc, "both", ("big.tar", big.read_bytes())), 413) == msg
    # a gzip layer that expands over the limit inside a small tarball
    bomb = oci_archive(tmp_path / "bomb.tar", layer=gzip_bomb_layer(8 << 20)).read_bytes()
    assert len(bomb) < IMAGE_CAP
    assert refused(post(svc, "alg", ("bomb.tar", bomb)), 422) == (
        "bomb.tar: is more than 256.0 KiB uncompressed (reading stopped there), over the "
        "phase's image limit of 256.0 KiB; make the image smaller (a slimmer base, no "
        "build caches, no data baked in)"
    )
    assert stored(svc) == []


def test_declared_length_over_the_phase_limit_is_refused_before_the_file(
    tmp_path: Path, challenge: Any
) -> None:
    """The archive limit is 8 MiB, the algorithm phase's image limit 256 KiB: a body
    declared as 4 MiB passes the server's first check and is refused once the phase is
    read from the fields sent before the file, with no file byte sent."""
    db_url = f"sqlite:///{tmp_path / 'h.db'}"
    settings = make_settings(tmp_path / "data", db_url, max_upload_bytes=8 << 20)
    boundary = "algoboundary12345"
    with served(create_app(settings, dispatcher=RecordingDispatcher())) as base:
        r = httpx.post(
            f"{base}/api/v1/admin/phases",
            json={"name": "alg", "ground_truth": str(challenge.ground_truth), "tasks": [1]},
            headers=auth(ORG),
            timeout=120,
        )
        assert r.status_code == 201, r.text
        db_execute(db_url, update(Phase).values(kind="algorithm", image_max_bytes=IMAGE_CAP))
        token = httpx.post(
            f"{base}/api/v1/admin/teams", json={"name": "t"}, headers=auth(ORG)
        ).json()["token"]
        pre = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="phase"\r\n\r\nalg\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="task"\r\n\r\n1\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            'filename="algo.tar"\r\n\r\n'
        ).encode()
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(
                (
                    "POST /api/v1/submissions HTTP/1.1\r\n"
                    f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
                    f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                    f"Content-Length: {4 << 20}\r\n\r\n"
                ).encode()
                + pre
            )
            t0 = time.monotonic()
            data = b""
            sock.settimeout(20)
            while b"}" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        assert time.monotonic() - t0 < 10
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.split(b" ", 2)[1] == b"413", data[:300]
        assert json.loads(body)["detail"] == (
            "the upload (4.0 MiB) is larger than phase 'alg' takes (512.0 KiB: an image "
            "tarball of at most 256.0 KiB and a model of at most as much); make the image "
            "smaller (a slimmer base, no build caches, no data baked in)"
        )
    assert not settings.incoming_dir.exists() or not list(settings.incoming_dir.iterdir())


# -- duplicates ---------------------------------------------------------------------------
def test_duplicates_compare_the_image_and_the_model(
    sqlite_url: str, app_factory: Any, tmp_path: Path
) -> None:
    api: Api = app_factory(sqlite_url, dispatcher=RecordingDispatcher(), refuse_duplicates=True)
    make_phase(api, sqlite_url, "alg", "algorithm", image_max_bytes=IMAGE_CAP)
    svc = {"api": api, "db": sqlite_url, "token": api.create_team("t1")}
    image = ("algo.tar", docker_save(tmp_path / "algo.tar").read_bytes())
    m1, m2 = ("m.tar.gz", model_tar({"a": b"1"})), ("m.tar.gz", model_tar({"a": b"2"}))
    first = post(svc, "alg", image)
    assert first.status_code == 202, first.text
    msg = refused(post(svc, "alg", image), 409)
    sha = hashlib.sha256(image[1]).hexdigest()
    assert msg.startswith(
        f"algo.tar: byte-identical to submission {first.json()['id']} of your team for phase "
        f"'alg', task 1 (the same image SHA-256 {sha[:16]}…, no model, queued)"
    )
    assert "Submit a changed image or model" in msg
    assert post(svc, "alg", image, m1).status_code == 202  # another model
    assert post(svc, "alg", image, m2).status_code == 202
    assert ", the same model, queued" in refused(post(svc, "alg", image, m2), 409)
    assert post(svc, "alg", image, m2, dry_run=True).status_code == 202  # dry runs: never


# -- what a client is told before sending ----------------------------------------------------
def test_limits_of_an_algorithm_phase(sqlite_url: str, app_factory: Any) -> None:
    api: Api = app_factory(sqlite_url, dispatcher=RecordingDispatcher(), max_upload_bytes=5 << 20)
    limits = {
        "case_seconds": 77,
        "case_memory_mb": 1234,
        "case_cpus": 1.5,
        "case_pids": 99,
        "case_tmp_mb": 64,
        "case_output_mb": 32,
        "n_inputs": 6,
    }
    make_phase(api, sqlite_url, "alg", "algorithm", image_max_bytes=3 << 30, **limits)
    make_phase(api, sqlite_url, "both", "both", image_max_bytes=1 << 30)
    make_phase(api, sqlite_url, "val", "predictions")
    tok = api.create_team("t1")

    def ask(phase: str) -> dict[str, Any]:
        r = api.client.get(f"/api/v1/phases/{phase}/limits?task=1", headers=auth(tok))
        assert r.status_code == 200, r.text
        return dict(r.json())

    alg = ask("alg")
    assert alg["kind"] == "algorithm"
    assert alg["max_upload_bytes"] == alg["max_image_bytes"] == alg["max_model_bytes"] == 3 << 30
    assert alg["max_archive_bytes"] is None
    assert alg["accepted_types"] == IMAGE_TYPES
    assert alg["model_types"] == ["application/x-tar", "application/gzip (a .tar.gz)"]
    assert alg["case_limits"] == {
        "cases": 6,
        "seconds": 77,
        "memory_mb": 1234,
        "cpus": 1.5,
        "pids": 99,
        "gpu": False,
        "tmp_mb": 64,
        "output_mb": 32,
        "network": False,
    }
    both = ask("both")
    assert (both["max_archive_bytes"], both["max_image_bytes"]) == (5 << 20, 1 << 30)
    assert both["max_upload_bytes"] == 1 << 30
    assert both["accepted_types"] == [
        "application/zip",
        "application/x-tar",
        "application/gzip (a .tar.gz)",
        *IMAGE_TYPES,
    ]
    val = ask("val")
    assert val["kind"] == "predictions" and val["max_upload_bytes"] == 5 << 20
    assert val["max_image_bytes"] is None and val["case_limits"] is None
    assert val["model_types"] == []
    # the document says so too
    doc = api.client.get("/openapi.json").json()
    media = doc["paths"]["/api/v1/submissions"]["post"]["requestBody"]["content"]
    props = media["multipart/form-data"]["schema"]["properties"]
    assert props["file"]["x-accepted-types"]["algorithm"] == IMAGE_TYPES
    assert "image tarball at most the phase's image limit" in props["file"]["description"]
    assert "/opt/ml/model" in props["model"]["description"]


# -- the client -----------------------------------------------------------------------------
@pytest.fixture
def server(tmp_path: Path, challenge: Any) -> Iterator[dict[str, Any]]:
    db_url = f"sqlite:///{tmp_path / 'h.db'}"
    settings = make_settings(tmp_path / "data", db_url)
    dispatcher = RecordingDispatcher()
    with served(create_app(settings, dispatcher=dispatcher)) as base:
        for name in ("alg", "val"):
            r = httpx.post(
                f"{base}/api/v1/admin/phases",
                json={"name": name, "ground_truth": str(challenge.ground_truth), "tasks": [1]},
                headers=auth(ORG),
                timeout=120,
            )
            assert r.status_code == 201, r.text
        db_execute(
            db_url,
            update(Phase)
            .where(Phase.name == "alg")
            .values(kind="algorithm", image_max_bytes=IMAGE_CAP),
        )
        token = httpx.post(
            f"{base}/api/v1/admin/teams", json={"name": "t"}, headers=auth(ORG)
        ).json()["token"]
        yield {"base": base, "token": token, "settings": settings}


def submit(
    capsys: pytest.CaptureFixture[str], srv: dict[str, Any], *argv: str
) -> tuple[int, str, str]:
    code = main(["submit", "--server", srv["base"], "--token", srv["token"], *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_submit_an_image_with_a_model(
    server: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path, challenge: Any
) -> None:
    image = docker_save(tmp_path / "algo.tar.gz", gz=True)
    model = tmp_path / "model.tar.gz"
    model.write_bytes(model_tar())
    code, out, err = submit(
        capsys,
        server,
        "--phase",
        "alg",
        "--task",
        "1",
        "--no-wait",
        "--model",
        str(model),
        str(image),
    )
    assert code == 0, err
    sid = int(out.strip())
    folder = server["settings"].submissions_dir / str(sid)
    assert (folder / "algorithm.tar.gz").read_bytes() == image.read_bytes()
    assert (folder / "model.tar.gz").read_bytes() == model.read_bytes()
    # refused before sending: each names the file and what to do
    zip_path = challenge.archive("good", 1)
    code, _, err = submit(capsys, server, "--phase", "alg", "--task", "1", str(zip_path))
    assert code == 2
    assert "task1.zip: is a .zip archive, not a container image tarball" in err
    assert "Nothing was sent." in err
    code, _, err = submit(capsys, server, "--phase", "val", "--task", "1", str(image))
    assert code == 2
    assert "algo.tar.gz: is a container image tarball; phase 'val' takes prediction" in err
    big = docker_save(tmp_path / "big.tar", extra=[("junk", b"\1" * IMAGE_CAP)])
    code, _, err = submit(capsys, server, "--phase", "alg", "--task", "1", str(big))
    assert code == 2 and "is larger than the phase's image limit of 256.0 KiB" in err
    code, _, err = submit(
        capsys, server, "--phase", "val", "--task", "1", "--model", str(model), str(zip_path)
    )
    assert code == 2 and "a model goes with an algorithm's image tarball only" in err
    r = httpx.get(f"{server['base']}/api/v1/submissions", headers=auth(server["token"]))
    assert [s["id"] for s in r.json()] == [sid]


def test_fields_after_the_file(svc: dict[str, Any], tmp_path: Path) -> None:
    """The phase named after the file: its kind and limits apply once the body is read."""
    image = docker_save(tmp_path / "algo.tar").read_bytes()
    boundary = "fieldsafter0123"

    def body(phase: str) -> bytes:
        return (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                'filename="algo.tar"\r\n\r\n'
            ).encode()
            + image
            + (
                f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="phase"\r\n\r\n'
                f"{phase}\r\n--{boundary}\r\nContent-Disposition: form-data; "
                f'name="task"\r\n\r\n1\r\n--{boundary}--\r\n'
            ).encode()
        )

    def send(phase: str) -> httpx.Response:
        r: httpx.Response = svc["api"].client.post(
            "/api/v1/submissions",
            content=body(phase),
            headers={
                **auth(svc["token"]),
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )
        return r

    r = send("alg")
    assert r.status_code == 202, r.text
    assert r.json()["kind"] == "algorithm"
    assert refused(send("val"), 415).startswith("algo.tar: is a container image tarball;")
    assert refused(send("nope"), 404)
