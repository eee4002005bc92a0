"""The HECKTOR 2026 parts of a synthetic challenge: T and N stages of every patient,
the clinical table that holds them beside the RFS, and each team's Task 2 and Task 3
predictions in the 2026 layouts.

Written by :func:`evaluator.synth.generate_challenge` with ``edition=2026``; the Task 1
files are those of 2025 (a two-label map on the CT grid per patient)::

    ground_truth/Task 2/HECKTOR_2026_Task_2.csv     PatientID,CenterID,RFS,Relapse
    ground_truth/Task 3/HECKTOR_2026_clinical.csv   PatientID,CenterID,RFS,Relapse,T-stage,N-stage
    submissions/<team>/task2.zip                    <PatientID>/rfs.json (a risk score)
    submissions/<team>/task3.zip or task3.csv       <PatientID>/t-stage.json, n-stage.json,
                                                    or PatientID,T-stage,N-stage

Stages follow the lesions: T from the GTVp volume (T1 < 8 ml, T2 < 20 ml, T3 < 45 ml,
else T4), N from the nodes (none N0, one N1, two or three N2, more N3), each moved one
stage with probability 0.2 so that stage and volume are related, not equal. Some truth
cells are written as the clinical tables write them (``N2b``, ``T4a``, lower case);
one patient in ten (at most two) has an unknown T stage. The teams share their random
draws: a worse team gets wrong every stage a better team gets wrong, and more; the
draws are repeated until the staging balanced accuracy falls strictly from team to team.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from evaluator.synth.clinical import ClinicalTables
from evaluator.synth.cohort import random_stream
from evaluator.synth.images import ZIP_DATE_TIME
from evaluator.synth.team_presets import TEAM_PRESETS, TeamPreset
from evaluator.synth.truth import Case

__all__ = [
    "CLINICAL_2026_CSV",
    "TASK2_2026_CSV",
    "StageTables",
    "stage_tables",
    "write_tables_2026",
]

TASK2_2026_CSV = "HECKTOR_2026_Task_2.csv"
CLINICAL_2026_CSV = "HECKTOR_2026_clinical.csv"
T_STAGES = ("T1", "T2", "T3", "T4")
N_STAGES = ("N0", "N1", "N2", "N3")
# the chance that a team gets one stage wrong (per axis, per patient); perfect: 0
STAGE_ERROR = {"perfect": 0.0, "good": 0.15, "mediocre": 0.35, "poor": 0.6}
_MAX_REDRAWS = 200
# how some truth cells are written (the reader folds them onto the stages)
_SPELLINGS = {
    "N2": ("N2", "N2a", "N2b", "N2c", "n2"),
    "T4": ("T4", "T4a", "T4b"),
    "T2": ("T2", "t2"),
}


@dataclass(frozen=True)
class StageTables:
    """Per case, in cohort order: the true stages (T None = unknown), how the truth
    file writes them, and per team its predicted stages."""

    t_true: list[str | None]
    n_true: list[str]
    t_text: list[str]
    n_text: list[str]
    t_pred: dict[str, list[str]]
    n_pred: dict[str, list[str]]


def _t_of(case: Case) -> int:
    ml = 0.0 if case.gtvp is None else case.gtvp.voxels * case.grid.voxel_mm3 / 1000.0
    return sum(ml >= edge for edge in (8.0, 20.0, 45.0))


def _n_of(case: Case) -> int:
    k = len(case.nodes)
    return 0 if k == 0 else 1 if k == 1 else 2 if k <= 3 else 3


def _bacc(truth: Sequence[str | None], pred: Sequence[str]) -> float:
    pairs = [(y, p) for y, p in zip(truth, pred, strict=True) if y is not None]
    recalls = []
    for stage in sorted({y for y, _ in pairs}):
        hits = [p == stage for y, p in pairs if y == stage]
        recalls.append(sum(hits) / len(hits))
    return sum(recalls) / len(recalls)


def _wrong(stage: int, u: float, n_stages: int) -> int:
    """A neighbouring stage: down when ``u`` < 1/2 (or at the top), else up."""
    down = (u < 0.5 and stage > 0) or stage == n_stages - 1
    return stage - 1 if down else stage + 1


def _predictions(
    rng: np.random.Generator,
    truth: NDArray[np.int64],
    names: tuple[str, ...],
    presets: list[TeamPreset],
) -> dict[str, list[str]]:
    u_err = rng.random(truth.size)
    u_dir = rng.random(truth.size)
    out = {}
    for p in presets:
        err = u_err < STAGE_ERROR.get(p.name, 0.5)
        stages = [
            _wrong(int(s), float(d), len(names)) if e else int(s)
            for s, e, d in zip(truth, err, u_dir, strict=True)
        ]
        out[p.name] = [names[s] for s in stages]
    return out


def _strictly_falling(values: list[float]) -> bool:
    return all(a > b for a, b in itertools.pairwise(values))


def stage_tables(cases: list[Case], *, seed: int) -> StageTables:
    """The true stages of every case and every team's predicted ones."""
    rng = random_stream(seed, 50)
    n = len(cases)
    t = np.array([_t_of(c) for c in cases], dtype=np.int64)
    nn = np.array([_n_of(c) for c in cases], dtype=np.int64)
    for arr, top in ((t, 3), (nn, 3)):
        move = rng.random(n) < 0.2
        arr[:] = np.clip(arr + np.where(rng.random(n) < 0.5, -1, 1) * move, 0, top)
    unknown = set() if n < 10 else set(rng.choice(n, size=min(2, n // 10), replace=False).tolist())
    t_true: list[str | None] = [None if i in unknown else T_STAGES[int(s)] for i, s in enumerate(t)]
    n_true = [N_STAGES[int(s)] for s in nn]
    spell = random_stream(seed, 51)

    def text(stage: str | None) -> str:
        if stage is None:
            return ""
        options = _SPELLINGS.get(stage, (stage,))
        return options[int(spell.integers(len(options)))]

    t_text = [text(s) for s in t_true]
    n_text = [text(s) for s in n_true]
    t_pred: dict[str, list[str]] = {}
    n_pred: dict[str, list[str]] = {}
    for _attempt in range(_MAX_REDRAWS):
        t_pred = _predictions(rng, t, T_STAGES, list(TEAM_PRESETS))
        n_pred = _predictions(rng, nn, N_STAGES, list(TEAM_PRESETS))
        scores = [
            (_bacc(t_true, t_pred[p.name]) + _bacc(n_true, n_pred[p.name])) / 2.0
            for p in TEAM_PRESETS
        ]
        if _strictly_falling(scores):
            break
    return StageTables(t_true, n_true, t_text, n_text, t_pred, n_pred)


def _csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _zip_json(path: Path, files: list[tuple[str, object]]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, value in files:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, json.dumps(value) + "\n")


def write_tables_2026(
    cases: list[Case],
    presets: list[TeamPreset],
    tables: ClinicalTables,
    stages: StageTables,
    gt_dir: Path,
    sub_dir: Path,
) -> None:
    """The 2026 Task 2/3 ground truth and each team's Task 2/3 submission. Teams whose
    preset shuffles rows write Task 3 as a CSV table, the others as case folders."""
    rfs = ["" if t is None else t for t in tables.rfs]
    (gt_dir / "Task 2" / TASK2_2026_CSV).write_text(
        _csv(
            ("PatientID", "CenterID", "RFS", "Relapse"),
            [
                (c.patient_id, c.centre, r, e)
                for c, r, e in zip(cases, rfs, tables.events, strict=True)
            ],
        ),
        encoding="utf-8",
    )
    (gt_dir / "Task 3" / CLINICAL_2026_CSV).write_text(
        _csv(
            ("PatientID", "CenterID", "RFS", "Relapse", "T-stage", "N-stage"),
            [
                (c.patient_id, c.centre, r, e, ts, ns)
                for c, r, e, ts, ns in zip(
                    cases, rfs, tables.events, stages.t_text, stages.n_text, strict=True
                )
            ],
        ),
        encoding="utf-8",
    )
    for p in presets:
        ids = [c.patient_id for c in cases]
        risks = tables.risks[p.name]
        _zip_json(
            sub_dir / p.name / "task2.zip",
            [(f"{pid}/rfs.json", float(r)) for pid, r in zip(ids, risks, strict=True)],
        )
        t_pred, n_pred = stages.t_pred[p.name], stages.n_pred[p.name]
        if p.shuffle_rows:
            (sub_dir / p.name / "task3.csv").write_text(
                _csv(
                    ("PatientID", "T-stage", "N-stage"), list(zip(ids, t_pred, n_pred, strict=True))
                ),
                encoding="utf-8",
            )
            continue
        files: list[tuple[str, object]] = []
        for pid, ts, ns in zip(ids, t_pred, n_pred, strict=True):
            files += [(f"{pid}/t-stage.json", ts), (f"{pid}/n-stage.json", ns)]
        _zip_json(sub_dir / p.name / "task3.zip", files)
