"""Task 1 scoring pipeline: validate a folder or archive of predicted label maps, then
map each case to its sufficient statistics (in parallel) and reduce them to the metrics.

Validation reports every problem at once: names first (missing, unknown, duplicate,
unexpected files), then per case the header (readable, 3-D, integer, size), the
geometry against the ground truth, and the labels.

A case's file is ``<PatientID>.nii.gz``, ``.nii`` or ``.mha`` (one per case, formats
may be mixed); a ``.mhd`` with its data file beside it only in a folder (an archive
holds one file per case: the reader refuses a .mhd there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluator.edge_cases import edge_value
from evaluator.errors import (
    ExtraCaseError,
    FormatError,
    LimitError,
    MissingCaseError,
    Problem,
    SubmissionError,
    SubmissionRejected,
)
from evaluator.io.archive import Scan
from evaluator.io.members import Member
from evaluator.io.nifti import max_file_bytes
from evaluator.io.task1_truth import Task1GroundTruth, strip_label_ext
from evaluator.metrics.aggregate import aggregate
from evaluator.metrics.segmentation import CaseStats, gtvp_dsc
from evaluator.pipeline.case import CaseJob, CaseResult, run_case
from evaluator.pipeline.pool import map_cases
from evaluator.pipeline.result import ResultDocument, Task1Case, ValidDocument, build_result
from evaluator.protocol import HECKTOR2025, Limits, Protocol

__all__ = ["score_task1"]

Progress = Callable[[int, int], None]

# the data files a .mhd names, as MetaImage writers name them
_DATA_EXTS = (".raw", ".zraw", ".img")
# files that are no image and hold no voxels: what segmentation tools and people put
# beside the label maps (nnU-Net's dataset.json, plans.json and
# predict_from_raw_data_args.json, a README.txt); skipped and named in the result's notes
_DOCUMENT_EXTS = (
    ".json",
    ".txt",
    ".md",
    ".rst",
    ".log",
    ".csv",
    ".tsv",
    ".yaml",
    ".yml",
    ".toml",
    ".cfg",
    ".ini",
    ".pkl",
    ".pickle",
    ".py",
    ".ipynb",
    ".sh",
    ".html",
    ".pdf",
)
_LISTED_IGNORED = 20  # names listed in the result's note; the others counted


def _is_document(base: str) -> bool:
    """A file that holds no image: a known text or metadata type, or a name without
    an extension (README, LICENSE)."""
    low = base.lower()
    return "." not in low.lstrip(".") or low.endswith(_DOCUMENT_EXTS)


@dataclass
class _Plan:
    """Which members of a submission are read, and the naming problems of the others
    (built once the names are final: a single top folder of a tar is only known at
    its end)."""

    case_ids: tuple[str, ...]
    ground_truth: Task1GroundTruth
    ignore_extra: bool
    resample: bool
    folder: bool = False  # a folder of files, where a .mhd's data file may sit beside it
    chosen: dict[str, Member] = field(default_factory=dict)
    notes: list[tuple[str, Member, Any]] = field(default_factory=list)
    ignored: list[Member] = field(default_factory=list)  # documents, not read
    unknown: list[tuple[Member, str]] = field(default_factory=list)  # label maps of no case

    def want(self, m: Member) -> bool:
        """Only files that can be a case of the phase are read, one per case, and only
        if their size is one a label map on that case's grid can have."""
        base = m.name.rsplit("/", 1)[-1]
        stem = strip_label_ext(base)
        if stem is None:
            data_file = base.lower().endswith(_DATA_EXTS)
            if _is_document(base):
                self.ignored.append(m)
            elif not self.ignore_extra and not (data_file and self.folder):
                self.notes.append(("data" if data_file else "unexpected", m, None))
            return False
        pid = stem.strip()
        if pid in self.chosen:
            self.notes.append(("second", m, self.chosen[pid]))
            return False
        if pid not in self.ground_truth.cases:
            self.unknown.append((m, pid))
            if not self.ignore_extra:
                self.notes.append(("extra", m, pid))
            return False
        shape = self.ground_truth.cases[pid].shape
        if not self.resample and m.size > max_file_bytes(shape):
            self.notes.append(("size", m, shape))
            return False
        self.chosen[pid] = m
        return True

    def _naming_problem(self, what: str, m: Member, extra: Any) -> SubmissionError:
        if what == "unexpected":
            return FormatError(
                m.name,
                "unexpected file: a Task 1 submission holds only <PatientID>.nii.gz "
                "(or <PatientID>.mha) label maps, one per case; remove this file",
            )
        if what == "data":
            return FormatError(
                m.name,
                "a separate voxel data file (of a .mhd header): an archive holds one file "
                "per case; save each label map as one .mha file (sitk.WriteImage(img, "
                "'CHUM-001.mha', useCompression=True)) and remove this file",
            )
        if what == "second":
            pid = strip_label_ext(m.name.rsplit("/", 1)[-1]) or m.name
            return FormatError(
                m.name,
                f"a second prediction for case {pid.strip()} (the first is "
                f"{extra.name}); keep exactly one file per case",
            )
        if what == "extra":
            example = self.case_ids[0] if self.case_ids else "CHUM-001"
            return ExtraCaseError(
                m.name,
                f"case {extra!r} is not part of this phase; remove it (or check the "
                f"name: files are named <PatientID>.nii.gz or <PatientID>.mha, e.g. "
                f"{example}.nii.gz)",
            )
        sx, sy, sz = extra
        return LimitError(
            m.name,
            f"the file is {m.size:,} bytes uncompressed, more than a label map on "
            f"this case's CT grid ({sx}x{sy}x{sz}) can take "
            f"({max_file_bytes(extra):,} bytes with a header, voxels of up to 8 "
            "bytes and the gzip framing); save the prediction as a .nii.gz or .mha "
            "label map on the CT grid",
        )

    def renamed(self) -> tuple[list[SubmissionError], set[str], set[int]]:
        """One problem per naming mistake that several files share (each file named
        after a case of the phase with the same text added before or after the id),
        the cases those files are for, and the ids of the members it covers."""
        groups: dict[tuple[str, str], list[tuple[Member, str]]] = {}
        # at most a few unknown files per case are matched against every case id
        for m, stem in self.unknown[: 4 * len(self.case_ids)]:
            match = _case_in(stem, self.ground_truth.cases)
            if match is not None and match[0] not in self.chosen:
                groups.setdefault((match[1], match[2]), []).append((m, match[0]))
        out: list[SubmissionError] = []
        cases: set[str] = set()
        members: set[int] = set()
        n_files = len(self.chosen) + len(self.unknown)
        for (prefix, suffix), found in groups.items():
            if len(found) < 2:
                continue
            out.append(_renamed_problem(prefix, suffix, found, n_files))
            cases.update(pid for _, pid in found)
            members.update(id(m) for m, _ in found)
        return out, cases, members

    def ignored_note(self) -> str | None:
        """The result's note on the files skipped as documents, or None."""
        if not self.ignored:
            return None
        names = sorted(m.name for m in self.ignored)
        shown = ", ".join(names[:_LISTED_IGNORED])
        more = f" and {len(names) - _LISTED_IGNORED} more" if len(names) > _LISTED_IGNORED else ""
        return f"{shown}{more}: not label maps, not read"

    def problems(self) -> list[SubmissionError]:
        out, renamed_cases, renamed_members = self.renamed()
        out.extend(
            self._naming_problem(what, m, extra)
            for what, m, extra in self.notes
            if not (what == "extra" and id(m) in renamed_members)
        )
        for pid in self.case_ids:
            if pid not in self.chosen and pid not in renamed_cases:
                out.append(
                    MissingCaseError(
                        f"{pid}.nii.gz",
                        f"no prediction for case {pid}; every case of the phase needs a label "
                        f"map named {pid}.nii.gz or {pid}.mha (an empty mask is a valid prediction)",
                    )
                )
        return out


def _case_in(stem: str, cases: Mapping[str, object]) -> tuple[str, str, str] | None:
    """The case whose id ``stem`` holds with text around it (``CHUM-001_pred``:
    ``("CHUM-001", "", "_pred")``), the longest such id; None when no id is in it."""
    best: tuple[str, str, str] | None = None
    for pid in cases:
        at = stem.find(pid)
        if at < 0 or len(pid) == len(stem) or (best is not None and len(best[0]) >= len(pid)):
            continue
        best = (pid, stem[:at], stem[at + len(pid) :])
    return best


def _renamed_problem(
    prefix: str, suffix: str, found: list[tuple[Member, str]], n_files: int
) -> SubmissionError:
    m, pid = found[0]
    base = m.name.rsplit("/", 1)[-1]
    ext = base[len(prefix) + len(pid) + len(suffix) :]
    n = len(found)
    who = f"all {n} files" if n == n_files else f"{n} files"
    parts = [f"begin with `{prefix}`"] if prefix else []
    parts += [f"end in `{suffix}`"] if suffix else []
    return FormatError(
        "",
        f"{who} {' and '.join(parts)}: name them `<PatientID>{ext}` (e.g. {base} -> "
        f"{pid}{ext}); a prediction is named after its case only",
    )


@dataclass
class _Run:
    """One submission being read: its plan, the statistics and problems of the cases
    read so far, and the progress reported."""

    ground_truth: Task1GroundTruth
    root: Path
    protocol: Protocol
    limits: Limits
    dry_run: bool
    progress: Progress | None
    plan: _Plan
    stats: dict[str, CaseStats] = field(default_factory=dict)
    case_problems: list[tuple[Member, Problem]] = field(default_factory=list)
    done: int = 0

    @property
    def total(self) -> int:
        return len(self.ground_truth.case_ids)

    def job(self, pid: str, m: Member, *, stream: bool) -> CaseJob:
        # headers and geometry are checked in each case's job before its voxels are inflated
        return CaseJob(
            pid,
            self.ground_truth.cases[pid],
            m.ref if m.ref is not None and not stream else self.root,
            m.name,
            self.protocol,
            self.limits.max_voxels,
            self.dry_run or bool(self.plan.notes),
        )

    def take(self, m: Member, result: CaseResult) -> None:
        pid, stats, probs = result
        self.case_problems.extend((m, p) for p in probs)
        if stats is not None:
            self.stats[pid] = stats
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total)

    def read(self, scan: Scan, workers: int) -> None:
        if scan.kind in ("tar", "tar.gz"):
            # read in order, each member as it comes: nothing is extracted
            for m, stream in scan:
                pid = (strip_label_ext(m.name.rsplit("/", 1)[-1]) or "").strip()
                self.take(m, run_case(self.job(pid, m, stream=True), stream))
            scan.finish()
            return
        for _ in scan:  # the members to read (``plan.chosen``); raises the archive's problems
            pass
        chosen = self.plan.chosen
        jobs = [self.job(pid, m, stream=False) for pid, m in chosen.items()]
        for result in map_cases(jobs, workers):
            self.take(chosen[result[0]], result)

    def problems(self) -> list[SubmissionError]:
        """Every problem of the submission, in case order."""
        problems = self.plan.problems()
        # a tar's single top folder is known at its end: name each problem by the final name
        problems.extend(type(p.to_error())(m.name, p.message) for m, p in self.case_problems)
        order = {pid: i for i, pid in enumerate(self.ground_truth.case_ids)}
        # problems of no one file (a mistake several files share) first
        problems.sort(
            key=lambda e: (order.get(_case_key(e.case), len(order)) if e.case else -1, e.case)
        )
        return problems

    def cases(self) -> list[Task1Case]:
        both_empty = edge_value("gtvp_dsc", self.protocol)
        gt = self.ground_truth.cases
        return [
            _task1_case(pid, gt[pid].center, self.stats[pid], both_empty=both_empty)
            for pid in self.ground_truth.case_ids
        ]


def _task1_case(pid: str, center: str, s: CaseStats, *, both_empty: float | None) -> Task1Case:
    return {
        "patient_id": pid,
        "center": center,
        "gtvp_dsc": gtvp_dsc(s.as_dict(), both_empty=both_empty),
        "gtvp_intersection": s.gtvp_intersection,
        "gtvp_pred_voxels": s.gtvp_pred_voxels,
        "gtvp_gt_voxels": s.gtvp_gt_voxels,
        "gtvn_intersection": s.gtvn_intersection,
        "gtvn_pred_voxels": s.gtvn_pred_voxels,
        "gtvn_gt_voxels": s.gtvn_gt_voxels,
        "gtvn_tp": s.gtvn_tp,
        "gtvn_fp": s.gtvn_fp,
        "gtvn_fn": s.gtvn_fn,
        "gtvn_pred_lesions": s.gtvn_pred_lesions,
        "voxel_volume_mm3": s.voxel_volume_mm3,
    }


def score_task1(
    ground_truth: Task1GroundTruth,
    root: Path,
    *,
    protocol: Protocol = HECKTOR2025,
    limits: Limits | None = None,
    workers: int = 1,
    progress: Progress | None = None,
    dry_run: bool = False,
    submission_sha256: str = "",
) -> ResultDocument | ValidDocument:
    limits = limits or Limits()
    plan = _Plan(
        ground_truth.case_ids,
        ground_truth,
        ignore_extra=protocol.ignore_extra_cases,
        resample=protocol.geometry_mismatch == "resample_nearest",
        folder=Path(root).is_dir(),
    )
    scan = Scan(root, limits=limits, want=plan.want)
    run = _Run(ground_truth, root, protocol, limits, dry_run, progress, plan)
    if progress:
        progress(0, run.total)
    run.read(scan, workers)
    problems = run.problems()
    if progress and run.done < run.total:
        progress(run.total, run.total)
    if problems:
        raise SubmissionRejected(problems)
    ignored = plan.ignored_note()
    notes = {"ignored_files": ignored} if ignored else {}
    if dry_run:
        valid: ValidDocument = {"status": "valid", "task": 1, "n_cases": run.total}
        if notes:
            valid["notes"] = notes
        return valid
    cases = run.cases()
    return build_result(
        task=1,
        protocol=protocol,
        ground_truth_sha256=ground_truth.sha256,
        submission_sha256=submission_sha256,
        metrics=aggregate(1, cases, protocol),
        cases=cases,
        notes=notes,
    )


def _case_key(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return strip_label_ext(base) or base
