"""The NIfTI reader: identical arrays to nibabel, and every refusal with its message."""

from __future__ import annotations

import gzip
import struct

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluator.boxes import foreground_bbox
from evaluator.errors import FormatError, GeometryError, LabelError, LimitError
from evaluator.io.nifti import read_header, read_label_crop, read_label_map
from evaluator.io.nifti_header import check_geometry
from tests.builders import affine_for, nifti_bytes, write_nifti

CAP = 10_000_000


def sample(shape=(11, 9, 7), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(shape) < 0.2).astype(np.uint8) * rng.integers(1, 3, shape).astype(np.uint8)


@pytest.mark.parametrize(
    "name,kw",
    [
        ("a.nii.gz", dict(level=1)),
        ("b.nii.gz", dict(level=9)),
        ("c.nii", dict(level=None)),
        ("d.nii.gz", dict(dtype=np.dtype(">i2"))),
        ("e.nii.gz", dict(dtype=np.float32)),
        ("f.nii.gz", dict(dtype=np.int64)),
        ("g.nii.gz", dict(nifti2=True)),
        ("h.nii.gz", dict(dtype=np.uint16)),
    ],
)
def test_arrays_equal_nibabel(tmp_path, name, kw) -> None:
    arr = sample()
    p = write_nifti(tmp_path / name, arr, affine_for((0.98, 0.98, 3.27), (1, 2, 3)), **kw)
    lm = read_label_map(p, max_voxels=CAP)
    ref = np.asanyarray(nib.load(p).dataobj)
    assert lm.array.dtype == np.uint8
    assert np.array_equal(lm.array, ref)
    assert np.allclose(lm.affine, nib.load(p).affine)
    assert lm.header.zooms == pytest.approx(nib.load(p).header.get_zooms())


def test_multimember_gzip_is_read_whole(tmp_path) -> None:
    arr = sample()
    raw = nifti_bytes(arr, level=None)
    p = tmp_path / "m.nii.gz"
    p.write_bytes(gzip.compress(raw[:1000], mtime=0) + gzip.compress(raw[1000:], mtime=0))
    assert np.array_equal(read_label_map(p, max_voxels=CAP).array, arr)


def test_scaled_data_is_applied_like_nibabel(tmp_path) -> None:
    # raw 0/1 with scl_slope 2 -> labels 0/2, as nibabel's dataobj reports them
    raw = (sample() > 0).astype(np.uint8)
    p = tmp_path / "s.nii.gz"
    p.write_bytes(nifti_bytes(raw, slope=2.0, level=1))
    lm = read_label_map(p, max_voxels=CAP)
    assert np.array_equal(lm.array, np.asanyarray(nib.load(p).dataobj))
    assert set(np.unique(lm.array)) <= {0, 2}


def test_trailing_singleton_dimension_is_3d(tmp_path) -> None:
    arr = sample()[..., None]
    p = write_nifti(tmp_path / "t.nii.gz", arr)
    assert read_label_map(p, max_voxels=CAP).shape == arr.shape[:3]


def test_bbox_matches_nonzero() -> None:
    arr = np.zeros((40, 30, 20), np.uint8, order="F")
    assert foreground_bbox(arr) is None
    arr[3:7, 10:11, 5:19] = 1
    arr[20, 2, 8] = 2
    assert foreground_bbox(arr) == ((3, 21), (2, 11), (5, 19))
    odd = np.zeros((5, 3, 7), np.uint8, order="F")  # rows not a multiple of 8 bytes
    odd[4, 2, 6] = 1
    assert foreground_bbox(odd) == ((4, 5), (2, 3), (6, 7))


# --- refusals ------------------------------------------------------------------------------


def test_huge_declared_size_refused_before_allocation(tmp_path) -> None:
    raw = bytearray(nifti_bytes(np.zeros((2, 2, 2), np.uint8), level=None))
    struct.pack_into("<8h", raw, 40, 3, 30000, 30000, 30000, 1, 1, 1, 1)  # dim[]
    p = tmp_path / "huge.nii.gz"
    p.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(LimitError, match=r"declares 30000x30000x30000 = 27,000,000,000,000 voxels"):
        read_label_map(p, max_voxels=CAP)
    with pytest.raises(LimitError):
        read_header(p, max_voxels=CAP)


def test_truncated_gzip(tmp_path) -> None:
    data = nifti_bytes(sample((40, 40, 40)), level=1)
    p = tmp_path / "trunc.nii.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="truncated"):
        read_label_map(p, max_voxels=CAP)


def test_corrupt_gzip(tmp_path) -> None:
    data = bytearray(nifti_bytes(sample((40, 40, 40)), level=1))
    data[30:60] = b"\xff" * 30
    p = tmp_path / "bad.nii.gz"
    p.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="corrupt"):
        read_label_map(p, max_voxels=CAP)


def test_wrong_magic(tmp_path) -> None:
    raw = bytearray(nifti_bytes(sample(), level=None))
    raw[344:348] = b"xyz\0"
    p = tmp_path / "magic.nii"
    p.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="wrong NIfTI magic"):
        read_label_map(p, max_voxels=CAP)
    p.write_bytes(b"this is not an image at all" * 20)
    with pytest.raises(FormatError, match="not a NIfTI file"):
        read_label_map(p, max_voxels=CAP)


def test_2d_and_4d_refused(tmp_path) -> None:
    p2 = write_nifti(tmp_path / "flat.nii.gz", np.zeros((5, 5), np.uint8))
    with pytest.raises(FormatError, match=r"2-D with shape \(5, 5\); a 3-D label map"):
        read_label_map(p2, max_voxels=CAP)
    p4 = write_nifti(tmp_path / "four.nii.gz", np.zeros((5, 5, 5, 2), np.uint8))
    with pytest.raises(FormatError, match=r"4-D with shape \(5, 5, 5, 2\)"):
        read_label_map(p4, max_voxels=CAP)


def test_float_non_integer_refused(tmp_path) -> None:
    arr = sample().astype(np.float32)
    arr[1, 1, 1] = 0.5
    p = write_nifti(tmp_path / "f.nii.gz", arr)
    with pytest.raises(FormatError, match=r"float and holds non-integer values \(0.5\)"):
        read_label_map(p, max_voxels=CAP)


def test_nan_refused(tmp_path) -> None:
    arr = sample().astype(np.float32)
    arr[2, 2, 2] = np.nan
    p = write_nifti(tmp_path / "nan.nii.gz", arr)
    with pytest.raises(FormatError, match="NaN or infinite"):
        read_label_map(p, max_voxels=CAP)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_label_3_refused(tmp_path, dtype) -> None:
    arr = sample().astype(dtype)
    arr[4, 4, 4] = 3
    p = write_nifti(tmp_path / "l3.nii.gz", arr)
    with pytest.raises(
        LabelError,
        match=r"holds label value\(s\) 3; only 0 \(background\), 1 \(GTVp\) and 2 \(GTVn\)",
    ):
        read_label_map(p, max_voxels=CAP)


def test_negative_label_refused(tmp_path) -> None:
    arr = sample().astype(np.int16)
    arr[0, 0, 0] = -1
    p = write_nifti(tmp_path / "neg.nii.gz", arr)
    with pytest.raises(LabelError, match="-1"):
        read_label_map(p, max_voxels=CAP)


def test_geometry_messages(tmp_path) -> None:
    arr = sample()
    gt = read_header(
        write_nifti(tmp_path / "gt.nii.gz", arr, affine_for((1, 1, 3))), max_voxels=CAP
    )
    other = read_header(write_nifti(tmp_path / "s.nii.gz", sample((11, 9, 8))), max_voxels=CAP)
    err = check_geometry(other, gt, "CHUM-012.nii.gz", atol=1e-3)
    assert isinstance(err, GeometryError)
    assert err.message == (
        "shape (11, 9, 8) does not match the CT (11, 9, 7); predictions must be on the CT "
        "grid, they are not resampled"
    )
    flipped = affine_for((1, 1, 3))
    flipped[0, 0] = -1
    f = read_header(write_nifti(tmp_path / "f.nii.gz", arr, flipped), max_voxels=CAP)
    err = check_geometry(f, gt, "x.nii.gz", atol=1e-3)
    assert (
        err is not None
        and "orientation/spacing" in err.message
        and "tolerance of 0.001 mm" in err.message
    )
    shifted = read_header(
        write_nifti(tmp_path / "o.nii.gz", arr, affine_for((1, 1, 3), (0, 0, 5))), max_voxels=CAP
    )
    err = check_geometry(shifted, gt, "x.nii.gz", atol=1e-3)
    assert err is not None and "origin" in err.message and "found 5, expected 0" in err.message
    # a float32 round trip of the affine stays within the tolerance
    a = affine_for((0.9765625, 0.9765625, 3.27), (-250.1, -180.3, -400.7))
    gt2 = read_header(write_nifti(tmp_path / "g2.nii.gz", arr, a), max_voxels=CAP)
    rt = read_header(
        write_nifti(tmp_path / "r2.nii.gz", arr, a.astype(np.float32).astype(np.float64)),
        max_voxels=CAP,
    )
    assert check_geometry(rt, gt2, "x.nii.gz", atol=1e-3) is None


@pytest.mark.parametrize("dtype", [np.uint8, np.dtype(">i2"), np.float64])
def test_large_volume_across_inflate_steps(tmp_path, dtype) -> None:
    # several 256 KiB inflate steps, and a member boundary inside the voxel data
    arr = sample((130, 97, 41), seed=5).astype(dtype)
    raw = nifti_bytes(arr, level=None)
    p = tmp_path / "big.nii.gz"
    cut = 300_001
    p.write_bytes(gzip.compress(raw[:cut], 6, mtime=0) + gzip.compress(raw[cut:], 1, mtime=0))
    assert np.array_equal(
        read_label_map(p, max_voxels=CAP).array, np.asanyarray(nib.load(p).dataobj)
    )


# --- the streaming crop reader agrees with the full reader -----------------------------------


def _variants(tmp_path):
    arr = sample((37, 23, 19), seed=11)
    arr[:, :, :4] = 0  # empty slices before and after the foreground
    arr[:, :, -3:] = 0
    yield "u8", write_nifti(tmp_path / "u8.nii.gz", arr)
    yield "u8-l9", write_nifti(tmp_path / "l9.nii.gz", arr, level=9)
    yield "i16be", write_nifti(tmp_path / "i16.nii.gz", arr.astype(">i2"))
    yield "f32", write_nifti(tmp_path / "f32.nii.gz", arr.astype(np.float32))
    yield "nii", write_nifti(tmp_path / "raw.nii", arr, level=None)
    yield "empty", write_nifti(tmp_path / "empty.nii.gz", np.zeros((8, 9, 10), np.uint8))
    one = np.zeros((8, 9, 10), np.uint8)
    one[7, 8, 9] = 2
    yield "corner", write_nifti(tmp_path / "corner.nii.gz", one)
    raw = nifti_bytes(arr, level=None)
    mm = tmp_path / "mm.nii.gz"
    mm.write_bytes(gzip.compress(raw[:5000], mtime=0) + gzip.compress(raw[5000:], mtime=0))
    yield "multimember", mm
    s = tmp_path / "scaled.nii.gz"
    s.write_bytes(nifti_bytes((arr > 0).astype(np.uint8), slope=2.0, level=1))
    yield "scaled", s


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sx=st.sampled_from([8, 16, 13, 24]),
    sy=st.integers(1, 12),
    sz=st.integers(1, 6),
    dtype=st.sampled_from(["u1", "<i2", "<f4"]),
    boxes=st.lists(
        st.tuples(st.integers(0, 23), st.integers(0, 11), st.integers(0, 5), st.integers(1, 2)),
        max_size=5,
    ),
)
def test_crop_reader_equals_full_reader_on_sparse_masks(tmp_path, sx, sy, sz, dtype, boxes) -> None:
    """Scattered voxels at different rows of different slices (each slice keeps only
    its occupied rows), with row widths that are and are not a multiple of 8 bytes:
    the streaming crop equals the full reader's map."""
    arr = np.zeros((sx, sy, sz), np.uint8)
    for x, y, z, label in boxes:
        arr[x % sx, y % sy, z % sz] = label
    p = write_nifti(tmp_path / "sparse.nii.gz", arr.astype(dtype))
    full = read_label_map(p, max_voxels=CAP)
    c = read_label_crop(p, max_voxels=CAP)
    assert c.bbox == full.bbox
    assert np.array_equal(c.full(), full.array)
    assert np.array_equal(full.array, arr)


def test_crop_reader_equals_full_reader(tmp_path) -> None:
    for label, p in _variants(tmp_path):
        full = read_label_map(p, max_voxels=CAP)
        c = read_label_crop(p, max_voxels=CAP)
        assert c.bbox == full.bbox, label
        assert np.array_equal(c.full(), full.array), label
        if c.crop is not None:
            assert c.crop.flags.f_contiguous


def _bad_files(tmp_path):
    arr = sample((20, 16, 12), seed=3)
    l3 = arr.copy()
    l3[5, 5, 5] = 3
    yield write_nifti(tmp_path / "l3.nii.gz", l3)
    f = arr.astype(np.float32)
    f[1, 2, 3] = 0.5
    yield write_nifti(tmp_path / "frac.nii.gz", f)
    n = arr.astype(np.float32)
    n[2, 2, 2] = np.nan
    yield write_nifti(tmp_path / "nan.nii.gz", n)
    neg = arr.astype(np.int16)
    neg[0, 0, 11] = -4
    yield write_nifti(tmp_path / "neg.nii.gz", neg)
    data = nifti_bytes(arr, level=1)
    t = tmp_path / "trunc.nii.gz"
    t.write_bytes(data[: len(data) // 2])
    yield t
    bad = bytearray(nifti_bytes(sample((40, 40, 40)), level=1))
    bad[30:60] = b"\xff" * 30
    c = tmp_path / "corrupt.nii.gz"
    c.write_bytes(bytes(bad))
    yield c


def test_crop_reader_refuses_with_the_same_messages(tmp_path) -> None:
    for p in _bad_files(tmp_path):
        with pytest.raises(Exception) as full:
            read_label_map(p, max_voxels=CAP)
        with pytest.raises(Exception) as cropped:
            read_label_crop(p, max_voxels=CAP)
        assert type(cropped.value) is type(full.value), p.name
        assert str(cropped.value) == str(full.value), p.name


def test_corruption_that_inflates_to_valid_labels_is_caught_by_the_crc(tmp_path) -> None:
    """Stored (level 0) gzip blocks hold the voxels as they are: one flipped byte there
    still inflates, to a label map with other (valid) labels. The gzip CRC-32 at the end
    of the member must catch it, not score the altered mask."""
    arr = np.zeros((16, 16, 16), np.uint8)
    raw = nifti_bytes(arr, level=None)
    data = bytearray(gzip.compress(raw, compresslevel=0, mtime=0))
    data[len(data) // 2] ^= 0x01  # a 0 voxel becomes a 1 (GTVp)
    path = tmp_path / "flip.nii.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="gzip data is corrupt"):
        read_label_map(path, max_voxels=CAP)
    # trailing data after the member (a second gzip member) is still accepted
    path.write_bytes(gzip.compress(raw, mtime=0) + gzip.compress(b"\0" * 1000, mtime=0))
    assert read_label_map(path, max_voxels=CAP).array.max() == 0


def test_second_gzip_member_right_after_the_voxels_is_never_inflated(tmp_path) -> None:
    """The member holding the voxel data ends exactly with it; what follows (another
    member of 64 MiB of zeros) is not read, and the file is accepted."""
    arr = sample((16, 16, 16))
    raw = nifti_bytes(arr, level=None)
    tail = gzip.compress(bytes(64 << 20), 1, mtime=0)
    path = tmp_path / "tail.nii.gz"
    path.write_bytes(gzip.compress(raw, mtime=0) + tail)
    assert np.array_equal(read_label_crop(path, max_voxels=CAP).full(), arr)
    # and one member going on for more than 1 MiB after the voxel data is refused
    path.write_bytes(gzip.compress(raw + bytes(2 << 20), mtime=0))
    with pytest.raises(FormatError, match="holds more data than its header declares"):
        read_label_crop(path, max_voxels=CAP)
    with pytest.raises(FormatError, match="holds more data than its header declares"):
        read_label_map(path, max_voxels=CAP)


def test_voxel_offset_beyond_the_header_allowance_is_refused(tmp_path) -> None:
    raw = bytearray(nifti_bytes(sample(), level=None))
    struct.pack_into("<f", raw, 108, float(64 << 20))  # vox_offset
    path = tmp_path / "off.nii.gz"
    path.write_bytes(gzip.compress(bytes(raw), mtime=0))
    with pytest.raises(FormatError, match=r"puts the voxel data at byte 67,108,864, beyond"):
        read_label_crop(path, max_voxels=CAP)


def test_empty_deflate_blocks_cannot_keep_the_reader_busy(tmp_path) -> None:
    """A gzip stream of empty stored blocks produces nothing: the reader stops after
    consuming what an encoding of the header could need, not at the end of the file."""
    empty = b"\x00\x00\x00\xff\xff"  # a non-final stored block of length 0
    path = tmp_path / "empty.nii.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + empty * (1 << 20))
    with pytest.raises(FormatError, match="longer than any encoding of the data"):
        read_header(path, max_voxels=CAP)
