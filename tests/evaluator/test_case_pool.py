"""Scoring cases over several processes (``evaluator.pipeline.pool.map_cases``): the same document
and the same problem list whatever the number of processes and however they start;
a scoring process that dies or raises fails the submission with a message that names
the cases, within seconds, and leaves no process behind."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

import evaluator.pipeline.pool as pool
from evaluator.cli import main
from evaluator.errors import ScoringProcessError, SubmissionRejected
from evaluator.pipeline.case import CaseJob
from evaluator.scoring import load_ground_truth, score_submission
from evaluator.synth import SynthSummary, generate_challenge


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return generate_challenge(
        tmp_path_factory.mktemp("pool") / "c", small=True, n_cases=12, teams=("good",)
    )


@pytest.fixture(scope="module")
def world(synth: SynthSummary, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = Path(synth.out_dir)
    gt = load_ground_truth(
        1, root / "ground_truth" / "Task 1", cache_dir=tmp_path_factory.mktemp("prep")
    )
    preds = tmp_path_factory.mktemp("preds")
    with zipfile.ZipFile(root / "submissions" / "good" / "task1.zip") as zf:
        for info in zf.infolist():
            if not info.is_dir():
                (preds / Path(info.filename).name).write_bytes(zf.read(info))
    return {"gt": gt, "preds": preds}


def _fork_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Children forked from this process (whatever threads pytest runs), so that a
    patched ``run_case`` is the one they call."""
    monkeypatch.setattr(pool, "_pool_context", lambda: multiprocessing.get_context("fork"))


@pytest.fixture()
def no_children_left() -> Iterator[None]:
    """Every scoring process a test started has ended (other tests' processes, such as
    a dispatcher's, are left alone)."""
    before = set(multiprocessing.active_children())
    yield
    deadline = time.monotonic() + 5
    while set(multiprocessing.active_children()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(multiprocessing.active_children()) - before == set()


@pytest.mark.parametrize("context", ["fork", "forkserver"])
@pytest.mark.usefixtures("no_children_left")
def test_any_number_of_processes_gives_the_same_document(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, context: str
) -> None:
    one = score_submission(1, world["gt"], world["preds"], workers=1)
    ctx = multiprocessing.get_context(context)
    monkeypatch.setattr(pool, "_pool_context", lambda: ctx)
    for workers in (2, 3, 5, 40):
        seen: list[tuple[int, int]] = []
        doc = score_submission(
            1,
            world["gt"],
            world["preds"],
            workers=workers,
            progress=lambda d, t, seen=seen: seen.append((d, t)),
        )
        assert json.dumps(doc, sort_keys=True) == json.dumps(one, sort_keys=True), workers
        assert seen[-1] == (12, 12) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_problems_found_in_other_processes_are_listed_the_same(
    world: dict[str, Any], tmp_path: Path
) -> None:
    preds = tmp_path / "preds"
    preds.mkdir()
    files = sorted(world["preds"].iterdir())
    for f in files:
        (preds / f.name).write_bytes(f.read_bytes())
    img = nib.load(files[3])
    arr = np.asanyarray(img.dataobj).copy()
    arr[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(arr, img.affine, img.header), preds / files[3].name)
    other = nib.load(files[8])
    moved = other.affine.copy()
    moved[0, 3] += 5.0
    nib.save(
        nib.Nifti1Image(np.asanyarray(other.dataobj), moved, other.header), preds / files[8].name
    )
    (preds / files[10].name).write_bytes(b"\x1f\x8b" + b"not gzip at all" * 4)
    messages = []
    for workers in (1, 3):
        with pytest.raises(SubmissionRejected) as e:
            score_submission(1, world["gt"], preds, workers=workers)
        messages.append([str(p) for p in e.value.problems])
    assert messages[0] == messages[1]
    assert len(messages[0]) == 3
    assert files[3].name in messages[0][0] and "7" in messages[0][0]
    assert files[8].name in messages[0][1] and "affine" in messages[0][1]
    assert files[10].name in messages[0][2] and "gzip" in messages[0][2]


@pytest.mark.usefixtures("no_children_left")
def test_a_killed_scoring_process_fails_the_submission_naming_cases(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fork_pool(monkeypatch)
    parent, real = os.getpid(), pool.run_case

    def killed_in_children(job: CaseJob) -> Any:
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
        time.sleep(0.3)  # the parent slower than a starting child, however loaded the host
        return real(job)

    monkeypatch.setattr(pool, "run_case", killed_in_children)
    t = time.monotonic()
    with pytest.raises(
        ScoringProcessError, match=r"a scoring process died \(exit code -9\).*\.nii\.gz"
    ):
        score_submission(1, world["gt"], world["preds"], workers=2)
    assert time.monotonic() - t < 20


@pytest.mark.usefixtures("no_children_left")
def test_an_error_in_a_scoring_process_is_reported_not_swallowed(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fork_pool(monkeypatch)
    parent, real = os.getpid(), pool.run_case

    def fails_in_children(job: CaseJob) -> Any:
        if os.getpid() != parent:
            raise MemoryError("no room for the crop")
        time.sleep(0.3)  # the parent slower than a starting child, however loaded the host
        return real(job)

    monkeypatch.setattr(pool, "run_case", fails_in_children)
    with pytest.raises(
        ScoringProcessError, match=r"scoring case \S+\.nii\.gz failed: MemoryError: no room"
    ):
        score_submission(1, world["gt"], world["preds"], workers=3)


@pytest.mark.usefixtures("no_children_left")
def test_an_error_in_this_process_stops_the_others(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fork_pool(monkeypatch)
    parent, real = os.getpid(), pool.run_case

    def slow_children_failing_parent(job: CaseJob) -> Any:
        if os.getpid() != parent:
            time.sleep(60)  # would hold the submission for a minute if left running
        else:
            raise KeyError("a bug in this process")
        return real(job)

    monkeypatch.setattr(pool, "run_case", slow_children_failing_parent)
    t = time.monotonic()
    with pytest.raises(KeyError, match="a bug in this process"):
        score_submission(1, world["gt"], world["preds"], workers=3)
    assert time.monotonic() - t < 15


@pytest.mark.usefixtures("no_children_left")
def test_the_cli_reports_a_dead_scoring_process_without_a_traceback(
    synth: SynthSummary,
    world: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    _fork_pool(monkeypatch)
    parent, real = os.getpid(), pool.run_case

    def killed_in_children(job: CaseJob) -> Any:
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(job)

    monkeypatch.setattr(pool, "run_case", killed_in_children)
    out = tmp_path / "result.json"
    rc = main(
        [
            "score",
            "--task",
            "1",
            "--ground-truth",
            str(Path(synth.out_dir) / "ground_truth" / "Task 1"),
            "--predictions",
            str(world["preds"]),
            "--workers",
            "2",
            "--output",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "error: scoring stopped, no score was computed: a scoring process died" in err
    assert "fewer workers" in err and "Traceback" not in err
    assert not out.exists()  # no document, so nothing that looks like a score
