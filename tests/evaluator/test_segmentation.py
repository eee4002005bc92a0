"""Task 1 metrics: hand-worked cases (expected numbers derived in the comments), a
fast == slow property test against tests/reference.py, and metric invariants."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from evaluator.boxes import crop, foreground_bbox
from evaluator.errors import ScoringError
from evaluator.metrics.segmentation import (
    aggregate_task1,
    case_statistics,
    lesion_detection,
    statistics_from_crops,
)
from evaluator.protocol import Protocol
from tests.reference import ref_aggregate, ref_case

SHAPE = (16, 6, 6)


def vol() -> np.ndarray:
    return np.zeros(SHAPE, dtype=np.uint8, order="F")


def line(arr: np.ndarray, x0: int, x1: int, label: int, y: int = 1, z: int = 1) -> np.ndarray:
    arr[x0:x1, y, z] = label
    return arr


def stats(gt: np.ndarray, pred: np.ndarray, **kw) -> dict:
    return case_statistics(gt, pred, voxel_volume_mm3=1.0, **kw).as_dict()


def det(gt: np.ndarray, pred: np.ndarray, **kw) -> tuple[int, int, int]:
    d = lesion_detection(gt == 2, pred == 2, **kw)
    return d.tp, d.fp, d.fn


# --- hand-worked cases -----------------------------------------------------------------


def case_merge() -> tuple[np.ndarray, np.ndarray]:
    # truth: two nodes, x in [0,3) and [6,9) (3 voxels each, gap of 3 voxels);
    # prediction: one node x in [0,10) covering both (10 voxels).
    # one group; |P∩G| = 6, |P∪G| = 10, IoU = 0.6 >= 0.3 -> TP 1, FP 0, FN 0.
    gt = line(line(vol(), 0, 3, 2), 6, 9, 2)
    pred = line(vol(), 0, 10, 2)
    return gt, pred


def test_merge_is_one_tp() -> None:
    gt, pred = case_merge()
    assert det(gt, pred) == (1, 0, 0)
    s = stats(gt, pred)
    # GTVn DSC counts: inter 6, pred 10, gt 6
    assert (s["gtvn_intersection"], s["gtvn_pred_voxels"], s["gtvn_gt_voxels"]) == (6, 10, 6)


def test_split_is_one_tp() -> None:
    # truth: one node x in [0,10); prediction: two pieces [0,4) and [5,10) (gap at x=4).
    # one group; inter 9, union 10, IoU 0.9 -> TP 1, FP 0, FN 0.
    gt = line(vol(), 0, 10, 2)
    pred = line(line(vol(), 0, 4, 2), 5, 10, 2)
    assert det(gt, pred) == (1, 0, 0)


def test_chain_of_four_lesions_below_threshold() -> None:
    # p1 = {x=0}; p2 = x in [2,10) x y in [1,3) (16 voxels);
    # g1 = x in [0,4) on y=1; g2 = x in [8,12) on y=1.  Chain p1-g1-p2-g2: one group.
    # |∩| = 1 (p1∩g1) + 2 (p2∩g1: x=2,3) + 2 (p2∩g2: x=8,9) = 5
    # |∪P| = 17, |∪G| = 8, |∪| = 17 + 8 - 5 = 20, IoU = 5/20 = 0.25 < 0.3
    # -> every lesion of the group fails: FP 2, FN 2.
    gt = line(line(vol(), 0, 4, 2), 8, 12, 2)
    pred = vol()
    pred[0, 1, 1] = 2
    pred[2:10, 1:3, 1] = 2
    assert det(gt, pred) == (0, 2, 2)


def test_corner_touching_cubes_are_one_lesion_under_26() -> None:
    # truth: cubes A=[0,2)^3 and B=[2,4)^3 touching at one corner; prediction: A only.
    # 26-conn: one true lesion (16 voxels); inter 8, union 16, IoU 0.5 -> TP 1, FN 0.
    # 6-conn:  two true lesions; A matched exactly (TP), B untouched (FN 1).
    gt = vol()
    gt[0:2, 0:2, 0:2] = 2
    gt[2:4, 2:4, 2:4] = 2
    pred = vol()
    pred[0:2, 0:2, 0:2] = 2
    assert det(gt, pred, connectivity=26) == (1, 0, 0)
    assert det(gt, pred, connectivity=6) == (1, 0, 1)
    assert det(gt, pred, connectivity=18) == (1, 0, 1)  # a corner is not an edge


def test_iou_exactly_threshold() -> None:
    # truth x in [0,10), prediction x in [0,3): inter 3, union 10, IoU = 3/10 exactly.
    # '>=' (default) -> TP; '>' (iou_strict) -> FP 1, FN 1.
    gt = line(vol(), 0, 10, 2)
    pred = line(vol(), 0, 3, 2)
    assert det(gt, pred, iou_threshold=Fraction(3, 10)) == (1, 0, 0)
    assert det(gt, pred, iou_threshold=Fraction(3, 10), iou_strict=True) == (0, 1, 1)
    # the protocol turns 0.3 into exactly 3/10
    assert Protocol(iou_threshold=0.3).iou_fraction == Fraction(3, 10)


def test_empty_truth() -> None:
    # truth empty; prediction: GTVp line of 4, GTVn line of 2 (separate rows)
    # GTVp DSC = 2*0/(4+0) = 0; GTVn: one spurious lesion -> FP 1.
    pred = line(line(vol(), 0, 4, 1, y=1), 0, 2, 2, y=4)
    s = stats(vol(), pred)
    assert s["gtvp_pred_voxels"] == 4 and s["gtvp_gt_voxels"] == 0
    assert (s["gtvn_tp"], s["gtvn_fp"], s["gtvn_fn"]) == (0, 1, 0)
    m = aggregate_task1([s])
    assert m["gtvp_dsc_mean"] == 0.0
    assert m["gtvn_dsc_agg"] == 0.0  # 2*0 / (2+0)
    assert m["gtvn_f1_agg"] == 0.0  # 2*0 / (0+1+0)


def test_empty_prediction() -> None:
    # prediction empty; truth GTVp line 5 and one node of 3: DSC 0, FN 1, F1 0.
    gt = line(line(vol(), 0, 5, 1, y=1), 0, 3, 2, y=4)
    s = stats(gt, vol())
    assert (s["gtvn_tp"], s["gtvn_fp"], s["gtvn_fn"]) == (0, 0, 1)
    m = aggregate_task1([s])
    assert (m["gtvp_dsc_mean"], m["gtvn_dsc_agg"], m["gtvn_f1_agg"]) == (0.0, 0.0, 0.0)


def test_both_empty_policies() -> None:
    # case A: both empty. case B: GTVp inter 2, pred 4, gt 4 -> DSC 0.5.
    both = stats(vol(), vol())
    assert all(both[k] == 0 for k in both if k != "voxel_volume_mm3")
    b = stats(line(vol(), 0, 4, 1), line(vol(), 2, 6, 1))
    assert b["gtvp_intersection"] == 2
    # default '1.0': mean(1.0, 0.5) = 0.75; '0.0': mean(0, 0.5) = 0.25; exclude: 0.5
    assert aggregate_task1([both, b])["gtvp_dsc_mean"] == 0.75
    assert (
        aggregate_task1([both, b], protocol=Protocol(gtvp_both_empty="0.0"))["gtvp_dsc_mean"]
        == 0.25
    )
    assert (
        aggregate_task1([both, b], protocol=Protocol(gtvp_both_empty="exclude"))["gtvp_dsc_mean"]
        == 0.5
    )
    # no GTVn anywhere: aggregated DSC and F1 have a zero denominator -> 1.0
    m = aggregate_task1([both])
    assert (m["gtvn_dsc_agg"], m["gtvn_f1_agg"]) == (1.0, 1.0)
    with pytest.raises(ScoringError, match="every case has an empty GTVp"):
        aggregate_task1([both], protocol=Protocol(gtvp_both_empty="exclude"))


def test_zero_cases_is_an_error_not_a_zero() -> None:
    with pytest.raises(ScoringError, match="zero scored cases"):
        aggregate_task1([])


def test_gtvp_gtvn_swapped() -> None:
    # truth: GTVp x in [0,4) row y=1, GTVn x in [0,4) row y=4.
    # prediction: the labels swapped. Each metric uses only its own label:
    # GTVp inter 0 (DSC 0); GTVn inter 0; the predicted node touches no true node
    # -> FP 1, FN 1.
    gt = line(line(vol(), 0, 4, 1, y=1), 0, 4, 2, y=4)
    pred = line(line(vol(), 0, 4, 2, y=1), 0, 4, 1, y=4)
    s = stats(gt, pred)
    assert (s["gtvp_intersection"], s["gtvp_pred_voxels"], s["gtvp_gt_voxels"]) == (0, 4, 4)
    assert (s["gtvn_intersection"], s["gtvn_tp"], s["gtvn_fp"], s["gtvn_fn"]) == (0, 0, 1, 1)


def test_gtvn_on_true_gtvp_is_just_a_gtvn_false_positive() -> None:
    # prediction labels the true GTVp (4 voxels) as GTVn: GTVn FP 1, GTVp DSC 0.
    gt = line(vol(), 0, 4, 1)
    pred = line(vol(), 0, 4, 2)
    s = stats(gt, pred)
    assert (s["gtvp_intersection"], s["gtvn_pred_voxels"], s["gtvn_fp"]) == (0, 4, 1)


def test_physical_weighting_anisotropic() -> None:
    # case 1, voxel 1 mm^3: GTVn inter 10, pred 10, gt 20.
    # case 2, voxel 8 mm^3 (2x2x2 mm): inter 0, pred 5, gt 5.
    # physical: 2*(10*1 + 0*8) / ((10+20)*1 + (5+5)*8) = 20 / 110 = 0.181818...
    # voxels:   2*(10 + 0) / (30 + 10) = 20 / 40 = 0.5
    base = dict(
        gtvp_intersection=1, gtvp_pred_voxels=1, gtvp_gt_voxels=1, gtvn_tp=0, gtvn_fp=0, gtvn_fn=0
    )
    c1 = dict(
        base, gtvn_intersection=10, gtvn_pred_voxels=10, gtvn_gt_voxels=20, voxel_volume_mm3=1.0
    )
    c2 = dict(base, gtvn_intersection=0, gtvn_pred_voxels=5, gtvn_gt_voxels=5, voxel_volume_mm3=8.0)
    assert aggregate_task1([c1, c2])["gtvn_dsc_agg"] == pytest.approx(20 / 110, rel=1e-15)
    voxels = Protocol(dsc_agg_weighting="voxels")
    assert aggregate_task1([c1, c2], protocol=voxels)["gtvn_dsc_agg"] == 0.5


def test_f1_sums_counts_over_cases() -> None:
    # case 1: TP 3, FP 1, FN 0; case 2: TP 0, FP 0, FN 2 -> F1 = 6 / (6 + 1 + 2) = 2/3
    base = dict(
        gtvp_intersection=0,
        gtvp_pred_voxels=0,
        gtvp_gt_voxels=0,
        gtvn_intersection=0,
        gtvn_pred_voxels=0,
        gtvn_gt_voxels=0,
        voxel_volume_mm3=1.0,
    )
    m = aggregate_task1(
        [dict(base, gtvn_tp=3, gtvn_fp=1, gtvn_fn=0), dict(base, gtvn_tp=0, gtvn_fp=0, gtvn_fn=2)]
    )
    assert m["gtvn_f1_agg"] == pytest.approx(2 / 3, rel=1e-15)
    assert (m["gtvn_tp"], m["gtvn_fp"], m["gtvn_fn"]) == (3, 1, 2)


def test_fortran_and_c_order_give_the_same_counts() -> None:
    rng = np.random.default_rng(3)
    gt = (rng.random((9, 7, 5)) < 0.3).astype(np.uint8) * rng.integers(1, 3, (9, 7, 5)).astype(
        np.uint8
    )
    pred = (rng.random((9, 7, 5)) < 0.3).astype(np.uint8) * 2
    a = stats(np.asfortranarray(gt), np.asfortranarray(pred))
    b = stats(np.ascontiguousarray(gt), np.ascontiguousarray(pred))
    assert a == b == dict(ref_case(gt, pred), voxel_volume_mm3=1.0)


# --- fast == slow on random label maps ---------------------------------------------------

label_maps = arrays(
    np.uint8,
    st.tuples(st.integers(1, 7), st.integers(1, 7), st.integers(1, 6)),
    elements=st.sampled_from([0, 0, 0, 1, 2, 2]),
)


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    gt=label_maps,
    connectivity=st.sampled_from([6, 18, 26]),
    strict=st.booleans(),
    threshold=st.sampled_from([Fraction(3, 10), Fraction(1, 2), Fraction(1, 10), Fraction(1, 1)]),
)
def test_fast_equals_reference(data, gt, connectivity, strict, threshold) -> None:
    pred = data.draw(arrays(np.uint8, gt.shape, elements=st.sampled_from([0, 0, 1, 2, 2])))
    gt = np.asfortranarray(gt)
    pred = np.asfortranarray(pred)
    fast = case_statistics(
        gt,
        pred,
        voxel_volume_mm3=1.0,
        connectivity=connectivity,
        iou_threshold=threshold,
        iou_strict=strict,
    ).as_dict()
    slow = ref_case(gt, pred, connectivity=connectivity, threshold=threshold, strict=strict)
    assert fast == dict(slow, voxel_volume_mm3=1.0)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(label_maps, st.sampled_from([1.0, 0.5, 2.25, 3.1])), min_size=1, max_size=5),
    st.sampled_from(["1.0", "0.0"]),
    st.booleans(),
)
def test_aggregate_equals_exact_fractions(pairs, both_empty, physical) -> None:
    rng = np.random.default_rng(0)
    cases = []
    for gt, v in pairs:
        pred = np.where(rng.random(gt.shape) < 0.5, gt, rng.integers(0, 3, gt.shape)).astype(
            np.uint8
        )
        cases.append(case_statistics(gt, pred, voxel_volume_mm3=v).as_dict())
    p = Protocol(gtvp_both_empty=both_empty, dsc_agg_weighting="physical" if physical else "voxels")
    fast = aggregate_task1(cases, protocol=p)
    slow = ref_aggregate(cases, both_empty=float(both_empty), physical=physical)
    for k, v in slow.items():
        assert fast[k] == pytest.approx(v, rel=1e-12, abs=1e-15)


# --- invariants -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(gt=label_maps)
def test_perfect_prediction_is_best(gt) -> None:
    s = stats(gt, gt.copy())
    n_gt_lesions = ref_case(gt, gt)["gtvn_tp"]
    assert s["gtvn_fp"] == s["gtvn_fn"] == 0 and s["gtvn_tp"] == n_gt_lesions
    m = aggregate_task1([s])
    assert m["gtvp_dsc_mean"] == 1.0 and m["gtvn_dsc_agg"] == 1.0 and m["gtvn_f1_agg"] == 1.0


@settings(max_examples=60, deadline=None)
@given(data=st.data(), gt=label_maps)
def test_swapping_truth_and_prediction(data, gt) -> None:
    # The grouping is symmetric: TP stays, FP and FN swap; DSC counts swap pred/gt.
    pred = data.draw(arrays(np.uint8, gt.shape, elements=st.sampled_from([0, 1, 2])))
    a, b = stats(gt, pred), stats(pred, gt)
    assert (a["gtvn_tp"], a["gtvn_fp"], a["gtvn_fn"]) == (b["gtvn_tp"], b["gtvn_fn"], b["gtvn_fp"])
    assert a["gtvp_intersection"] == b["gtvp_intersection"]
    assert a["gtvn_pred_voxels"] == b["gtvn_gt_voxels"]


@settings(max_examples=40, deadline=None)
@given(data=st.data(), gt=label_maps)
def test_bounds_and_flip_invariance(data, gt) -> None:
    pred = data.draw(arrays(np.uint8, gt.shape, elements=st.sampled_from([0, 1, 2])))
    s = stats(gt, pred)
    flipped = stats(gt[::-1, :, ::-1].copy(order="F"), pred[::-1, :, ::-1].copy(order="F"))
    assert s == flipped  # counts do not depend on the orientation of the grid
    m = aggregate_task1([s])
    for k in ("gtvp_dsc_mean", "gtvn_dsc_agg", "gtvn_f1_agg"):
        assert 0.0 <= m[k] <= 1.0


def _from_crops(gt: np.ndarray, pred: np.ndarray, **kw) -> dict:
    """statistics_from_crops given each side's foreground crop, as the scorer does."""
    gb, pb = foreground_bbox(gt), foreground_bbox(pred)
    return statistics_from_crops(
        None if gb is None else crop(gt, gb),
        gb,
        None if pb is None else crop(pred, pb),
        pb,
        **kw,
    ).as_dict()


@settings(max_examples=60, deadline=None)
@given(data=st.data(), gt=label_maps)
def test_statistics_from_crops_equal_whole_volume(data, gt) -> None:
    pred = data.draw(arrays(np.uint8, gt.shape, elements=st.sampled_from([0, 0, 1, 2])))
    gt, pred = np.asfortranarray(gt), np.asfortranarray(pred)
    cropped = _from_crops(gt, pred, voxel_volume_mm3=2.0)
    assert cropped == dict(ref_case(gt, pred), voxel_volume_mm3=2.0)


def _blocks(n: int) -> st.SearchStrategy[list[tuple[int, ...]]]:
    """Up to ``n`` labelled blocks (label, x0, x1, y0, y1, z0, z1 in a 12x9x7 grid)."""
    block = st.tuples(
        st.sampled_from([1, 2, 2]),
        *(st.integers(0, d - 1) for d in (12, 9, 7)),
        *(st.integers(1, 4) for _ in range(3)),
    )
    return st.lists(block, max_size=n)


def _paint(blocks: list[tuple[int, ...]]) -> np.ndarray:
    a = np.zeros((12, 9, 7), dtype=np.uint8, order="F")
    for label, x, y, z, dx, dy, dz in blocks:
        a[x : x + dx, y : y + dy, z : z + dz] = label
    return a


@settings(max_examples=150, deadline=None)
@given(gt_blocks=_blocks(4), pred_blocks=_blocks(5), connectivity=st.sampled_from([6, 26]))
def test_crops_apart_nested_or_overlapping_equal_the_reference(
    gt_blocks, pred_blocks, connectivity
) -> None:
    """Sparse masks, so the two crops lie apart, overlap in part, or one holds the
    other: each side is counted on its own crop and compared only where the crops
    overlap, which must give the whole-volume reference's counts."""
    gt, pred = _paint(gt_blocks), _paint(pred_blocks)
    got = _from_crops(gt, pred, voxel_volume_mm3=1.0, connectivity=connectivity)
    assert got == dict(ref_case(gt, pred, connectivity=connectivity), voxel_volume_mm3=1.0)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    gt=label_maps,
    chunk=st.integers(1, 40),
)
def test_chunked_counting_equals_one_pass(data, gt, chunk) -> None:
    """Voxel and lesion counts are taken in chunks (``_CHUNK`` elements, so that a
    whole-volume crop never gets an 8-byte copy); with chunks of a few voxels the
    statistics still equal the reference's, in Fortran and C order alike."""
    import evaluator.metrics.segmentation as seg

    pred = data.draw(arrays(np.uint8, gt.shape, elements=st.sampled_from([0, 0, 1, 2, 2])))
    slow = dict(ref_case(gt, pred), voxel_volume_mm3=1.0)
    saved = seg._CHUNK
    try:
        seg._CHUNK = chunk
        for order in ("F", "C"):
            g, p = np.asarray(gt, order=order), np.asarray(pred, order=order)
            assert case_statistics(g, p, voxel_volume_mm3=1.0).as_dict() == slow
        labels = np.asfortranarray(gt.astype(np.uint32) * 7)
        assert np.array_equal(seg._bincount(labels, 3), np.bincount(labels.ravel("K"), minlength=3))
    finally:
        seg._CHUNK = saved


@pytest.mark.parametrize("seed", range(25))
def test_graph_components_equal_scipy_csgraph(seed: int) -> None:
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from evaluator.metrics.segmentation import graph_components

    rng = np.random.default_rng(seed)
    n_p, n_g = int(rng.integers(1, 30)), int(rng.integers(1, 30))
    n_edges = int(rng.integers(1, 3 * (n_p + n_g)))
    a = rng.integers(0, n_p, n_edges)
    b = rng.integers(0, n_g, n_edges) + n_p
    n = n_p + n_g
    graph = coo_matrix((np.ones(n_edges, dtype=np.int8), (a, b)), shape=(n, n)).tocsr()
    want_n, want = connected_components(graph, directed=False)
    got_n, got = graph_components(n, a, b)
    assert got_n == want_n
    assert got.tolist() == want.tolist()


def test_scoring_task1_does_not_import_scipy_subpackages() -> None:
    import subprocess
    import sys

    # nibabel imports the scipy package itself (its version), none of its subpackages
    heavy = ("scipy.sparse", "scipy.linalg", "scipy.stats", "scipy.ndimage", "scipy.special")
    code = (
        "import sys, evaluator.scoring, evaluator.metrics.segmentation; "
        f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
