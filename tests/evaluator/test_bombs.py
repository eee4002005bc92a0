"""Compression bombs against the scorer itself: each is refused (or scored) after
reading only what its task can accept, within a time and a memory bound.

The ground truth is one CT-size case (512x512x300, an empty mask). Memory is measured
with tracemalloc (NumPy's buffers and zlib's output are traced), time on the wall clock.
"""

from __future__ import annotations

import time
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evaluator.errors import SubmissionRejected
from evaluator.io.tables import read_predictions, table_bytes_limit, wanted_member
from evaluator.io.tree import read_tree
from evaluator.protocol import Limits
from evaluator.scoring import load_ground_truth, score_submission
from tests.builders import make_tar, make_zip, write_nifti
from tests.hostile import (
    GIB,
    ZipEntry,
    nii_gz_with_tail,
    raw_zip,
    tar_gz_bomb,
    zip_bomb,
)

CT = (512, 512, 300)
PID = "CASE-001"
LIM = Limits()


@pytest.fixture(scope="module")
def gt(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("gt")
    write_nifti(root / f"{PID}.nii.gz", np.zeros(CT, np.uint8), np.eye(4))
    return load_ground_truth(1, root)


def measured(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """``fn()``'s result (or the SubmissionRejected it raised), seconds, peak bytes."""
    tracemalloc.start()
    t = time.perf_counter()
    try:
        out: Any = fn()
    except SubmissionRejected as exc:
        out = exc
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, seconds, peak


def rejected(gt: Any, path: Path, **kw: Any) -> tuple[list[tuple[str, str]], float, int]:
    out, seconds, peak = measured(lambda: score_submission(1, gt, path, **kw))
    assert isinstance(out, SubmissionRejected), out
    return [(p.case, p.message) for p in out.problems], seconds, peak


def test_zip_bomb_members_not_named_after_a_case_are_never_inflated(gt, tmp_path) -> None:
    """8 members of 1 GiB (8.5 MB of zip): listed, not read."""
    p = tmp_path / "bomb.zip"
    p.write_bytes(zip_bomb([f"bomb{i}.bin" for i in range(8)]))
    assert p.stat().st_size < 9_000_000
    problems, seconds, peak = rejected(gt, p)
    assert [c for c, _ in problems] == [f"{PID}.nii.gz"] + [f"bomb{i}.bin" for i in range(8)]
    assert problems[0][1].startswith(f"no prediction for case {PID}")
    assert all(
        m.startswith("unexpected file: a Task 1 submission holds only") for _, m in problems[1:]
    )
    assert seconds < 2.0 and peak < 16 << 20, (seconds, peak)


def test_zip_member_named_after_the_case_but_larger_than_its_grid_can_need(gt, tmp_path) -> None:
    p = tmp_path / "bomb.zip"
    p.write_bytes(zip_bomb([f"{PID}.nii"]))
    problems, seconds, peak = rejected(gt, p)
    assert problems == [
        (
            f"{PID}.nii",
            "the file is 1,073,741,824 bytes uncompressed, more than a label map on this "
            "case's CT grid (512x512x300) can take (642,154,496 bytes with a header, voxels "
            "of up to 8 bytes and the gzip framing); save the prediction as a .nii.gz or "
            ".mha label map on the CT grid",
        ),
        (f"{PID}.nii.gz", f"no prediction for case {PID}; every case of the phase needs a "
         f"label map named {PID}.nii.gz or {PID}.mha (an empty mask is a valid prediction)"),
    ]  # fmt: skip
    assert seconds < 2.0 and peak < 16 << 20, (seconds, peak)


def test_unknown_case_declaring_a_gibibyte_is_not_read(gt, tmp_path) -> None:
    p = tmp_path / "forged.zip"
    p.write_bytes(raw_zip([ZipEntry("NOPE-001.nii.gz", b"\0" * 1000, size=GIB, crc=0)]))
    problems, seconds, _ = rejected(gt, p)
    assert problems[1][0] == "NOPE-001.nii.gz"
    assert "case 'NOPE-001' is not part of this phase; remove it" in problems[1][1]
    assert seconds < 2.0


def test_tar_gz_bomb_is_not_inflated_past_the_unread_allowance(gt, tmp_path) -> None:
    """8 members of 1 GiB in 8.5 MB of .tar.gz: skipping the first would mean
    inflating it, so the archive is refused there."""
    p = tmp_path / "bomb.tar.gz"
    p.write_bytes(tar_gz_bomb([f"bomb{i}.nii" for i in range(8)]))
    problems, seconds, peak = rejected(gt, p)
    assert problems == [
        (
            "bomb.tar.gz",
            "member 'bomb0.nii' (1.0 GiB) is not read by this task (not a file it accepts, "
            "a second copy, or larger than the task can take), and what it does not read "
            "adds up to more than 64.0 MiB: a .tar.gz must be inflated to skip them, so it "
            "is not read further; put only the prediction files in the archive",
        )
    ]
    assert seconds < 2.0 and peak < 16 << 20, (seconds, peak)
    # the same for a member named after the case: too large for its grid, not read
    p.write_bytes(tar_gz_bomb([f"{PID}.nii.gz"] * 2))
    problems, seconds, _ = rejected(gt, p)
    assert "member 'CASE-001.nii.gz' (1.0 GiB) is not read by this task" in problems[0][1]
    assert seconds < 2.0


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_label_map_whose_stream_goes_on_past_its_declared_size(gt, tmp_path, kind) -> None:
    """A valid .nii.gz declaring the CT grid whose gzip stream holds 1 GiB: the 75 MiB of
    voxels are inflated slice by slice, then 1 MiB more at most, and it is refused."""
    data = nii_gz_with_tail(CT, 1024)
    build = make_zip if kind == "zip" else make_tar
    p = build(tmp_path / f"tail.{kind}", {f"preds/{PID}.nii.gz": data})
    problems, seconds, peak = rejected(gt, p)
    assert problems == [
        (
            f"{PID}.nii.gz",
            "the file holds more data than its header declares: the gzip stream goes on "
            "for more than 1 MiB after the 78,643,552 bytes of header and voxel data; save "
            "the label map again (a .nii.gz ends with its voxel data)",
        )
    ]
    assert seconds < 3.0 and peak < 32 << 20, (seconds, peak)


def test_up_to_one_mib_after_the_voxels_is_looked_at_and_accepted(gt, tmp_path) -> None:
    # 75 MiB are the voxels of 512x512x300 uint8; 76 MiB leaves 1 MiB after them
    p = make_zip(tmp_path / "ok.zip", {f"{PID}.nii.gz": nii_gz_with_tail(CT, 76)})
    doc, seconds, peak = measured(lambda: score_submission(1, gt, p))
    assert doc["status"] == "scored" and doc["cases"][0]["gtvp_dsc"] == 1.0
    assert seconds < 3.0 and peak < 32 << 20, (seconds, peak)
    p = make_zip(tmp_path / "no.zip", {f"{PID}.nii.gz": nii_gz_with_tail(CT, 77)})
    problems, _, _ = rejected(gt, p)
    assert "holds more data than its header declares" in problems[0][1]


def test_header_with_another_grid_is_refused_before_any_voxel_is_inflated(gt, tmp_path) -> None:
    """512x512x1000 declared (and 1 GiB in the stream): refused by the header alone."""
    p = make_zip(tmp_path / "grid.zip", {f"{PID}.nii.gz": nii_gz_with_tail((512, 512, 1000), 1024)})
    problems, seconds, peak = rejected(gt, p)
    assert problems == [
        (
            f"{PID}.nii.gz",
            "shape (512, 512, 1000) does not match the CT (512, 512, 300); predictions must "
            "be on the CT grid, they are not resampled",
        )
    ]
    assert seconds < 0.5 and peak < 4 << 20, (seconds, peak)


def test_oversized_table_is_refused_by_its_size_and_never_read_whole(tmp_path) -> None:
    ids = ["A-1", "A-2", "A-3"]
    cap = table_bytes_limit(len(ids), LIM)
    assert cap == (1 << 20) + 3 * 1024
    # a 1 GiB table member of 1 MB: refused by its declared size, nothing inflated
    p = tmp_path / "t.zip"
    p.write_bytes(zip_bomb(["predictions.csv"]))
    (tree, seconds, peak) = measured(lambda: read_tree(p, limits=LIM, want=wanted_member, cap=cap))
    with pytest.raises(SubmissionRejected) as e:
        read_predictions(tree, task=2, case_ids=ids)
    assert [x.message for x in e.value.problems] == [
        "predictions.csv: the file is 1,073,741,824 bytes, more than the 1,051,648-byte limit "
        "for a prediction table of this phase; a table of a few hundred cases takes a few "
        "kilobytes, check that you uploaded the right file"
    ]
    assert seconds < 1.0 and peak < 8 << 20, (seconds, peak)
    # a member that declares less than it holds is read up to the cap, not further
    body = b"PatientID,Prediction\n" + b"A-1,1\n" * 300_000
    q = tmp_path / "liar.zip"
    with zipfile.ZipFile(q, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("p.csv", body)
    tree = read_tree(q, limits=LIM, want=wanted_member, cap=cap)
    with pytest.raises(SubmissionRejected, match="more than the 1,051,648-byte limit"):
        read_predictions(tree, task=2, case_ids=ids)
