"""One Task 1 case: read and validate a predicted label map, then compute its
sufficient statistics against the ground truth's foreground crop. Runs in any scoring
process (:mod:`evaluator.pipeline.pool`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from evaluator.boxes import crop, foreground_bbox
from evaluator.errors import Problem, SubmissionError
from evaluator.io.inflate import ByteSource
from evaluator.io.members import MemberRef
from evaluator.io.nifti import LabelCrop, read_label_crop
from evaluator.io.nifti_header import ImageHeader, check_geometry
from evaluator.io.task1_truth import GtCase
from evaluator.metrics.segmentation import CaseStats, statistics_from_crops
from evaluator.protocol import Protocol

__all__ = ["CaseJob", "CaseResult", "resample_nearest", "run_case"]

CaseResult = tuple[str, CaseStats | None, list[Problem]]


def resample_nearest(
    arr: npt.NDArray[np.uint8],
    src_affine: npt.NDArray[np.float64],
    dst_affine: npt.NDArray[np.float64],
    dst_shape: tuple[int, int, int],
) -> npt.NDArray[np.uint8]:
    """Nearest-neighbour resampling of a label map onto another voxel grid, as ITK
    does it: each destination voxel takes the label of the source voxel whose centre is
    nearest, if it lies within half a voxel of the source grid (``grid-constant``),
    else 0. ``mode="constant"`` would also zero the points in the outer half voxel."""
    from scipy.ndimage import affine_transform

    m = np.linalg.inv(src_affine) @ dst_affine
    out = affine_transform(
        np.asarray(arr),
        m[:3, :3],
        offset=m[:3, 3],
        output_shape=dst_shape,
        order=0,
        mode="grid-constant",
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


def _off_grid(job: CaseJob, header: ImageHeader) -> bool:
    return (
        check_geometry(header, job.gt.header, job.pred_name, atol=job.protocol.affine_atol)
        is not None
    )


def _read_prediction(job: CaseJob, stream: ByteSource | None) -> LabelCrop:
    """The prediction's foreground crop; its header is checked against the ground
    truth's grid before any voxel is inflated (unless it is resampled onto it)."""

    def geometry(h: ImageHeader) -> SubmissionError | None:
        return check_geometry(h, job.gt.header, job.pred_name, atol=job.protocol.affine_atol)

    check = None if job.protocol.geometry_mismatch == "resample_nearest" else geometry
    source = job.pred_path if stream is None else stream
    if not isinstance(source, MemberRef):
        return read_label_crop(
            source, max_voxels=job.max_voxels, name=job.pred_name, check_header=check
        )
    with source.open() as member:
        return read_label_crop(
            member, max_voxels=job.max_voxels, name=job.pred_name, check_header=check
        )


def run_case(job: CaseJob, stream: ByteSource | None = None) -> CaseResult:
    """Validate one prediction and compute its statistics (runs in a worker process).

    The prediction is read from ``stream`` when given (a tar member, in order), else
    from ``job.pred_path``. Returns ``(patient_id, statistics or None, problems)``.
    """
    try:
        pred = _read_prediction(job, stream)
    except SubmissionError as exc:
        return job.patient_id, None, [Problem.of(exc)]
    pred_crop, pred_bbox = pred.crop, pred.bbox
    if job.protocol.geometry_mismatch == "resample_nearest" and _off_grid(job, pred.header):
        arr = resample_nearest(pred.full(), pred.header.affine, job.gt.header.affine, job.gt.shape)
        pred_bbox = foreground_bbox(arr)
        pred_crop = None if pred_bbox is None else crop(arr, pred_bbox)
    if job.dry_run:
        return job.patient_id, None, []
    stats = statistics_from_crops(
        job.gt.load_crop(max_voxels=job.max_voxels),
        job.gt.bbox,
        pred_crop,
        pred_bbox,
        voxel_volume_mm3=job.gt.voxel_volume_mm3,
        connectivity=job.protocol.connectivity,
        iou_threshold=job.protocol.iou_fraction,
        iou_strict=job.protocol.iou_strict,
    )
    return job.patient_id, stats, []
