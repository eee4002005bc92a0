"""Which patient each algorithm job processed.

grand-challenge names input files by UUID, but keeps the name a file was uploaded under
(``image.name`` of the CT input). Two rules, in this order:

- ``manifest.json`` in the ground-truth folder, a JSON object mapping the CT image's pk
  or its upload name to the PatientID: ``{"3f6c...": "CHUM-001", "MDA-010_CT.mha":
  "MDA-010"}``; used whenever the file exists;
- otherwise a regular expression on the CT image's name, whose group ``patient`` (or
  first group) is the PatientID: by default ``CHUM-001`` from ``CHUM-001__CT.nii.gz``,
  ``CHUM-001_CT.mha``, ``CHUM-001_0000.nii.gz`` or ``CHUM-001.nii.gz``.

Then every job must name a case of the ground truth, no case may have two jobs, and
every case needs a job; each problem is reported with the job's pk.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from evaluator.gc.errors import GCInputError
from evaluator.gc.predictions import Job
from evaluator.gc.sockets import ProtocolSockets

__all__ = [
    "DEFAULT_CASE_PATTERN",
    "MANIFEST_NAME",
    "CaseMap",
    "compile_pattern",
    "map_jobs",
    "read_manifest",
]

DEFAULT_CASE_PATTERN = (
    r"^(?P<patient>.+?)(?:_{1,2}(?:CT|ct|0000))?\.(?:nii\.gz|nii|mha|mhd|nrrd|tiff?)$"
)
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True, kw_only=True)
class CaseMap:
    """PatientID -> job, for the jobs that passed every check."""

    jobs: Mapping[str, Job]
    rule: str  # how the mapping was made, for messages and metrics.json

    def pk_of(self, patient_id: str) -> str:
        return self.jobs[patient_id].pk


def compile_pattern(text: str) -> re.Pattern[str]:
    """The case pattern, checked: it compiles and has a ``patient`` or a first group.
    Raises :class:`GCInputError`."""
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise GCInputError([f"case pattern {text!r} is not a regular expression ({exc})"]) from None
    if "patient" not in pattern.groupindex and pattern.groups < 1:
        raise GCInputError(
            [f"case pattern {text!r} has no group; capture the PatientID as (?P<patient>...)"]
        )
    return pattern


def read_manifest(path: Path) -> dict[str, str] | None:
    """The manifest's mapping, None when the file does not exist. Raises
    :class:`GCInputError` when it is not a JSON object of strings."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise GCInputError([f"{path}: cannot be read as JSON ({exc})"]) from None
    bad = (
        [k for k, v in data.items() if not isinstance(v, str) or not v.strip()]
        if isinstance(data, dict)
        else None
    )
    if bad is None or bad:
        raise GCInputError(
            [
                f"{path}: expected one JSON object mapping each CT image pk or upload name to "
                f'its PatientID, e.g. {{"3f6c...": "CHUM-001"}}'
                + (f"; not a PatientID string for {', '.join(bad[:3])}" if bad else "")
            ]
        )
    return {str(k): v.strip() for k, v in data.items()}


def _patient_from_name(name: str, pattern: re.Pattern[str]) -> str | None:
    m = pattern.search(name)
    if m is None:
        return None
    group = m.group("patient") if "patient" in pattern.groupindex else m.group(1)
    return group.strip() if group and group.strip() else None


def _patient_of(
    job: Job,
    sockets: ProtocolSockets,
    manifest: Mapping[str, str] | None,
    pattern: re.Pattern[str],
) -> str:
    """The job's PatientID, or raises ``ValueError`` with the problem."""
    ct = job.input_named(sockets.ct_slug, sockets.ct_relative_path)
    if ct is None:
        found = ", ".join(v.slug or v.relative_path for v in job.inputs) or "none"
        raise ValueError(
            f"job {job.pk}: no CT input (socket {sockets.ct_slug!r} at "
            f"{sockets.ct_relative_path}) to name its patient; its inputs: {found}"
        )
    if manifest is not None:
        for key in (ct.image_pk, ct.image_name):
            if key is not None and key in manifest:
                return manifest[key]
        raise ValueError(
            f"job {job.pk}: its CT image (pk {ct.image_pk}, name {ct.image_name!r}) is not "
            f"in {MANIFEST_NAME}; add it, mapped to its PatientID"
        )
    if ct.image_name is None:
        raise ValueError(f"job {job.pk}: its CT input has no image name to take the patient from")
    pid = _patient_from_name(ct.image_name, pattern)
    if pid is None:
        raise ValueError(
            f"job {job.pk}: the CT image name {ct.image_name!r} does not match the case "
            f"pattern {pattern.pattern!r}; set --case-pattern (HECKTOR_CASE_PATTERN) or "
            f"put a {MANIFEST_NAME} in the ground truth"
        )
    return pid


def _unknown(pid: str, job: Job, cases: Collection[str], rule: str) -> str:
    lowered = {c.lower(): c for c in cases}
    hint = (
        f" (did you mean {lowered[pid.lower()]!r}? ids match exactly)"
        if pid.lower() in lowered
        else ""
    )
    example = ", ".join(sorted(cases)[:3])
    return (
        f"job {job.pk}: maps to PatientID {pid!r} ({rule}), which is not a case of the ground "
        f"truth ({len(cases)} cases, e.g. {example}){hint}"
    )


def map_jobs(
    jobs: Sequence[Job],
    *,
    sockets: ProtocolSockets,
    known: Collection[str],
    required: Collection[str],
    manifest: Mapping[str, str] | None,
    pattern: re.Pattern[str],
) -> CaseMap:
    """PatientID -> job. ``known`` are the cases a job may name, ``required`` those that
    need one. Raises :class:`GCInputError` listing every problem."""
    if manifest is not None:
        rule = MANIFEST_NAME
    elif pattern.pattern == DEFAULT_CASE_PATTERN:
        rule = "the CT image name, default case pattern"
    else:
        rule = f"the CT image name, case pattern {pattern.pattern!r}"
    problems: list[str] = []
    by_case: dict[str, list[Job]] = {}
    for job in jobs:
        try:
            pid = _patient_of(job, sockets, manifest, pattern)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if pid not in known:
            problems.append(_unknown(pid, job, known, rule))
            continue
        by_case.setdefault(pid, []).append(job)
    for pid, js in by_case.items():
        if len(js) > 1:
            problems.append(
                f"case {pid}: {len(js)} jobs map to it ({', '.join(j.pk for j in js)}); "
                "each case needs exactly one job"
            )
    for pid in sorted(set(required) - set(by_case)):
        problems.append(f"case {pid}: no job maps to it ({rule}); every case needs one job")
    if problems:
        raise GCInputError(problems)
    return CaseMap(jobs={pid: js[0] for pid, js in by_case.items()}, rule=rule)
