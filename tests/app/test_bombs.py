"""Compression bombs through the HTTP API, judged by the real local dispatcher (spawn
process pool, jobs under an address-space limit), as dry runs and as submissions.

Each bomb is refused quickly with a message that names the member, says what was
expected and what to do; the judges' memory stays small; the service keeps
answering; and a valid submission is scored afterwards. The bombs expand to 1-8 GiB
but take 1-9 MB: they are built from copies of one deflated MiB of zeros, so none
of it is ever written to disk or held in memory.
"""

from __future__ import annotations

import gzip
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from app.jobs.local import LocalDispatcher
from tests.app.conftest import Api, judge_pids, judged_service
from tests.hostile import make_zip, nii_gz_with_tail, proc_memory, tar_gz_bomb, zip_bomb

PHASE = "bombs"
TIME_BOUND = 15.0  # seconds from upload to judgment (the 8 GiB bombs took 203-292 s before)
JUDGE_PEAK_RSS = 700 << 20


@dataclass
class World:
    api: Api
    token: str
    dispatcher: LocalDispatcher
    good1: dict[str, bytes]
    case0: str
    shape: tuple[int, int, int]
    affine: Any
    good2: bytes


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, challenge: Any) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("bombs")
    with judged_service(tmp, challenge, job_memory_mb=1536, job_timeout_seconds=300) as (api, d):
        api.create_phase(
            PHASE,
            daily_limit=1000,
            dry_run_limit=1000,
            failed_limit=1000,
            dry_run_bytes=1 << 40,
            failed_bytes=1 << 40,
        )
        token = api.create_team("boom")
        good1 = challenge.predictions("good")
        case0 = sorted(good1)[0]
        img = nib.Nifti1Image.from_bytes(gzip.decompress(good1[case0]))
        yield World(
            api,
            token,
            d,
            good1,
            case0,
            tuple(int(x) for x in img.shape),  # type: ignore[arg-type]
            np.asarray(img.affine),
            challenge.archive("good", 2).read_bytes(),
        )


def with_case0(w: World, data: bytes, fmt: str = "zip") -> bytes:
    files = {**w.good1, w.case0: data}
    if fmt == "zip":
        return make_zip(files, compression=zipfile.ZIP_STORED)
    import io
    import tarfile

    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w:gz") as tf:
        for name, content in files.items():
            info = tarfile.TarInfo(f"preds/{name}")
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
    return bio.getvalue()


@dataclass(frozen=True)
class Bomb:
    id: str
    task: int
    build: Callable[[World], bytes]
    expect: Callable[[World], list[str]]  # substrings of the messages


BOMBS = [
    Bomb(
        "zip-8x1GiB-not-cases",
        1,
        lambda w: zip_bomb([f"bomb{i}.bin" for i in range(8)]),
        lambda w: ["bomb0.bin: unexpected file: a Task 1 submission holds only", "bomb7.bin:",
                   f"no prediction for case {w.case0.removesuffix('.nii.gz')}"],
    ),
    Bomb(
        "zip-1GiB-named-after-a-case",
        1,
        lambda w: zip_bomb([w.case0.replace(".nii.gz", ".nii")]),
        lambda w: ["the file is 1,073,741,824 bytes uncompressed, more than a label map on "
                   "this case's CT grid", "save the prediction as a .nii.gz or .mha label map"],
    ),
    Bomb(
        "tar.gz-8x1GiB",
        1,
        lambda w: tar_gz_bomb([f"bomb{i}.bin" for i in range(8)]),
        lambda w: ["member 'bomb0.bin' (1.0 GiB) is not read by this task",
                   "put only the prediction files in the archive"],
    ),
    Bomb(
        "zip-stream-goes-on-1GiB",
        1,
        lambda w: with_case0(w, nii_gz_with_tail(w.shape, 1024, affine=w.affine)),
        lambda w: [f"{w.case0}: the file holds more data than its header declares"],
    ),
    Bomb(
        "tar.gz-stream-goes-on-1GiB",
        1,
        lambda w: with_case0(w, nii_gz_with_tail(w.shape, 1024, affine=w.affine), "tar.gz"),
        lambda w: [f"{w.case0}: the file holds more data than its header declares"],
    ),
    Bomb(
        "header-declares-a-ct-grid-not-this-case's",
        1,
        lambda w: with_case0(w, nii_gz_with_tail((512, 512, 300), 1024, affine=w.affine)),
        lambda w: [f"{w.case0}: shape (512, 512, 300) does not match the CT {w.shape}"],
    ),
    Bomb(
        "table-1GiB",
        2,
        lambda w: zip_bomb(["predictions.csv"]),
        lambda w: ["the file is 1,073,741,824 bytes, more than the",
                   "-byte limit for a prediction table of this phase"],
    ),
]  # fmt: skip


def _messages(doc: dict[str, Any]) -> str:
    return "\n".join(f"{e.get('case', '')}: {e.get('message', '')}" for e in doc["errors"] or [])


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "submission"])
@pytest.mark.parametrize("bomb", BOMBS, ids=[b.id for b in BOMBS])
def test_bomb_fails_fast(world: World, bomb: Bomb, dry_run: bool) -> None:
    api = world.api
    content = bomb.build(world)
    assert len(content) < 9_000_000
    t0 = time.monotonic()
    r = api.upload(world.token, PHASE, bomb.task, content=content, filename="b", dry_run=dry_run)
    assert r.status_code == 202, r.text[:300]
    doc = api.wait(world.token, r.json()["id"], timeout=TIME_BOUND)
    elapsed = time.monotonic() - t0
    text = _messages(doc)
    assert doc["status"] == "failed" and doc["result"] is None, doc
    assert all(e["kind"] != "internal" for e in doc["errors"]), text
    for want in bomb.expect(world):
        assert want in text, text
    assert "Traceback" not in text and "hecktor-sub-" not in text
    assert elapsed < TIME_BOUND, elapsed
    for pid in judge_pids(world.dispatcher):
        assert proc_memory(pid, "VmHWM") < JUDGE_PEAK_RSS, (pid, proc_memory(pid, "VmHWM"))
    assert api.client.get("/healthz").status_code == 200
    assert api.client.get(f"/api/v1/leaderboards/{PHASE}/{bomb.task}").status_code == 200


def test_next_valid_submissions_are_scored(world: World) -> None:
    api = world.api
    for task, content in ((1, make_zip(world.good1)), (2, world.good2)):
        t0 = time.monotonic()
        sid = api.submit_ok(world.token, PHASE, task, None, content=content, filename="ok")
        doc = api.wait(world.token, sid, timeout=TIME_BOUND)
        assert doc["status"] == "scored", doc["errors"]
        assert time.monotonic() - t0 < TIME_BOUND
    assert [r["team"] for r in api.leaderboard(PHASE, 1)["rows"]] == ["boom"]
