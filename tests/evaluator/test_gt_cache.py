"""Offline ``score`` keeps Task 1's prepared ground truth in the user's cache folder,
under the ground truth's hash: the second run decodes no ground-truth label map and
gives the same result; ``--no-cache`` skips it; a corrupt entry is rebuilt; the folder
is bounded."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import evaluator.io.task1_truth as task1_truth
from evaluator.cli import main
from evaluator.io.gt_cache import ENTRIES, evict, user_cache_dir
from evaluator.io.hashing import combine_hashes, sha256_file
from evaluator.synth import generate_challenge

N_CASES = 6


@pytest.fixture(scope="module")
def challenge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gtcache") / "c"
    generate_challenge(root, seed=3, small=True, n_cases=N_CASES, teams=("good",))
    return root


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the ground-truth label maps decoded (each call of the reader)."""
    seen: list[str] = []
    real: Callable[..., Any] = task1_truth.read_label_map

    def counting(source: Any, **kw: Any) -> Any:
        seen.append(str(kw.get("name")))
        return real(source, **kw)

    monkeypatch.setattr(task1_truth, "read_label_map", counting)
    return seen


def score(
    challenge: Path, out: Path, *flags: str, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    argv = [
        "score", "--task", "1", "-q",
        "--ground-truth", str(challenge / "ground_truth" / "Task 1"),
        "--predictions", str(challenge / "submissions" / "good" / "task1.zip"),
        "--output", str(out), *flags,
    ]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def stable(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without what records when and how long it ran."""
    drop = {"created_at", "started_at", "finished_at", "elapsed_s", "timing", "duration_s"}
    return {k: v for k, v in doc.items() if k not in drop}


def test_user_cache_dir_follows_xdg() -> None:
    assert user_cache_dir({"XDG_CACHE_HOME": "/x/y"}) == Path("/x/y/hecktor-eval")
    assert user_cache_dir({}) == Path.home() / ".cache" / "hecktor-eval"
    assert user_cache_dir({"XDG_CACHE_HOME": "relative"}) == Path.home() / ".cache" / "hecktor-eval"


def test_second_run_decodes_no_ground_truth_and_scores_the_same(
    challenge: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    decodes: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = score(challenge, tmp_path / "a.json", capsys=capsys)
    assert len(decodes) == N_CASES
    # the entry is named by the ground truth's hash (over its label files' own hashes)
    gt_dir = challenge / "ground_truth" / "Task 1"
    files = sorted(p for p in gt_dir.rglob("*.nii.gz") if "__" not in p.name)
    sha = combine_hashes((p.name.removesuffix(".nii.gz"), sha256_file(p)) for p in files)
    entries = list((tmp_path / "cache" / "hecktor-eval" / ENTRIES).iterdir())
    assert [e.name for e in entries] == [sha]

    decodes.clear()
    second = score(challenge, tmp_path / "b.json", capsys=capsys)
    assert decodes == []
    assert stable(second) == stable(first)

    decodes.clear()
    third = score(challenge, tmp_path / "c.json", "--no-cache", capsys=capsys)
    # read to validate, then each crop decoded again by the case it is scored in
    assert sorted(set(decodes)) == sorted(str(p) for p in files) and len(decodes) == 2 * N_CASES
    assert stable(third) == stable(first)


def test_a_corrupt_entry_is_ignored_and_rebuilt(
    challenge: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    decodes: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = score(challenge, tmp_path / "a.json", capsys=capsys)
    (entry,) = (tmp_path / "cache" / "hecktor-eval" / ENTRIES).iterdir()
    crop = next(entry.glob("*.npy"))
    data = crop.read_bytes()
    crop.write_bytes(data[:-8] + bytes(b ^ 0xFF for b in data[-8:]))  # changed on disk
    decodes.clear()
    assert stable(score(challenge, tmp_path / "b.json", capsys=capsys)) == stable(first)
    assert len(decodes) == N_CASES  # rebuilt
    (entry / "manifest.json").write_text("{not json")
    decodes.clear()
    assert stable(score(challenge, tmp_path / "c.json", capsys=capsys)) == stable(first)
    assert len(decodes) == N_CASES
    decodes.clear()
    assert stable(score(challenge, tmp_path / "d.json", capsys=capsys)) == stable(first)
    assert decodes == []


def test_an_unwritable_cache_folder_is_a_note_not_a_failure(
    challenge: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file: no folder under it
    argv = [
        "score", "--task", "1", "-q",
        "--ground-truth", str(challenge / "ground_truth" / "Task 1"),
        "--predictions", str(challenge / "submissions" / "good" / "task1.zip"),
        "--output", str(tmp_path / "a.json"),
    ]  # fmt: skip
    assert main(argv) == 0
    assert "ground-truth cache" in capsys.readouterr().err


def test_eviction_removes_the_least_recently_used_entries(tmp_path: Path) -> None:
    for i, name in enumerate(("old", "mid", "new")):
        d = tmp_path / name
        d.mkdir()
        (d / "crop.npy").write_bytes(bytes(1000))
        t = time.time() - 100 + i * 10
        os.utime(d, (t, t))
    stale = tmp_path / ".half-built"
    stale.mkdir()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    fresh = tmp_path / ".building"
    fresh.mkdir()
    evict(tmp_path, 2000, keep=tmp_path / "old")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".building", "new", "old"]
