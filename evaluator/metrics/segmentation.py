"""Task 1: per-case sufficient statistics and their aggregation (docs/scoring.md section 3).

Per case, one record of voxel counts (:class:`CaseStats`). Every Task 1 metric is a
reduction of these records, so cases can be scored in parallel, stored, re-ranked
and bootstrapped without reading an image again.

The per-case work runs on each side's foreground crop (bounding box of its non-zero
voxels): ``np.count_nonzero`` gives its label volumes and ``cc3d`` labels its GTVn
lesions. The two sides meet only where the crops overlap: there, one bitwise AND of
the labels gives both intersections, and one ``np.unique`` over the voxels where
both sides are lesions gives every component pair's overlap. The groups of docs/scoring.md
step 2 are the connected components of the bipartite overlap graph
(``scipy.sparse.csgraph``); the IoU test is done in integers.
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

from evaluator.edge_cases import edge_value
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
    gtvn_pred_lesions: int  # connected components of the predicted GTVn
    voxel_volume_mm3: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


STAT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CaseStats))


@dataclass(frozen=True)
class Detection:
    tp: int
    fp: int
    fn: int


def _bbox_overlap(a: Bbox | None, b: Bbox | None) -> Bbox | None:
    """The intersection of two boxes, None when they do not overlap."""
    if a is None or b is None:
        return None
    box = tuple((max(a[i][0], b[i][0]), min(a[i][1], b[i][1])) for i in range(3))
    if any(lo >= hi for lo, hi in box):
        return None
    return box  # type: ignore[return-value]


def _within(outer: Bbox, inner: Bbox) -> tuple[slice, slice, slice]:
    """The index of box ``inner`` in an array that covers box ``outer``."""
    return tuple(  # type: ignore[return-value]
        slice(i0 - o0, i1 - o0) for (o0, _), (i0, i1) in zip(outer, inner, strict=True)
    )


def _nonzero_bbox(arr: npt.NDArray[Any]) -> Bbox | None:
    from evaluator.boxes import foreground_bbox

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
    """Group-fusion lesion matching (docs/scoring.md section 3, Fig. 5 of the data paper).

    Lesions are the connected components of each mask. A predicted and a true lesion
    are joined when they share a voxel; each connected component of that bipartite
    graph is a group. A group with both kinds is one TP when the IoU of the union of
    its predicted lesions with the union of its true lesions reaches the threshold;
    otherwise all its predicted lesions are FPs and all its true lesions FNs.
    Unmatched predicted lesions are FPs and unmatched true lesions FNs.
    """
    if gt_lesions.shape != pred_lesions.shape:
        raise ValueError(f"shapes differ: {gt_lesions.shape} vs {pred_lesions.shape}")
    gl, n_gt = _components(gt_lesions, connectivity)
    pl, n_pred = _components(pred_lesions, connectivity)
    return _match(gl, n_gt, pl, n_pred, gl, pl, iou_threshold=iou_threshold, iou_strict=iou_strict)


def _components(
    mask: npt.NDArray[np.bool_], connectivity: Literal[6, 18, 26]
) -> tuple[npt.NDArray[Any], int]:
    """The lesions of ``mask``: cc3d labels (the smallest safe dtype) and their number."""
    labels, n = cc3d.connected_components(
        mask.view(np.uint8), connectivity=connectivity, return_N=True
    )
    return labels, int(n)


def _side(
    crop: npt.NDArray[np.uint8] | None, connectivity: Literal[6, 18, 26]
) -> tuple[dict[int, int], npt.NDArray[Any] | None, int]:
    """One side's foreground crop (labels 0, 1, 2): its GTVp and GTVn voxel counts,
    its GTVn lesion labels and their number."""
    if crop is None:
        return {GTVP: 0, GTVN: 0}, None, 0
    gtvn = crop == GTVN
    n_gtvn = int(np.count_nonzero(gtvn))
    labels, n = _components(gtvn, connectivity)
    return {GTVP: int(np.count_nonzero(crop)) - n_gtvn, GTVN: n_gtvn}, labels, n


def graph_components(
    n_nodes: int, a: npt.NDArray[np.intp], b: npt.NDArray[np.intp]
) -> tuple[int, npt.NDArray[np.int64]]:
    """Connected components of the undirected graph on ``n_nodes`` nodes with the edges
    ``a[i]``-``b[i]``: their number and each node's component, numbered in the order of
    their smallest node (as ``scipy.sparse.csgraph.connected_components`` numbers them).

    Each node takes the smallest label among its neighbours' and then its label's label
    (pointer jumping) until nothing changes: a loop over rounds, each one vectorised
    over the edges, never over voxels.
    """
    label = np.arange(n_nodes, dtype=np.intp)
    a, b = np.asarray(a, dtype=np.intp), np.asarray(b, dtype=np.intp)
    while True:
        low = np.minimum(label[a], label[b])
        new = label.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]
        if np.array_equal(new, label):
            break
        label = new
    roots, group = np.unique(label, return_inverse=True)
    return int(roots.size), group.astype(np.int64)


def _match(
    gl: npt.NDArray[Any],
    n_gt: int,
    pl: npt.NDArray[Any],
    n_pred: int,
    gl_shared: npt.NDArray[Any],
    pl_shared: npt.NDArray[Any],
    *,
    iou_threshold: Fraction,
    iou_strict: bool,
) -> Detection:
    """:func:`lesion_detection` from lesion labels: ``gl`` and ``pl`` label each side's
    lesions 1..n on arrays of their own (each side's crop, for example); ``gl_shared``
    and ``pl_shared`` are views of them over one common region that holds every voxel
    where a true and a predicted lesion can meet (the overlap of the two crops)."""
    if n_pred == 0 or n_gt == 0:
        return Detection(0, n_pred, n_gt)
    # overlap of every (pred, gt) pair from one pass over the shared voxels
    both = (pl_shared != 0) & (gl_shared != 0)
    code = pl_shared[both].astype(np.int64) * (n_gt + 1) + gl_shared[both].astype(np.int64)
    del both
    pairs, inter = np.unique(code, return_counts=True)
    if pairs.size == 0:
        return Detection(0, n_pred, n_gt)
    # only lesions that overlap one of the other side can be matched: any other one is
    # an FP or an FN outright, and the groups are built over the overlapping ones only
    # (a prediction of millions of specks costs arrays of its overlaps, not of its specks)
    p_ids, p_idx = np.unique(pairs // (n_gt + 1), return_inverse=True)
    g_ids, g_idx = np.unique(pairs % (n_gt + 1), return_inverse=True)
    n_p, n_g = int(p_ids.size), int(g_ids.size)
    pred_size = _bincount(pl, n_pred + 1)[p_ids]
    gt_size = _bincount(gl, n_gt + 1)[g_ids]
    # groups: connected components of the bipartite graph (preds 0..n_p-1, gts after)
    n_groups, group = graph_components(n_p + n_g, p_idx, g_idx + n_p)
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
    crops (bounding box of the non-zero voxels and the labels inside it).

    Each side is counted and its lesions labelled on its own crop; the two meet only
    where the boxes overlap, so only that region is compared. No array spans the
    union of the boxes: a prediction that fills the volume costs its own crop and its
    lesion labels, whatever the truth's size.
    """
    gt = None if gt_crop is None or gt_bbox is None else gt_crop
    pred = None if pred_crop is None or pred_bbox is None else pred_crop
    gt_vox, gl, n_gt = _side(gt, connectivity)
    pred_vox, pl, n_pred = _side(pred, connectivity)
    shared = _bbox_overlap(gt_bbox, pred_bbox) if gt is not None and pred is not None else None
    inter = {GTVP: 0, GTVN: 0}
    if shared is None or gt is None or pred is None or gl is None or pl is None:
        det = Detection(0, n_pred, n_gt)
    else:
        assert gt_bbox is not None and pred_bbox is not None
        g_at, p_at = _within(gt_bbox, shared), _within(pred_bbox, shared)
        # labels are 0, 1 and 2: the bitwise AND is 1 where both are GTVp, 2 where both
        # are GTVn, 0 elsewhere
        both = gt[g_at] & pred[p_at]
        n_both = int(np.count_nonzero(both))
        inter[GTVN] = int(np.count_nonzero(both == GTVN))
        inter[GTVP] = n_both - inter[GTVN]
        del both
        det = _match(
            gl,
            n_gt,
            pl,
            n_pred,
            gl[g_at],
            pl[p_at],
            iou_threshold=iou_threshold,
            iou_strict=iou_strict,
        )
    return CaseStats(
        gtvp_intersection=inter[GTVP],
        gtvp_pred_voxels=pred_vox[GTVP],
        gtvp_gt_voxels=gt_vox[GTVP],
        gtvn_intersection=inter[GTVN],
        gtvn_pred_voxels=pred_vox[GTVN],
        gtvn_gt_voxels=gt_vox[GTVN],
        gtvn_tp=det.tp,
        gtvn_fp=det.fp,
        gtvn_fn=det.fn,
        gtvn_pred_lesions=n_pred,
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
) -> dict[str, float]:
    """``gtvp_dsc_mean``, ``gtvn_dsc_agg``, ``gtvn_f1_agg`` and the TP/FP/FN totals."""
    if not cases:
        raise ScoringError("no case to aggregate: zero scored cases is an error, not a score")
    both_empty = edge_value("gtvp_dsc", protocol)
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
    gtvn_dsc_agg = _when_empty("gtvn_dsc_agg") if den_sum == 0 else math.fsum(num) / den_sum

    tp = sum(int(c["gtvn_tp"]) for c in cases)
    fp = sum(int(c["gtvn_fp"]) for c in cases)
    fn = sum(int(c["gtvn_fn"]) for c in cases)
    f1_den = 2 * tp + fp + fn
    gtvn_f1 = _when_empty("gtvn_f1_agg") if f1_den == 0 else 2 * tp / f1_den
    return {
        "gtvp_dsc_mean": gtvp_mean,
        "gtvn_dsc_agg": gtvn_dsc_agg,
        "gtvn_f1_agg": gtvn_f1,
        "gtvn_tp": tp,
        "gtvn_fp": fp,
        "gtvn_fn": fn,
        "n_cases": len(cases),
    }


def _when_empty(metric: str) -> float:
    """The declared value of an aggregate over data with nothing to compare."""
    value = edge_value(metric)
    assert value is not None, f"{metric} has no value on empty data"
    return value


# --- two labels, each its own DSC (HECKTOR 2026) ---------------------------------------

DscMode = Literal["per_patient", "aggregated"]


Label = Literal["gtvp", "gtvn"]


def label_dsc(stats: Mapping[str, Any], label: Label, *, both_empty: float | None) -> float | None:
    """DSC of one label of one case; ``both_empty`` when truth and prediction are both
    empty for that label (None: the case is left out of that label's mean)."""
    den = int(stats[f"{label}_pred_voxels"]) + int(stats[f"{label}_gt_voxels"])
    if den == 0:
        return both_empty
    return 2.0 * int(stats[f"{label}_intersection"]) / den


def two_label_dsc(
    cases: Sequence[Mapping[str, Any]],
    *,
    mode: DscMode,
    gtvp_both_empty: float | None,
    gtvn_both_empty: float | None,
    physical: bool,
    if_no_voxel: Mapping[str, float],
) -> dict[str, float]:
    """``seg_gtvp_dsc`` and ``seg_gtvn_dsc``, each label on its own, and their mean
    ``seg_dsc``.

    ``mode="per_patient"``: the mean over cases of each case's DSC of that label (a case
    empty on both sides for the label is worth that label's ``both_empty``; None leaves
    it out). ``mode="aggregated"``: ``2 Σ|A∩B| / Σ(|A|+|B|)`` over the cases, each case's
    counts weighted by its voxel volume when ``physical``; ``if_no_voxel[label]`` when
    the sum is 0. Raises :class:`ScoringError` without cases, or when every case is left out of
    one label's mean.
    """
    if not cases:
        raise ScoringError("no case to aggregate: zero scored cases is an error, not a score")
    out: dict[str, float] = {}
    labels: tuple[tuple[Label, float | None], ...] = (
        ("gtvp", gtvp_both_empty),
        ("gtvn", gtvn_both_empty),
    )
    for label, both_empty in labels:
        if mode == "per_patient":
            dscs = [
                d for c in cases if (d := label_dsc(c, label, both_empty=both_empty)) is not None
            ]
            if not dscs:
                raise ScoringError(
                    f"{label.upper()} DSC is undefined: every case has an empty {label.upper()} "
                    "on both sides and the protocol excludes such cases"
                )
            out[f"seg_{label}_dsc"] = math.fsum(dscs) / len(dscs)
            continue
        num, den = [], []
        for c in cases:
            w = float(c["voxel_volume_mm3"]) if physical else 1.0
            num.append(2.0 * int(c[f"{label}_intersection"]) * w)
            den.append((int(c[f"{label}_pred_voxels"]) + int(c[f"{label}_gt_voxels"])) * w)
        total = math.fsum(den)
        out[f"seg_{label}_dsc"] = if_no_voxel[label] if total == 0 else math.fsum(num) / total
    return {
        "seg_dsc": (out["seg_gtvp_dsc"] + out["seg_gtvn_dsc"]) / 2.0,
        "seg_gtvp_dsc": out["seg_gtvp_dsc"],
        "seg_gtvn_dsc": out["seg_gtvn_dsc"],
        "n_cases": len(cases),
    }
