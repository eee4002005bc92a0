"""Task 1: per-case sufficient statistics and their aggregation (SPEC section 3).

Per case, one record of voxel counts (:class:`CaseStats`). Every Task 1 metric is a
reduction of these records, so cases can be scored in parallel, stored, re-ranked
and bootstrapped without reading an image again.

The per-case work runs on the bounding box of the union of both foregrounds: one
``np.bincount`` of ``3*gt + pred`` gives all confusion counts; ``cc3d`` labels the
GTVn lesions; one ``np.unique`` over the voxels where both sides are lesions gives
every component pair's overlap; the groups of SPEC step 2 are the connected
components of the bipartite overlap graph (``scipy.sparse.csgraph``); the IoU test
is done in integers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from typing import Any, Literal

import cc3d
import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from evaluator.errors import ScoringError
from evaluator.protocol import HECKTOR2025, Protocol

GTVP, GTVN = 1, 2
Bbox = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class CaseStats:
    """Sufficient statistics of one case (voxel counts, and the voxel volume)."""

    gtvp_intersection: int
    gtvp_pred_voxels: int
    gtvp_gt_voxels: int
    gtvn_intersection: int
    gtvn_pred_voxels: int
    gtvn_gt_voxels: int
    gtvn_tp: int
    gtvn_fp: int
    gtvn_fn: int
    voxel_volume_mm3: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


STAT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CaseStats))


@dataclass(frozen=True)
class Detection:
    tp: int
    fp: int
    fn: int


def _bbox_union(a: Bbox | None, b: Bbox | None) -> Bbox | None:
    if a is None:
        return b
    if b is None:
        return a
    return (
        (min(a[0][0], b[0][0]), max(a[0][1], b[0][1])),
        (min(a[1][0], b[1][0]), max(a[1][1], b[1][1])),
        (min(a[2][0], b[2][0]), max(a[2][1], b[2][1])),
    )


def _nonzero_bbox(arr: npt.NDArray[Any]) -> Bbox | None:
    from evaluator.io.nifti import foreground_bbox  # pure numpy helper

    return foreground_bbox(arr)


def _crop(arr: npt.NDArray[np.uint8], box: Bbox) -> npt.NDArray[np.uint8]:
    (x0, x1), (y0, y1), (z0, z1) = box
    return arr[x0:x1, y0:y1, z0:z1]


_CHUNK = 1 << 22  # elements per np.bincount call


def _bincount(a: npt.NDArray[Any], minlength: int) -> npt.NDArray[np.int64]:
    """``np.bincount`` of every element of ``a`` (any memory order, no copy made).

    bincount first converts its input to intp: over a whole 512x512x300 crop that is a
    630 MB temporary, so it runs on 4 Mi-element chunks (32 MB), as fast as in one go.
    """
    flat = a.ravel("K")
    out = np.zeros(minlength, dtype=np.int64)
    for i in range(0, flat.size, _CHUNK):
        c = np.bincount(flat[i : i + _CHUNK], minlength=minlength)
        if c.size > out.size:
            out = np.concatenate([out, np.zeros(c.size - out.size, dtype=np.int64)])
        out[: c.size] += c
    return out


def lesion_detection(
    gt_lesions: npt.NDArray[np.bool_],
    pred_lesions: npt.NDArray[np.bool_],
    *,
    connectivity: Literal[6, 18, 26] = 26,
    iou_threshold: Fraction = Fraction(3, 10),
    iou_strict: bool = False,
) -> Detection:
    """Group-fusion lesion matching (SPEC section 3, Fig. 5 of the data paper).

    Lesions are the connected components of each mask. A predicted and a true lesion
    are joined when they share a voxel; each connected component of that bipartite
    graph is a group. A group with both kinds is one TP when the IoU of the union of
    its predicted lesions with the union of its true lesions reaches the threshold;
    otherwise all its predicted lesions are FPs and all its true lesions FNs.
    Unmatched predicted lesions are FPs and unmatched true lesions FNs.
    """
    pl, n_pred = cc3d.connected_components(
        pred_lesions.view(np.uint8), connectivity=connectivity, return_N=True
    )
    gl, n_gt = cc3d.connected_components(
        gt_lesions.view(np.uint8), connectivity=connectivity, return_N=True
    )
    n_pred, n_gt = int(n_pred), int(n_gt)
    if n_pred == 0 or n_gt == 0:
        return Detection(0, n_pred, n_gt)
    # overlap of every (pred, gt) pair from one pass over the shared voxels
    both = (pl != 0) & (gl != 0)
    code = pl[both].astype(np.int64) * (n_gt + 1) + gl[both].astype(np.int64)
    del both
    pairs, inter = np.unique(code, return_counts=True)
    # only lesions that overlap one of the other side can be matched: any other one is
    # an FP or an FN outright, and the groups are built over the overlapping ones only
    # (a prediction of millions of specks costs arrays of its overlaps, not of its specks)
    p_ids, p_idx = np.unique(pairs // (n_gt + 1), return_inverse=True)
    g_ids, g_idx = np.unique(pairs % (n_gt + 1), return_inverse=True)
    n_p, n_g = int(p_ids.size), int(g_ids.size)
    pred_size = _bincount(pl, n_pred + 1)[p_ids]
    gt_size = _bincount(gl, n_gt + 1)[g_ids]
    # groups: connected components of the bipartite graph (preds 0..n_p-1, gts after)
    n_nodes = n_p + n_g
    graph = coo_matrix(
        (np.ones(pairs.size, dtype=np.int8), (p_idx, g_idx + n_p)), shape=(n_nodes, n_nodes)
    ).tocsr()
    n_groups, group = connected_components(graph, directed=False)
    g_of_pred, g_of_gt = group[:n_p], group[n_p:]

    def gsum(index: npt.NDArray[np.int64], values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        out = np.zeros(n_groups, dtype=np.int64)
        np.add.at(out, index, values)
        return out

    pred_vox = gsum(g_of_pred, pred_size)
    gt_vox = gsum(g_of_gt, gt_size)
    # lesions of one side are disjoint, so |union(P) ∩ union(G)| is the sum of pair overlaps
    inter_vox = gsum(g_of_pred[p_idx], inter.astype(np.int64))
    n_pred_g = np.bincount(g_of_pred, minlength=n_groups)
    n_gt_g = np.bincount(g_of_gt, minlength=n_groups)
    union_vox = pred_vox + gt_vox - inter_vox
    num, den = iou_threshold.numerator, iou_threshold.denominator
    lhs, rhs = inter_vox * den, union_vox * num
    tp_group = (lhs > rhs) if iou_strict else (lhs >= rhs)  # every group has both kinds
    tp = int(tp_group.sum())
    fp = int(n_pred_g[~tp_group].sum()) + (n_pred - n_p)
    fn = int(n_gt_g[~tp_group].sum()) + (n_gt - n_g)
    return Detection(tp, fp, fn)


def case_statistics(
    gt: npt.NDArray[np.uint8],
    pred: npt.NDArray[np.uint8],
    *,
    voxel_volume_mm3: float,
    connectivity: Literal[6, 18, 26] = 26,
    iou_threshold: Fraction = Fraction(3, 10),
    iou_strict: bool = False,
) -> CaseStats:
    """Sufficient statistics of one case from two label maps (labels {0, 1, 2}) of
    the same shape."""
    if gt.shape != pred.shape:
        raise ValueError(f"shapes differ: {gt.shape} vs {pred.shape}")
    gt_bbox, pred_bbox = _nonzero_bbox(gt), _nonzero_bbox(pred)
    return statistics_from_crops(
        None if gt_bbox is None else _crop(gt, gt_bbox),
        gt_bbox,
        None if pred_bbox is None else _crop(pred, pred_bbox),
        pred_bbox,
        voxel_volume_mm3=voxel_volume_mm3,
        connectivity=connectivity,
        iou_threshold=iou_threshold,
        iou_strict=iou_strict,
    )


def statistics_from_crops(
    gt_crop: npt.NDArray[np.uint8] | None,
    gt_bbox: Bbox | None,
    pred_crop: npt.NDArray[np.uint8] | None,
    pred_bbox: Bbox | None,
    *,
    voxel_volume_mm3: float,
    connectivity: Literal[6, 18, 26] = 26,
    iou_threshold: Fraction = Fraction(3, 10),
    iou_strict: bool = False,
) -> CaseStats:
    """:func:`case_statistics` when both label maps are known by their foreground
    crops (bounding box of the non-zero voxels and the labels inside it): the crops
    are pasted into one array over the union of the two boxes."""
    box = _bbox_union(gt_bbox, pred_bbox)
    if box is None:
        return CaseStats(0, 0, 0, 0, 0, 0, 0, 0, 0, float(voxel_volume_mm3))
    shape = tuple(b - a for a, b in box)
    g = np.zeros(shape, dtype=np.uint8, order="F")
    p = np.zeros(shape, dtype=np.uint8, order="F")
    for out, part, where in ((g, gt_crop, gt_bbox), (p, pred_crop, pred_bbox)):
        if part is not None and where is not None:
            (a0, a1), (b0, b1), (c0, c1) = where
            x0, y0, z0 = box[0][0], box[1][0], box[2][0]
            out[a0 - x0 : a1 - x0, b0 - y0 : b1 - y0, c0 - z0 : c1 - z0] = part
    return crop_statistics(
        g,
        p,
        voxel_volume_mm3=voxel_volume_mm3,
        connectivity=connectivity,
        iou_threshold=iou_threshold,
        iou_strict=iou_strict,
    )


def crop_statistics(
    g: npt.NDArray[np.uint8],
    p: npt.NDArray[np.uint8],
    *,
    voxel_volume_mm3: float,
    connectivity: Literal[6, 18, 26] = 26,
    iou_threshold: Fraction = Fraction(3, 10),
    iou_strict: bool = False,
) -> CaseStats:
    """:func:`case_statistics` on two crops that already hold every non-zero voxel."""
    code = g * np.uint8(3) + p  # values 0..8: 3*gt + pred
    c = _bincount(code, 9)
    del code
    det = lesion_detection(
        g == GTVN,
        p == GTVN,
        connectivity=connectivity,
        iou_threshold=iou_threshold,
        iou_strict=iou_strict,
    )
    return CaseStats(
        gtvp_intersection=int(c[4]),
        gtvp_pred_voxels=int(c[1] + c[4] + c[7]),
        gtvp_gt_voxels=int(c[3] + c[4] + c[5]),
        gtvn_intersection=int(c[8]),
        gtvn_pred_voxels=int(c[2] + c[5] + c[8]),
        gtvn_gt_voxels=int(c[6] + c[7] + c[8]),
        gtvn_tp=det.tp,
        gtvn_fp=det.fp,
        gtvn_fn=det.fn,
        voxel_volume_mm3=float(voxel_volume_mm3),
    )


# --- aggregation ----------------------------------------------------------------------


def gtvp_dsc(stats: Mapping[str, Any], *, both_empty: float | None) -> float | None:
    """GTVp DSC of one case; ``both_empty`` when truth and prediction are empty
    (None: the case is excluded from the mean)."""
    den = int(stats["gtvp_pred_voxels"]) + int(stats["gtvp_gt_voxels"])
    if den == 0:
        return both_empty
    return 2.0 * int(stats["gtvp_intersection"]) / den


def aggregate_task1(
    cases: Sequence[Mapping[str, Any]], *, protocol: Protocol = HECKTOR2025
) -> dict[str, Any]:
    """``gtvp_dsc_mean``, ``gtvn_dsc_agg``, ``gtvn_f1_agg`` and the TP/FP/FN totals."""
    if not cases:
        raise ScoringError("no case to aggregate: zero scored cases is an error, not a score")
    both_empty = protocol.both_empty_value
    dscs = [d for c in cases if (d := gtvp_dsc(c, both_empty=both_empty)) is not None]
    if not dscs:
        raise ScoringError(
            "GTVp mean DSC is undefined: every case has an empty GTVp on both sides and "
            "the protocol excludes such cases"
        )
    gtvp_mean = math.fsum(dscs) / len(dscs)

    physical = protocol.dsc_agg_weighting == "physical"
    num, den = [], []
    for c in cases:
        w = float(c["voxel_volume_mm3"]) if physical else 1.0
        num.append(2.0 * int(c["gtvn_intersection"]) * w)
        den.append((int(c["gtvn_pred_voxels"]) + int(c["gtvn_gt_voxels"])) * w)
    den_sum = math.fsum(den)
    gtvn_dsc_agg = 1.0 if den_sum == 0 else math.fsum(num) / den_sum

    tp = sum(int(c["gtvn_tp"]) for c in cases)
    fp = sum(int(c["gtvn_fp"]) for c in cases)
    fn = sum(int(c["gtvn_fn"]) for c in cases)
    f1_den = 2 * tp + fp + fn
    gtvn_f1 = 1.0 if f1_den == 0 else 2 * tp / f1_den
    return {
        "gtvp_dsc_mean": gtvp_mean,
        "gtvn_dsc_agg": gtvn_dsc_agg,
        "gtvn_f1_agg": gtvn_f1,
        "gtvn_tp": tp,
        "gtvn_fp": fp,
        "gtvn_fn": fn,
        "n_cases": len(cases),
    }
