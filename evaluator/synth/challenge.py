"""Writing a whole synthetic challenge: ground truth, each team's submissions, manifest."""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from evaluator.synth.clinical import ClinicalTables, clinical_tables
from evaluator.synth.cohort import CENTRES, patient_ids, random_stream
from evaluator.synth.edition2026 import stage_tables, write_tables_2026
from evaluator.synth.geometry import boxes, paste
from evaluator.synth.images import label_image, nifti_gz_bytes, zip_member
from evaluator.synth.inputs import INPUTS_DIR, write_case_images, write_ehr
from evaluator.synth.manifest import (
    GENERATOR,
    TASK2_CSV,
    TASK3_CSV,
    build_manifest,
    manifest_text,
)
from evaluator.synth.predictions import SharedDraws, predict_case
from evaluator.synth.team_presets import GT_CODEC, PRESET_BY_NAME, TEAM_PRESETS, TeamPreset
from evaluator.synth.truth import Case, plan_case

logger = logging.getLogger("evaluator.synth")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SynthSummary:
    """Where :func:`generate_challenge` wrote what."""

    out_dir: Path
    ground_truth_dir: Path
    submissions_dir: Path
    case_ids: tuple[str, ...]
    teams: tuple[str, ...]

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / "manifest.json"

    @property
    def inputs_dir(self) -> Path:
        """The algorithm inputs: ``<PatientID>/<PatientID>__CT.nii.gz``, ``__PT.nii.gz``
        and ``ehr.json`` per case."""
        return self.out_dir / INPUTS_DIR


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A UTF-8 CSV file with ``\\n`` line ends."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def _is_synth_output(out_dir: Path, entries: set[str]) -> bool:
    if not entries <= {"ground_truth", "submissions", INPUTS_DIR, "manifest.json"}:
        return False
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("generator") == GENERATOR


def _prepare_out_dir(out_dir: Path) -> None:
    """Create ``out_dir``; a complete earlier synth output in it is replaced, any other
    content refused (nothing is deleted that this generator did not write)."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise FileExistsError(f"{out_dir} exists and is not a folder")
        entries = {p.name for p in out_dir.iterdir()}
        if entries and not _is_synth_output(out_dir, entries):
            raise FileExistsError(
                f"{out_dir} is not empty and is not a complete earlier synthetic challenge "
                f"(found: {', '.join(sorted(entries)[:5])}); choose a new or empty folder, "
                "or remove this one"
            )
        for name in sorted(entries):
            p = out_dir / name
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def generate_challenge(
    out_dir: Path,
    *,
    seed: int = 0,
    n_cases: int | None = None,
    small: bool = False,
    teams: Sequence[str] = ("perfect", "good", "mediocre", "poor"),
    progress: Progress | None = None,
    edition: int = 2025,
) -> SynthSummary:
    """Write a synthetic challenge (ground truth, algorithm inputs, submissions,
    manifest) to ``out_dir``.

    ``n_cases`` defaults to 12 when ``small`` and 40 otherwise. ``teams`` are names of
    :data:`TEAM_PRESETS`. ``out_dir`` must be new, empty, or an earlier output of this
    function (which is replaced). ``progress(done, total)`` is called after each case.
    ``edition=2026`` writes the HECKTOR 2026 Task 2/3 files instead of the 2025 ones
    (:mod:`evaluator.synth.edition2026`); Task 1 is the same in both.
    """
    if edition not in (2025, 2026):
        raise ValueError(f"edition must be 2025 or 2026, not {edition!r}")
    out_dir = Path(out_dir)
    n = (12 if small else 40) if n_cases is None else int(n_cases)
    presets = _presets(n, teams)
    _prepare_out_dir(out_dir)
    gt_dir = out_dir / "ground_truth"
    sub_dir = out_dir / "submissions"
    (gt_dir / "Task 1").mkdir(parents=True)
    (gt_dir / "Task 2").mkdir()
    (gt_dir / "Task 3").mkdir()
    for p in presets:
        (sub_dir / p.name).mkdir(parents=True)

    ids = patient_ids(random_stream(seed, 1), n)
    inputs_dir = out_dir / INPUTS_DIR
    cases = _write_task1(
        ids, presets, gt_dir, sub_dir, inputs_dir, seed=seed, small=small, progress=progress
    )
    tables = clinical_tables(cases, seed=seed)
    write_ehr(cases, inputs_dir, seed=seed)
    stages = None
    if edition == 2026:
        stages = stage_tables(cases, seed=seed)
        write_tables_2026(cases, presets, tables, stages, gt_dir, sub_dir)
    else:
        _write_tables(cases, ids, presets, tables, gt_dir, sub_dir, seed=seed)

    manifest = build_manifest(
        seed=seed,
        small=small,
        cases=cases,
        presets=presets,
        rfs=tables.rfs,
        hpv=tables.hpv,
        stages=stages,
    )
    (out_dir / "manifest.json").write_text(manifest_text(manifest), encoding="utf-8")
    logger.info("synthetic challenge: %d cases, teams %s, in %s", n, ", ".join(teams), out_dir)
    return SynthSummary(
        out_dir=out_dir,
        ground_truth_dir=gt_dir,
        submissions_dir=sub_dir,
        case_ids=tuple(c.patient_id for c in cases),
        teams=tuple(teams),
    )


def _presets(n: int, teams: Sequence[str]) -> list[TeamPreset]:
    """The presets named by ``teams``; refuses a case count below 1 and unknown or
    repeated team names."""
    if n < 1:
        raise ValueError(f"n_cases must be >= 1, not {n}")
    unknown = [t for t in teams if t not in PRESET_BY_NAME]
    if unknown or not teams or len(set(teams)) != len(teams):
        raise ValueError(
            f"teams must be distinct names among {', '.join(PRESET_BY_NAME)}; got {list(teams)}"
        )
    return [PRESET_BY_NAME[t] for t in teams]


def _write_task1(
    ids: list[tuple[str, str]],
    presets: list[TeamPreset],
    gt_dir: Path,
    sub_dir: Path,
    inputs_dir: Path,
    *,
    seed: int,
    small: bool,
    progress: Progress | None,
) -> list[Case]:
    """Plan every case; write its ground-truth label map, its CT and PET, and each
    team's prediction into the team's task1.zip. Returns the cases, in order."""
    centres = {c.name: c for c in CENTRES}
    cases: list[Case] = []
    zips = {
        p.name: zipfile.ZipFile(sub_dir / p.name / "task1.zip", "w", zipfile.ZIP_STORED)
        for p in presets
    }
    try:
        for index, (pid, centre) in enumerate(ids):
            case, vol = plan_case(pid, centres[centre], seed=seed, index=index, small=small)
            cases.append(case)
            write_case_images(case, vol, inputs_dir, seed=seed, index=index)
            _write_case(case, vol, presets, zips, gt_dir, seed=seed, index=index)
            del vol
            if progress is not None:
                progress(index + 1, len(ids))
    finally:
        for zf in zips.values():
            zf.close()
    return cases


def _write_case(
    case: Case,
    vol: NDArray[np.uint8],
    presets: list[TeamPreset],
    zips: dict[str, zipfile.ZipFile],
    gt_dir: Path,
    *,
    seed: int,
    index: int,
) -> None:
    """One case's ground truth file and zip member per team. ``vol`` (the truth) is
    reused for every team's prediction: each team clears what was pasted before it."""
    pid = case.patient_id
    shared = SharedDraws(case, vol, seed=seed, index=index)
    predictions = {p.name: predict_case(shared, p) for p in presets if not p.exact}
    del shared
    gt_bytes = nifti_gz_bytes(label_image(vol, case.grid), codec=GT_CODEC[0], level=GT_CODEC[1])
    (gt_dir / "Task 1" / pid).mkdir()
    (gt_dir / "Task 1" / pid / f"{pid}.nii.gz").write_bytes(gt_bytes)
    pasted = boxes(vol, [x for x in [case.gtvp, *case.nodes] if x is not None])
    for p in presets:
        if p.exact:
            data = gt_bytes
        else:
            for sl in pasted:
                vol[sl] = 0
            pasted = [b for b in (paste(vol, les) for les in predictions[p.name]) if b]
            data = nifti_gz_bytes(label_image(vol, case.grid), codec=p.codec, level=p.gzip_level)
        name = f"{p.zip_folder}/{pid}.nii.gz" if p.zip_folder else f"{pid}.nii.gz"
        zip_member(zips[p.name], name, data)


def _write_tables(
    cases: list[Case],
    ids: list[tuple[str, str]],
    presets: list[TeamPreset],
    tables: ClinicalTables,
    gt_dir: Path,
    sub_dir: Path,
    *,
    seed: int,
) -> None:
    """The Task 2/3 ground-truth CSVs and each team's task2.csv and task3.csv (rows
    shuffled for the teams whose preset says so)."""
    _write_csv(
        gt_dir / "Task 2" / TASK2_CSV,
        ("PatientID", "CenterID", "RFS", "Relapse"),
        [
            (c.patient_id, c.centre, "" if t is None else t, e)
            for c, t, e in zip(cases, tables.rfs, tables.events, strict=True)
        ],
    )
    _write_csv(
        gt_dir / "Task 3" / TASK3_CSV,
        ("PatientID", "CenterID", "HPV Status"),
        [
            (c.patient_id, c.centre, "" if h is None else h)
            for c, h in zip(cases, tables.hpv, strict=True)
        ],
    )
    team_keys = {p.name: i for i, p in enumerate(TEAM_PRESETS)}
    for p in presets:
        rows = list(range(len(ids)))
        if p.shuffle_rows:
            random_stream(seed, 40, team_keys[p.name]).shuffle(rows)
        _write_csv(
            sub_dir / p.name / "task2.csv",
            ("PatientID", "Prediction"),
            [(ids[i][0], tables.risks[p.name][i]) for i in rows],
        )
        _write_csv(
            sub_dir / p.name / "task3.csv",
            ("PatientID", "Prediction"),
            [(ids[i][0], tables.probs[p.name][i]) for i in rows],
        )
