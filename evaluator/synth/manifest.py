"""The manifest of a synthetic challenge: what was generated, how, and the expected
team order."""

from __future__ import annotations

import json
from typing import Any

from evaluator.synth.cohort import Grid
from evaluator.synth.edition2026 import CLINICAL_2026_CSV, TASK2_2026_CSV, StageTables
from evaluator.synth.team_presets import TEAM_PRESETS, TeamPreset
from evaluator.synth.truth import Case

GENERATOR = "hecktor-eval synth"
GENERATOR_VERSION = 1

TASK2_CSV = "HECKTOR_2025_Task_2.csv"
TASK3_CSV = "HECKTOR_2025_Task_3.csv"
INPUTS_LAYOUT = "inputs/<PatientID>/<PatientID>__CT.nii.gz, <PatientID>__PT.nii.gz, ehr.json"


def manifest_text(manifest: dict[str, Any]) -> str:
    """Indented JSON with one line per case (valid JSON, readable, diff-friendly)."""
    head = {k: v for k, v in manifest.items() if k != "cases"}
    text = json.dumps(head, indent=1)[:-2]
    cases = ",\n".join("  " + json.dumps(c) for c in manifest["cases"])
    return f'{text},\n "cases": [\n{cases}\n ]\n}}\n'


def build_manifest(
    *,
    seed: int,
    small: bool,
    cases: list[Case],
    presets: list[TeamPreset],
    rfs: list[int | None],
    hpv: list[int | None],
    stages: StageTables | None = None,
) -> dict[str, Any]:
    """The manifest document (``manifest.json``); with ``stages``, of the HECKTOR 2026
    edition (its layout, the protocol to score it with, each case's stages)."""
    from evaluator import __version__

    ranked = [p.name for p in TEAM_PRESETS if p in presets]
    centres: dict[str, int] = {}
    for c in cases:
        centres[c.centre] = centres.get(c.centre, 0) + 1
    manifest = {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "evaluator_version": __version__,
        "seed": seed,
        "small": small,
        "n_cases": len(cases),
        "layout": {
            "task1": "ground_truth/Task 1/<PatientID>/<PatientID>.nii.gz",
            "task2": f"ground_truth/Task 2/{TASK2_CSV}",
            "task3": f"ground_truth/Task 3/{TASK3_CSV}",
            "submissions": "submissions/<team>/task1.zip, task2.csv, task3.csv",
            "inputs": INPUTS_LAYOUT,
        },
        "teams": [p.name for p in presets],
        "expected_order": {
            "note": "best first, on every ranking metric of each task",
            "task1": ranked,
            "task2": ranked,
            "task3": ranked,
        },
        "team_details": {p.name: _team_details(p) for p in presets},
        "centres": centres,
        "cases": [_case_entry(c, t, h) for c, t, h in zip(cases, rfs, hpv, strict=True)],
    }
    if stages is not None:
        _as_2026(manifest, stages)
    return manifest


def _as_2026(manifest: dict[str, Any], stages: StageTables) -> None:
    manifest["edition"] = 2026
    manifest["protocol"] = "hecktor2026"
    manifest["layout"] = {
        "task1": "ground_truth/Task 1/<PatientID>/<PatientID>.nii.gz",
        "task2": f"ground_truth/Task 2/{TASK2_2026_CSV}",
        "task3": f"ground_truth/Task 3/{CLINICAL_2026_CSV}",
        "submissions": "submissions/<team>/task1.zip, task2.zip (<PatientID>/rfs.json), "
        "task3.zip (<PatientID>/t-stage.json, n-stage.json) or task3.csv",
        "inputs": INPUTS_LAYOUT,
    }
    manifest["expected_order"]["note"] = (
        "best first, on the ranked metric of each task (seg_dsc, rfs_cindex, staging_bacc)"
    )
    for entry, t, n in zip(manifest["cases"], stages.t_true, stages.n_true, strict=True):
        del entry["hpv"]
        entry["t_stage"], entry["n_stage"] = t, n


def _team_details(p: TeamPreset) -> dict[str, Any]:
    return {
        "gzip": f"{p.codec} level {p.gzip_level}" if not p.exact else "identical to the truth",
        "zip_top_folder": p.zip_folder,
        "rows_shuffled": p.shuffle_rows,
        "risk_scale": p.risk_style,
    }


def _ml(voxels: int, grid: Grid) -> float:
    return round(voxels * grid.voxel_mm3 / 1000.0, 4)


def _case_entry(c: Case, rfs: int | None, hpv: int | None) -> dict[str, Any]:
    return {
        "patient_id": c.patient_id,
        "center": c.centre,
        "shape": list(c.grid.shape),
        "spacing_mm": [round(s, 7) for s in c.grid.spacing],
        "origin_mm": list(c.grid.origin),
        "voxel_volume_mm3": round(c.grid.voxel_mm3, 6),
        "gtvp_ml": None if c.gtvp is None else _ml(c.gtvp.voxels, c.grid),
        "gtvn_ml": [_ml(x.voxels, c.grid) for x in c.nodes],
        "gtvn_components": c.gtvn_components,
        "gtvn_touching": c.touching,
        "rfs_days": rfs,
        "relapse": c.event,
        "hpv": hpv,
    }
