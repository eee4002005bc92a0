"""Each job's outputs found under ``/input/<job pk>/output/`` and staged per task in the
layout ``hecktor-eval score`` reads:

- an image task: ``<stage>/<PatientID>.mha``, a hard link to (or, across file systems,
  a symbolic link to or a copy of) the job's only image in the socket's folder;
- a value task: ``<stage>/<PatientID>/<case file>`` (``rfs.json``, ``hpv-status.json``),
  the bytes of the job's JSON file, or ``json.dumps`` of the value in predictions.json
  when no file was written.

Values are not judged here: the table reader checks them (a NaN, a string where a number
belongs) and its messages are translated back to the job by :func:`job_message`.

The job-independent steps (:func:`present_path`, :func:`the_image`, :func:`place_file`,
:func:`copy_value_file`) also stage the outputs of a case run here
(:mod:`evaluator.gc.validate`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from evaluator.errors import SubmissionError
from evaluator.gc.mapping import CaseMap
from evaluator.gc.predictions import Job
from evaluator.gc.sockets import OutputSocket

__all__ = [
    "IMAGE_SUFFIX",
    "TIFF_SUFFIXES",
    "StagedTask",
    "copy_value_file",
    "job_message",
    "place_file",
    "present_path",
    "stage_task",
    "the_image",
]

IMAGE_SUFFIX = ".mha"
TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True, kw_only=True)
class StagedTask:
    """A task's staged predictions: the folder to score and where each case came from."""

    task: int
    root: Path
    sources: dict[str, tuple[str, str]] = field(default_factory=dict)  # pid -> (pk, source)


def _relative_path(job: Job, socket: OutputSocket, input_dir: Path) -> str:
    """The relative path of the job's output for ``socket``: its documented path or an
    accepted alternative listed among the job's outputs or present on disk, else (an
    image) the job's only image output. Raises ``ValueError``."""
    accepted = (socket.relative_path, *socket.also)
    listed = {v.relative_path for v in job.outputs}
    for rel in accepted:
        if rel in listed:
            return rel
    on_disk = present_path(input_dir / job.pk / "output", socket)
    if on_disk is not None:
        return on_disk
    if socket.image:
        images = [v.relative_path for v in job.outputs if v.super_kind == "Image"]
        if len(images) == 1:
            return images[0]
    found = ", ".join(sorted(listed)) or "none"
    raise ValueError(
        f"job {job.pk}: no output at {socket.relative_path} (outputs listed in "
        f"predictions.json: {found})"
    )


def present_path(output_dir: Path, socket: OutputSocket) -> str | None:
    """The first of the socket's accepted relative paths (its documented one, then its
    alternatives) that exists under ``output_dir``, or None."""
    for rel in (socket.relative_path, *socket.also):
        if (output_dir / rel).exists():
            return rel
    return None


def the_image(folder: Path) -> Path:
    """The one image file in ``folder`` (hidden files aside); raises ``ValueError``
    naming what is there."""
    if not folder.is_dir():
        raise ValueError(f"{folder} does not exist; expected one .mha image in it")
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    if len(files) != 1 or not files[0].is_file():
        found = ", ".join(p.name + ("/" if p.is_dir() else "") for p in files[:5]) or "nothing"
        raise ValueError(
            f"{folder} holds {len(files)} entries ({found}); expected exactly one .mha image"
        )
    image = files[0]
    name = image.name.lower()
    if name.endswith(TIFF_SUFFIXES):
        raise ValueError(
            f"{image}: TIFF is not a label-map format for this task; the algorithm must "
            "write its segmentation as one .mha file"
        )
    if not name.endswith(IMAGE_SUFFIX):
        raise ValueError(f"{image}: expected a .mha image, found {image.suffix or 'no suffix'}")
    return image


def _the_image(job: Job, folder: Path) -> Path:
    """:func:`the_image`, its problem told with the job."""
    try:
        return the_image(folder)
    except ValueError as exc:
        raise ValueError(f"job {job.pk}: {exc}") from None


def place_file(source: Path, dest: Path, *, symlink: bool = True) -> None:
    """``dest`` as a hard link to ``source``, else (``symlink``) a symbolic link, else a
    copy. Without ``symlink`` the staged file outlives ``source``'s file system (a
    volume unmounted after the case)."""
    try:
        os.link(source, dest)
        return
    except OSError:
        pass
    if symlink:
        try:
            dest.symlink_to(source.resolve())
            return
        except OSError:
            pass
    shutil.copyfile(source, dest)


def copy_value_file(source: Path, dest: Path) -> None:
    """The bytes of a value output copied to ``dest`` (its folder made if needed)."""
    dest.parent.mkdir(exist_ok=True)
    shutil.copyfile(source, dest)


def _stage_value(job: Job, socket: OutputSocket, rel: str, source: Path, dest: Path) -> None:
    """The JSON file of the job's value (from disk, else from predictions.json)."""
    if source.is_file():
        copy_value_file(source, dest)
        return
    dest.parent.mkdir(exist_ok=True)
    value = next((v.value for v in job.outputs if v.relative_path == rel), None)
    if value is None:
        raise ValueError(
            f"job {job.pk}: no {socket.relative_path} at {source} and no value for it in "
            "predictions.json"
        )
    dest.write_text(json.dumps(value), encoding="utf-8")


def stage_task(
    task: int,
    sockets: tuple[OutputSocket, ...],
    cases: CaseMap,
    patients: Collection[str],
    *,
    input_dir: Path,
    stage_dir: Path,
) -> tuple[StagedTask, list[str]]:
    """Stage the outputs of the jobs of ``patients`` for ``task`` under ``stage_dir``.
    Returns what was staged and the problems found (each naming its job)."""
    root = stage_dir / f"task{task}"
    root.mkdir(parents=True)
    staged = StagedTask(task=task, root=root)
    problems: list[str] = []
    for pid in sorted(patients):
        job = cases.jobs[pid]
        found = [_stage_one(job, pid, s, input_dir, root, problems) for s in sockets]
        shown = found[0] if len(found) == 1 else input_dir / job.pk / "output"
        if shown is not None:
            staged.sources[pid] = (job.pk, _shown(shown, input_dir))
    return staged, problems


def _stage_one(
    job: Job, pid: str, socket: OutputSocket, input_dir: Path, root: Path, problems: list[str]
) -> Path | None:
    """Stage one output of a job; the file it came from, or None (and a problem)."""
    try:
        rel = _relative_path(job, socket, input_dir)
        source = input_dir / job.pk / "output" / rel
        if socket.image:
            image = _the_image(job, source)
            place_file(image, root / f"{pid}{IMAGE_SUFFIX}")
            return image
        _stage_value(job, socket, rel, source, root / pid / socket.case_file)
        return source
    except ValueError as exc:
        problems.append(str(exc))
        return None


def _shown(path: Path, input_dir: Path) -> str:
    try:
        return path.relative_to(input_dir).as_posix()
    except ValueError:
        return str(path)


def _patient_in(case: str) -> str:
    """The PatientID a scorer problem concerns: its case field's first path part,
    without an image suffix."""
    first = case.split("/", 1)[0]
    for suffix in (IMAGE_SUFFIX, ".nii.gz", ".nii"):
        if first.endswith(suffix):
            return first[: -len(suffix)]
    return first


def job_message(problem: SubmissionError, staged: StagedTask) -> str:
    """A scorer problem about a staged file, told with the job and the file it came from."""
    pid = _patient_in(problem.case.strip())
    if pid in staged.sources:
        pk, source = staged.sources[pid]
        return f"Task {staged.task} case {pid} (job {pk}, {source}): {problem.message}"
    return f"Task {staged.task}: {problem}"
