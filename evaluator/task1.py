"""Task 1 scoring pipeline: validate a folder of predicted label maps, then map each
case to its sufficient statistics (in parallel) and reduce them to the metrics.

Validation reports every problem at once: names first (missing, unknown, duplicate,
unexpected files), then per case the header (readable, 3-D, integer, size), the
geometry against the ground truth, and the labels.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing import connection
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from evaluator.errors import (
    ExtraCaseError,
    FormatError,
    LimitError,
    MissingCaseError,
    Problem,
    ScoringProcessError,
    SubmissionError,
    SubmissionRejected,
)
from evaluator.io.archive import Member, MemberRef, Scan
from evaluator.io.ground_truth import GtCase, Task1GroundTruth, strip_nifti_ext
from evaluator.io.nifti import (
    ByteSource,
    NiftiHeader,
    check_geometry,
    crop,
    foreground_bbox,
    max_file_bytes,
    read_label_crop,
)
from evaluator.protocol import HECKTOR2025, Limits, Protocol
from evaluator.results import build_result
from evaluator.segmentation import aggregate_task1, gtvp_dsc, statistics_from_crops

Progress = Callable[[int, int], None]


@dataclass
class _Plan:
    """Which members of a submission are read, and the naming problems of the others
    (built once the names are final: a single top folder of a tar is only known at
    its end)."""

    case_ids: tuple[str, ...]
    ground_truth: Task1GroundTruth
    ignore_extra: bool
    resample: bool
    chosen: dict[str, Member] = field(default_factory=dict)
    notes: list[tuple[str, Member, Any]] = field(default_factory=list)

    def want(self, m: Member) -> bool:
        """Only files that can be a case of the phase are read, one per case, and only
        if their size is one a label map on that case's grid can have."""
        stem = strip_nifti_ext(m.name.rsplit("/", 1)[-1])
        if stem is None:
            if not self.ignore_extra:
                self.notes.append(("unexpected", m, None))
            return False
        pid = stem.strip()
        if pid in self.chosen:
            self.notes.append(("second", m, self.chosen[pid]))
            return False
        if pid not in self.ground_truth.cases:
            if not self.ignore_extra:
                self.notes.append(("extra", m, pid))
            return False
        shape = self.ground_truth.cases[pid].shape
        if not self.resample and m.size > max_file_bytes(shape):
            self.notes.append(("size", m, shape))
            return False
        self.chosen[pid] = m
        return True

    def problems(self) -> list[SubmissionError]:
        out: list[SubmissionError] = []
        for what, m, extra in self.notes:
            if what == "unexpected":
                out.append(
                    FormatError(
                        m.name,
                        "unexpected file: a Task 1 submission holds only <PatientID>.nii.gz "
                        "label maps (one per case); remove this file",
                    )
                )
            elif what == "second":
                pid = strip_nifti_ext(m.name.rsplit("/", 1)[-1]) or m.name
                out.append(
                    FormatError(
                        m.name,
                        f"a second prediction for case {pid.strip()} (the first is "
                        f"{extra.name}); keep exactly one file per case",
                    )
                )
            elif what == "extra":
                example = self.case_ids[0] if self.case_ids else "CHUM-001"
                out.append(
                    ExtraCaseError(
                        m.name,
                        f"case {extra!r} is not part of this phase; remove it (or check the "
                        f"name: files are named <PatientID>.nii.gz, e.g. {example}.nii.gz)",
                    )
                )
            else:
                sx, sy, sz = extra
                out.append(
                    LimitError(
                        m.name,
                        f"the file is {m.size:,} bytes uncompressed, more than a label map on "
                        f"this case's CT grid ({sx}x{sy}x{sz}) can take "
                        f"({max_file_bytes(extra):,} bytes with a header, voxels of up to 8 "
                        "bytes and the gzip framing); save the prediction as a .nii.gz label "
                        "map on the CT grid",
                    )
                )
        for pid in self.case_ids:
            if pid not in self.chosen:
                out.append(
                    MissingCaseError(
                        f"{pid}.nii.gz",
                        f"no prediction for case {pid}; every case of the phase needs a label "
                        f"map named {pid}.nii.gz (an empty mask is a valid prediction)",
                    )
                )
        return out


def resample_nearest(
    arr: npt.NDArray[np.uint8],
    src_affine: npt.NDArray[np.float64],
    dst_affine: npt.NDArray[np.float64],
    dst_shape: tuple[int, int, int],
) -> npt.NDArray[np.uint8]:
    """Nearest-neighbour resampling of a label map onto another voxel grid."""
    from scipy.ndimage import affine_transform

    m = np.linalg.inv(src_affine) @ dst_affine
    out = affine_transform(
        np.asarray(arr),
        m[:3, :3],
        offset=m[:3, 3],
        output_shape=dst_shape,
        order=0,
        mode="constant",
        cval=0,
    )
    return np.asfortranarray(out.astype(np.uint8))


@dataclass(frozen=True)
class CaseJob:
    patient_id: str
    gt: GtCase
    pred_path: Path | MemberRef  # a file, or a zip member read in place
    pred_name: str
    protocol: Protocol
    max_voxels: int
    dry_run: bool


def run_case(
    job: CaseJob, stream: ByteSource | None = None
) -> tuple[str, dict[str, Any] | None, list[Problem]]:
    """Validate one prediction and compute its statistics (runs in a worker process).

    The prediction is read from ``stream`` when given (a tar member, in order), else
    from ``job.pred_path``. Returns ``(patient_id, record or None, problems)``.
    """
    resample = job.protocol.geometry_mismatch == "resample_nearest"

    def geometry(h: NiftiHeader) -> SubmissionError | None:
        return check_geometry(h, job.gt.header, job.pred_name, atol=job.protocol.affine_atol)

    try:
        source = job.pred_path if stream is None else stream
        if not isinstance(source, MemberRef):
            pred = read_label_crop(
                source,
                max_voxels=job.max_voxels,
                name=job.pred_name,
                check_header=None if resample else geometry,
            )
        else:
            with source.open() as member:
                pred = read_label_crop(
                    member,
                    max_voxels=job.max_voxels,
                    name=job.pred_name,
                    check_header=None if resample else geometry,
                )
    except SubmissionError as exc:
        return job.patient_id, None, [Problem.of(exc)]
    pred_crop, pred_bbox = pred.crop, pred.bbox
    if resample and geometry(pred.header) is not None:
        arr = resample_nearest(pred.full(), pred.header.affine, job.gt.header.affine, job.gt.shape)
        pred_bbox = foreground_bbox(arr)
        pred_crop = None if pred_bbox is None else crop(arr, pred_bbox)
    if job.dry_run:
        return job.patient_id, None, []
    gt_crop = job.gt.load_crop(max_voxels=job.max_voxels)
    stats = statistics_from_crops(
        gt_crop,
        job.gt.bbox,
        pred_crop,
        pred_bbox,
        voxel_volume_mm3=job.gt.voxel_volume_mm3,
        connectivity=job.protocol.connectivity,
        iou_threshold=job.protocol.iou_fraction,
        iou_strict=job.protocol.iou_strict,
    )
    return job.patient_id, stats.as_dict(), []


def _pool_context() -> Any:
    """Plain fork when this process runs no other thread (instant start, nothing
    imported again); otherwise a fork server that has imported the scorer once,
    since forking a process that runs threads can deadlock."""
    if os.name != "posix":  # pragma: no cover
        return multiprocessing.get_context("spawn")
    if threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["evaluator.task1"])
    return ctx


CaseResult = tuple[str, dict[str, Any] | None, list[Problem]]


def _take(counter: Any) -> int:
    """The next case index from the counter shared by all scoring processes."""
    with counter.get_lock():
        i: int = counter.value
        counter.value = i + 1
    return i


def _case_worker(jobs: list[CaseJob], counter: Any, out: Any, out_lock: Any) -> None:
    """A scoring process: take the next case index until none is left; send
    ``("case", i, result)`` per case, ``("error", i, message)`` if a case raised
    something other than a submission problem, and ``("done", pid)`` at the end."""

    def send(msg: tuple[Any, ...]) -> None:
        with out_lock:  # one pipe, several writers: whole messages only
            out.send(msg)

    try:
        while (i := _take(counter)) < len(jobs):
            try:
                result = run_case(jobs[i])
            except Exception as exc:  # a bug or a MemoryError: reported, never swallowed
                send(("error", i, f"{type(exc).__name__}: {exc}"))
                return
            send(("case", i, result))
    finally:
        send(("done", os.getpid()))


def _map(jobs: list[CaseJob], workers: int) -> Iterator[CaseResult]:
    """Run the jobs, largest volume first, in this process and ``workers - 1`` others.

    Every process takes the next case from a shared counter, so the load balances
    itself and no process waits for work. The calling process scores cases too (it
    is warm, and would otherwise only wait) and forwards the others' results between
    its own cases; there is no executor thread to compete with it for the GIL.
    Results come back in completion order.
    """
    order = sorted(jobs, key=lambda j: -int(np.prod(j.gt.shape, dtype=np.int64)))
    if workers <= 1 or len(order) <= 1:
        for job in order:
            yield run_case(job)
        return
    ctx = _pool_context()
    counter = ctx.Value("q", 0)
    reader, writer = ctx.Pipe(duplex=False)
    write_lock = ctx.Lock()
    procs = [
        ctx.Process(target=_case_worker, args=(order, counter, writer, write_lock), daemon=True)
        for _ in range(min(workers, len(order)) - 1)
    ]
    for p in procs:
        p.start()
    writer.close()  # the children hold their own ends
    received: set[int] = set()
    running = {p.pid: p for p in procs}  # children that have not said "done"

    def died(p: Any) -> ScoringProcessError:
        p.join(1.0)  # its pipe end can close before it is reaped: wait for the exit code
        lost = [j.pred_name for i, j in enumerate(order) if i not in received]
        more = " ..." if len(lost) > 5 else ""
        return ScoringProcessError(
            f"a scoring process died (exit code {p.exitcode}) before reporting; "
            f"no result for {', '.join(lost[:5])}{more}"
        )

    def drain(block: bool) -> Iterator[CaseResult]:
        while running:
            if not reader.poll():
                if not block:
                    return
                ready = connection.wait([reader, *(p.sentinel for p in running.values())])
                if reader not in ready:  # a child ended without saying "done"
                    raise died(next(p for p in running.values() if p.sentinel in ready))
            try:
                msg = reader.recv()
            except EOFError:  # every writer is gone
                raise died(next(iter(running.values()))) from None
            if msg[0] == "done":
                running.pop(msg[1], None)
            elif msg[0] == "error":
                raise ScoringProcessError(
                    f"scoring case {order[msg[1]].pred_name} failed: {msg[2]}"
                )
            else:
                received.add(msg[1])
                yield msg[2]

    try:
        while (i := _take(counter)) < len(order):
            result = run_case(order[i])
            received.add(i)
            yield result
            yield from drain(block=False)
        yield from drain(block=True)
    finally:
        reader.close()
        for p in procs:
            if p.pid in running and p.is_alive():  # stopped early, by an error somewhere
                p.terminate()
        for p in procs:
            # a child that said "done" exits on its own (tearing down its memory takes
            # milliseconds): reaped now if it is gone, else by multiprocessing later
            p.join(timeout=None if p.pid in running else 0)


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
) -> dict[str, Any]:
    limits = limits or Limits()
    case_ids = ground_truth.case_ids
    plan = _Plan(
        case_ids,
        ground_truth,
        ignore_extra=protocol.ignore_extra_cases,
        resample=protocol.geometry_mismatch == "resample_nearest",
    )
    scan = Scan(root, limits=limits, want=plan.want)
    total = len(case_ids)
    records: dict[str, dict[str, Any]] = {}
    case_problems: list[tuple[Member, Problem]] = []

    def job(pid: str, m: Member, *, stream: bool) -> CaseJob:
        # headers and geometry are checked in each case's job before its voxels are inflated
        return CaseJob(
            pid,
            ground_truth.cases[pid],
            m.ref if m.ref is not None and not stream else root,
            m.name,
            protocol,
            limits.max_voxels,
            dry_run or bool(plan.notes),
        )

    done = 0

    def take(m: Member, result: CaseResult) -> None:
        nonlocal done
        pid, rec, probs = result
        case_problems.extend((m, p) for p in probs)
        if rec is not None:
            records[pid] = rec
        done += 1
        if progress:
            progress(done, total)

    if progress:
        progress(0, total)
    if scan.kind in ("tar", "tar.gz"):
        # read in order, each member as it comes: nothing is extracted
        for m, stream in scan:
            pid = (strip_nifti_ext(m.name.rsplit("/", 1)[-1]) or "").strip()
            take(m, run_case(job(pid, m, stream=True), stream))
        scan.finish()
    else:
        for _ in scan:  # the members to read (``plan.chosen``); raises the archive's problems
            pass
        jobs = [job(pid, m, stream=False) for pid, m in plan.chosen.items()]
        for result in _map(jobs, workers):
            take(plan.chosen[result[0]], result)
    problems = plan.problems()
    # a tar's single top folder is known at its end: name each problem by the final name
    problems.extend(type(p.to_error())(m.name, p.message) for m, p in case_problems)
    if progress and done < total:
        progress(total, total)
    if problems:
        order = {pid: i for i, pid in enumerate(case_ids)}
        problems.sort(key=lambda e: (order.get(_case_key(e.case), len(order)), e.case))
        raise SubmissionRejected(problems)
    if dry_run:
        return {"status": "valid", "task": 1, "n_cases": total}
    both_empty = protocol.both_empty_value
    cases = []
    for pid in case_ids:
        rec = records[pid]
        cases.append(
            {
                "patient_id": pid,
                "center": ground_truth.cases[pid].center,
                "gtvp_dsc": gtvp_dsc(rec, both_empty=both_empty),
                **rec,
            }
        )
    metrics = aggregate_task1(cases, protocol=protocol)
    return build_result(
        task=1,
        protocol=protocol,
        ground_truth_sha256=ground_truth.sha256,
        submission_sha256=submission_sha256,
        metrics=metrics,
        cases=cases,
    )


def _case_key(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return strip_nifti_ext(base) or base
