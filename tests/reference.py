"""Slow, obvious reference implementations, written from docs/scoring.md section 3 only.

They share no code with the evaluator: scipy.ndimage labels instead of cc3d, a
Python union-find over every (pred, gt) lesion pair with full-volume masks instead
of the encoded one-pass overlap table, and exact fractions for every ratio.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
from scipy import ndimage


def structure(connectivity: int) -> np.ndarray:
    # 6: faces, 18: faces+edges, 26: faces+edges+corners
    rank = {6: 1, 18: 2, 26: 3}[connectivity]
    return ndimage.generate_binary_structure(3, rank)


def ref_detection(
    gt_mask: np.ndarray,
    pred_mask: np.ndarray,
    *,
    connectivity: int = 26,
    threshold: Fraction = Fraction(3, 10),
    strict: bool = False,
) -> tuple[int, int, int]:
    gl, ng = ndimage.label(gt_mask, structure=structure(connectivity))
    pl, npred = ndimage.label(pred_mask, structure=structure(connectivity))
    nodes = [("p", i) for i in range(1, npred + 1)] + [("g", j) for j in range(1, ng + 1)]
    parent = {n: n for n in nodes}

    def find(n):
        while parent[n] != n:
            n = parent[n]
        return n

    for i in range(1, npred + 1):
        for j in range(1, ng + 1):
            if np.any((pl == i) & (gl == j)):
                parent[find(("p", i))] = find(("g", j))
    groups: dict[Any, list] = {}
    for n in nodes:
        groups.setdefault(find(n), []).append(n)
    tp = fp = fn = 0
    for members in groups.values():
        ps = [i for k, i in members if k == "p"]
        gs = [j for k, j in members if k == "g"]
        if ps and gs:
            pu = np.isin(pl, ps)
            gu = np.isin(gl, gs)
            iou = Fraction(int(np.sum(pu & gu)), int(np.sum(pu | gu)))
            ok = iou > threshold if strict else iou >= threshold
            if ok:
                tp += 1
                continue
        fp += len(ps)
        fn += len(gs)
    return tp, fp, fn


def ref_case(
    gt: np.ndarray,
    pred: np.ndarray,
    *,
    connectivity: int = 26,
    threshold: Fraction = Fraction(3, 10),
    strict: bool = False,
) -> dict[str, int]:
    out = {}
    for name, lab in (("gtvp", 1), ("gtvn", 2)):
        g, p = gt == lab, pred == lab
        out[f"{name}_intersection"] = int(np.sum(g & p))
        out[f"{name}_pred_voxels"] = int(np.sum(p))
        out[f"{name}_gt_voxels"] = int(np.sum(g))
    tp, fp, fn = ref_detection(
        gt == 2, pred == 2, connectivity=connectivity, threshold=threshold, strict=strict
    )
    out.update(gtvn_tp=tp, gtvn_fp=fp, gtvn_fn=fn)
    out["gtvn_pred_lesions"] = int(ndimage.label(pred == 2, structure(connectivity))[1])
    return out


def ref_aggregate(
    cases: list[dict], *, both_empty: float | None = 1.0, physical: bool = True
) -> dict[str, float]:
    dscs = []
    for c in cases:
        den = c["gtvp_pred_voxels"] + c["gtvp_gt_voxels"]
        if den == 0:
            if both_empty is not None:
                dscs.append(Fraction(both_empty))
        else:
            dscs.append(Fraction(2 * c["gtvp_intersection"], den))
    num = sum(
        Fraction(2 * c["gtvn_intersection"]) * Fraction(c["voxel_volume_mm3"] if physical else 1)
        for c in cases
    )
    den = sum(
        Fraction(c["gtvn_pred_voxels"] + c["gtvn_gt_voxels"])
        * Fraction(c["voxel_volume_mm3"] if physical else 1)
        for c in cases
    )
    tp = sum(c["gtvn_tp"] for c in cases)
    fp = sum(c["gtvn_fp"] for c in cases)
    fn = sum(c["gtvn_fn"] for c in cases)
    return {
        "gtvp_dsc_mean": float(sum(dscs) / len(dscs)),
        "gtvn_dsc_agg": 1.0 if den == 0 else float(num / den),
        "gtvn_f1_agg": 1.0 if 2 * tp + fp + fn == 0 else float(Fraction(2 * tp, 2 * tp + fp + fn)),
    }
