"""The MetaImage reader: identical arrays and geometry to SimpleITK, the NIfTI reader's
guarantees (bounded inflation, checksums, labels), and every refusal with its message."""

from __future__ import annotations

import io
import tracemalloc
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from evaluator.errors import FormatError, LabelError, LimitError
from evaluator.io.members import MemberStream
from evaluator.io.nifti import read_header, read_label_crop, read_label_map
from evaluator.io.nifti_header import check_geometry

CAP = 10_000_000
F = np.diag([-1.0, -1.0, 1.0])


def rotation_z_flip(degrees: float = 10.0) -> np.ndarray:
    """A rotation about z followed by a flip of z (LPS direction, row-major)."""
    t = np.deg2rad(degrees)
    r = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    return r @ np.diag([1.0, 1.0, -1.0])


def sitk_image(
    arr: np.ndarray,
    *,
    spacing=(0.9, 0.8, 2.5),
    origin=(-10.5, 20.25, 3.0),
    direction: np.ndarray | None = None,
) -> sitk.Image:
    """``arr`` in the project's index order (x, y, z) as a SimpleITK image."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    d = rotation_z_flip() if direction is None else direction
    img.SetDirection(tuple(float(v) for v in d.ravel()))
    return img


def write_mha(path: Path, arr: np.ndarray, *, compressed: bool = True, **geometry) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk_image(arr, **geometry), str(path), useCompression=compressed)
    return path


def mha_from_affine(path: Path, arr: np.ndarray, affine: np.ndarray, *, compressed=True) -> Path:
    """A MetaImage of ``arr`` with the RAS ``affine`` (GC-CONTRACT section 4's formulas)."""
    sp = np.linalg.norm(affine[:3, :3], axis=0)
    return write_mha(
        path,
        arr,
        compressed=compressed,
        spacing=sp,
        origin=F @ affine[:3, 3],
        direction=F @ affine[:3, :3] / sp,
    )


def sitk_ras(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """SimpleITK's array (project order) and RAS affine of a file."""
    img = sitk.ReadImage(str(path))
    a = np.eye(4)
    d = np.array(img.GetDirection()).reshape(3, 3)
    a[:3, :3] = F @ d @ np.diag(img.GetSpacing())
    a[:3, 3] = F @ np.array(img.GetOrigin())
    return sitk.GetArrayFromImage(img).transpose(2, 1, 0), a


def sample(shape=(7, 5, 3), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(shape) < 0.3).astype(np.uint8) * rng.integers(1, 3, shape).astype(np.uint8)


def header_text(shape, element="MET_UCHAR", **fields) -> bytes:
    """A MetaImage header written by hand (SimpleITK's key order); ``fields`` override
    or add keys (None drops one)."""
    keys = {
        "ObjectType": "Image",
        "NDims": "3",
        "BinaryData": "True",
        "BinaryDataByteOrderMSB": "False",
        "CompressedData": "False",
        "TransformMatrix": "1 0 0 0 1 0 0 0 1",
        "Offset": "0 0 0",
        "ElementSpacing": "1 1 1",
        "DimSize": " ".join(str(s) for s in shape),
        "ElementType": element,
    }
    keys.update(fields)
    keys.setdefault("ElementDataFile", "LOCAL")
    keys["ElementDataFile"] = keys.pop("ElementDataFile")  # always last
    return "".join(f"{k} = {v}\n" for k, v in keys.items() if v is not None).encode()


def hand_mha(path: Path, arr: np.ndarray, dtype=np.uint8, **fields) -> Path:
    element = {
        "u1": "MET_UCHAR",
        "i1": "MET_CHAR",
        "i2": "MET_SHORT",
        "u2": "MET_USHORT",
        "i4": "MET_INT",
        "u4": "MET_UINT",
        "f4": "MET_FLOAT",
    }
    dt = np.dtype(dtype)
    data = np.asarray(arr, dtype=dt).tobytes(order="F")
    msb = dt.byteorder == ">"
    fields.setdefault("BinaryDataByteOrderMSB", str(msb))
    if fields.get("CompressedData") == "True":
        data = zlib.compress(data)
        fields.setdefault("CompressedDataSize", str(len(data)))
    head = header_text(arr.shape, element[dt.str[1:]], **fields)
    path.write_bytes(head + data)
    return path


# --- agreement with SimpleITK ----------------------------------------------------------------


@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("shape", [(7, 5, 3), (1, 1, 1), (37, 23, 19)])
def test_arrays_and_geometry_equal_simpleitk(tmp_path, compressed, shape) -> None:
    arr = sample(shape, seed=sum(shape))
    p = write_mha(tmp_path / "a.mha", arr, compressed=compressed)
    ref, affine = sitk_ras(p)
    lm = read_label_map(p, max_voxels=CAP)
    assert lm.array.dtype == np.uint8
    assert np.array_equal(lm.array, ref) and np.array_equal(lm.array, arr)
    assert np.allclose(lm.affine, affine, rtol=0, atol=1e-12)
    assert lm.header.zooms == pytest.approx((0.9, 0.8, 2.5))
    assert lm.header.compression == ("zlib" if compressed else "none")
    c = read_label_crop(p, max_voxels=CAP)
    assert c.bbox == lm.bbox and np.array_equal(c.full(), ref)


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.float32]
)
@pytest.mark.parametrize("compressed", [True, False])
def test_element_types_equal_simpleitk(tmp_path, dtype, compressed) -> None:
    arr = sample((13, 6, 5), seed=3).astype(dtype)
    p = write_mha(tmp_path / "t.mha", arr, compressed=compressed)
    ref, affine = sitk_ras(p)
    lm = read_label_map(p, max_voxels=CAP)
    assert lm.header.dtype == np.dtype(dtype)
    assert np.array_equal(lm.array, ref.astype(np.uint8))
    assert np.allclose(lm.affine, affine, rtol=0, atol=1e-12)
    assert np.array_equal(read_label_crop(p, max_voxels=CAP).full(), lm.array)


@pytest.mark.parametrize(
    "direction",
    [
        np.eye(3),
        np.diag([-1.0, 1.0, 1.0]),
        rotation_z_flip(10.0),
        rotation_z_flip(-35.0) @ np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]]),  # axes swapped
    ],
)
def test_directions_equal_simpleitk(tmp_path, direction) -> None:
    arr = sample((9, 8, 4), seed=7)
    p = write_mha(tmp_path / "d.mha", arr, direction=direction, origin=(100.25, -3.5, -420.3))
    ref, affine = sitk_ras(p)
    header = read_header(p, max_voxels=CAP)
    assert np.allclose(header.affine, affine, rtol=0, atol=1e-12)
    assert np.array_equal(read_label_map(p, max_voxels=CAP).array, ref)


@pytest.mark.parametrize("compressed", ["True", "False"])
@pytest.mark.parametrize("dtype", [">i2", ">u2", ">i4", ">f4"])
def test_msb_files_equal_simpleitk(tmp_path, compressed, dtype) -> None:
    arr = sample((11, 7, 5), seed=2)
    p = hand_mha(tmp_path / "msb.mha", arr, dtype, CompressedData=compressed)
    ref, _ = sitk_ras(p)
    assert np.array_equal(ref, arr)  # SimpleITK reads the hand-written header as meant
    lm = read_label_map(p, max_voxels=CAP)
    assert lm.header.dtype == np.dtype(dtype)
    assert np.array_equal(lm.array, ref)
    assert np.array_equal(read_label_crop(p, max_voxels=CAP).full(), ref)


def test_header_without_compressed_size_and_with_crlf_lines(tmp_path) -> None:
    arr = sample((10, 9, 8), seed=4)
    # SimpleITK 2.5 misreads this file ("Uncompress failed"): the written array is the reference
    p = hand_mha(tmp_path / "x.mha", arr, CompressedData="True", CompressedDataSize=None)
    assert np.array_equal(read_label_map(p, max_voxels=CAP).array, arr)
    assert np.array_equal(read_label_crop(p, max_voxels=CAP).full(), arr)
    head, _, data = p.read_bytes().partition(b"ElementDataFile = LOCAL\n")
    p.write_bytes(head.replace(b"\n", b"\r\n") + b"ElementDataFile = LOCAL\r\n" + data)
    assert np.array_equal(read_label_map(p, max_voxels=CAP).array, arr)


@pytest.mark.parametrize("compressed", [True, False])
def test_mhd_with_its_data_file(tmp_path, compressed) -> None:
    arr = sample((12, 10, 6), seed=9)
    p = write_mha(tmp_path / "CHUM-001.mhd", arr, compressed=compressed)
    data_files = sorted(q.name for q in tmp_path.iterdir() if q.suffix != ".mhd")
    assert data_files == ["CHUM-001.zraw" if compressed else "CHUM-001.raw"]
    ref, affine = sitk_ras(p)
    lm = read_label_map(p, max_voxels=CAP)
    assert np.array_equal(lm.array, ref)
    assert np.allclose(lm.affine, affine, rtol=0, atol=1e-12)
    assert lm.header.data_file == data_files[0]
    assert np.array_equal(read_label_crop(p, max_voxels=CAP).full(), ref)
    # a file of a folder (as the scorer opens it) finds its data file too
    with MemberStream(open(p, "rb"), "sub", p.name, path=p) as member:
        assert np.array_equal(read_label_crop(member, max_voxels=CAP, name=p.name).full(), ref)


def test_mhd_refused_in_an_archive_and_without_its_data_file(tmp_path) -> None:
    p = write_mha(tmp_path / "CHUM-001.mhd", sample(), compressed=False)
    with pytest.raises(FormatError, match=r"cannot be read from an archive.*as one \.mha file"):
        read_label_map(io.BytesIO(p.read_bytes()), max_voxels=CAP, name="CHUM-001.mhd")
    (tmp_path / "CHUM-001.raw").unlink()
    with pytest.raises(FormatError, match=r"names 'CHUM-001.raw', which is not a file beside it"):
        read_label_map(p, max_voxels=CAP)


# --- geometry: MHA and NIfTI of one image ------------------------------------------------------


@pytest.mark.parametrize("compressed", [True, False])
def test_mha_and_nifti_of_one_image_have_one_affine(tmp_path, compressed) -> None:
    """An image saved as NIfTI by nibabel and converted to MHA by SimpleITK: the two
    readers' affines agree within 1e-4 mm (NIfTI stores float32), so the geometry check
    passes at the protocol's tolerance."""
    arr = sample((16, 12, 9), seed=1)
    affine = np.eye(4)
    affine[:3, :3] = F @ rotation_z_flip(10.0) @ np.diag([0.9765625, 0.9765625, 3.27])
    affine[:3, 3] = (-250.1, -180.3, -420.3)
    nii = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(arr, affine), nii)
    mha = tmp_path / "x.mha"
    sitk.WriteImage(sitk.ReadImage(str(nii)), str(mha), useCompression=compressed)
    h_nii = read_header(nii, max_voxels=CAP)
    h_mha = read_header(mha, max_voxels=CAP)
    assert np.allclose(h_nii.affine, h_mha.affine, rtol=0, atol=1e-4)
    # pixdim times the sform's unit columns (ITK's reading) vs nibabel's sform: float32 apart
    assert np.allclose(h_nii.affine, nib.load(nii).affine, rtol=0, atol=1e-6)
    assert check_geometry(h_mha, h_nii, "x.mha", atol=1e-3) is None
    assert np.array_equal(read_label_map(mha, max_voxels=CAP).array, arr)


# --- the NIfTI reader's guarantees -------------------------------------------------------------


def test_label_values_refused_with_the_nifti_messages(tmp_path) -> None:
    arr = sample((8, 8, 8)).astype(np.int16)
    arr[4, 4, 4] = 3
    arr[0, 0, 0] = -1
    p = write_mha(tmp_path / "l3.mha", arr)
    with pytest.raises(LabelError, match=r"holds label value\(s\) -1, 3; only 0 \(background\)"):
        read_label_map(p, max_voxels=CAP)
    with pytest.raises(LabelError, match=r"holds label value\(s\) -1, 3"):
        read_label_crop(p, max_voxels=CAP)
    f = sample((8, 8, 8)).astype(np.float32)
    f[1, 2, 3] = 0.5
    p = write_mha(tmp_path / "f.mha", f)
    with pytest.raises(FormatError, match=r"float and holds non-integer values \(0.5\)"):
        read_label_crop(p, max_voxels=CAP)


def test_huge_declared_size_refused_before_allocation(tmp_path) -> None:
    """10^12 voxels declared in a 200-byte file: refused from the header, nothing big
    allocated."""
    head = (
        b"NDims = 3\nDimSize = 10000 10000 10000\nElementType = MET_UCHAR\nBinaryData = True\n"
        b"CompressedData = True\nElementDataFile = LOCAL\n"
    )
    p = tmp_path / "huge.mha"
    p.write_bytes(head + zlib.compress(b"\0" * 100)[: 200 - len(head)])
    assert len(p.read_bytes()) <= 200
    tracemalloc.start()
    try:
        with pytest.raises(
            LimitError, match=r"declares 10000x10000x10000 = 1,000,000,000,000 voxels, over"
        ):
            read_label_crop(p, max_voxels=CAP)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def _compressed(tmp_path: Path, arr: np.ndarray | None = None) -> tuple[Path, bytes, bytes]:
    arr = sample((40, 30, 20), seed=5) if arr is None else arr
    p = write_mha(tmp_path / "z.mha", arr, compressed=True)
    head, sep, data = p.read_bytes().partition(b"ElementDataFile = LOCAL\n")
    return p, head + sep, data


def _both_readers_refuse(p: Path, error, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        read_label_map(p, max_voxels=CAP)
    with pytest.raises(error, match=pattern):
        read_label_crop(p, max_voxels=CAP)


def test_truncated_data(tmp_path) -> None:
    p, head, data = _compressed(tmp_path)
    p.write_bytes(head + data[: len(data) // 2])
    _both_readers_refuse(p, FormatError, "CompressedDataSize|truncated")
    size = f"CompressedDataSize = {len(data)}\n".encode()
    p.write_bytes(head.replace(size, b"") + data[: len(data) // 2])
    _both_readers_refuse(p, FormatError, "the file is truncated")
    p.write_bytes(head.replace(size, b"") + data[:-2])  # the Adler-32 cut short
    _both_readers_refuse(p, FormatError, r"stops before its end \(the Adler-32 checksum\)")
    raw = write_mha(tmp_path / "r.mha", sample((40, 30, 20)), compressed=False)
    raw.write_bytes(raw.read_bytes()[:-100])
    _both_readers_refuse(raw, FormatError, "the file is truncated: the header declares 24,000")


def test_corrupt_zlib_data(tmp_path) -> None:
    p, head, data = _compressed(tmp_path)
    bad = bytearray(data)
    bad[10:40] = b"\xff" * 30
    p.write_bytes(head + bytes(bad))
    _both_readers_refuse(p, FormatError, "zlib-compressed voxel data is corrupt")


def test_adler32_catches_corruption_that_inflates_to_valid_labels(tmp_path) -> None:
    """Stored (level 0) deflate blocks hold the voxels as they are: a flipped byte
    inflates to other valid labels; zlib's Adler-32 must refuse it."""
    arr = np.zeros((16, 16, 16), np.uint8)
    data = bytearray(zlib.compress(arr.tobytes(order="F"), 0))
    data[len(data) // 2] ^= 0x01
    head = header_text(arr.shape, CompressedData="True", CompressedDataSize=str(len(data)))
    p = tmp_path / "flip.mha"
    p.write_bytes(head + bytes(data))
    _both_readers_refuse(p, FormatError, "incorrect data check")


def test_trailing_data_and_compressed_size_mismatch(tmp_path) -> None:
    p, head, data = _compressed(tmp_path)
    size = f"CompressedDataSize = {len(data)}\n".encode()
    unsized = head.replace(size, b"")
    p.write_bytes(unsized + data + b"garbage")
    _both_readers_refuse(p, FormatError, "trailing data after the end of the zlib stream")
    p.write_bytes(head + data + b"garbage")
    _both_readers_refuse(p, FormatError, r"more than the \d[\d,]* bytes of compressed data")
    p.write_bytes(head.replace(size, f"CompressedDataSize = {len(data) + 5}\n".encode()) + data)
    _both_readers_refuse(
        p, FormatError, rf"CompressedDataSize = {len(data) + 5:,}, the zlib stream is {len(data):,}"
    )
    p.write_bytes(head.replace(size, f"CompressedDataSize = {len(data) - 5}\n".encode()) + data)
    _both_readers_refuse(p, FormatError, "CompressedDataSize")
    # more voxel data in the stream than DimSize declares
    big = zlib.compress(bytes(40 * 30 * 20 + 1))
    p.write_bytes(unsized + big)
    _both_readers_refuse(p, FormatError, "the zlib stream goes on after the 24,000 bytes")
    raw = write_mha(tmp_path / "r.mha", sample((4, 4, 4)), compressed=False)
    raw.write_bytes(raw.read_bytes() + b"\0")
    _both_readers_refuse(raw, FormatError, "holds more data than its header declares")


def test_empty_deflate_blocks_cannot_keep_the_reader_busy(tmp_path) -> None:
    head = header_text((8, 8, 8), CompressedData="True")
    p = tmp_path / "empty.mha"
    p.write_bytes(head + b"\x78\x01" + b"\x00\x00\x00\xff\xff" * (1 << 20))
    _both_readers_refuse(p, FormatError, "longer than any encoding of the data")


# --- header refusals ---------------------------------------------------------------------------

_BAD_HEADERS = [
    (dict(NDims="2"), r"NDims is '2', expected 3"),
    (dict(NDims="4", DimSize="5 5 5 2"), r"NDims is '4', expected 3"),
    (dict(DimSize="5 5"), r"DimSize is '5 5', expected three positive integers"),
    (dict(DimSize="5 0 5"), r"DimSize is '5 0 5'"),
    (dict(ElementNumberOfChannels="3"), r"ElementNumberOfChannels is '3', expected 1"),
    (dict(ObjectType="Mesh"), r"ObjectType is 'Mesh', expected 'Image'"),
    (dict(ElementType="MET_STRING"), r"ElementType is MET_STRING, expected an integer type"),
    (dict(ElementType=None), r"ElementType is missing"),
    (dict(BinaryData="False"), r"ASCII voxel data is not read"),
    (dict(HeaderSize="-1"), r"HeaderSize is '-1', expected 0 or absent"),
    (dict(CompressedData="maybe"), r"CompressedData is 'maybe', expected True or False"),
    (dict(ElementSpacing="1 0 1"), r"ElementSpacing must be three positive numbers"),
    (dict(ElementSpacing="1e300 1e300 1"), r"ElementSpacing must be three positive numbers"),
    (dict(Offset="0 nan 0"), r"Offset is '0 nan 0', expected 3 finite numbers"),
    (dict(TransformMatrix="1 0 0 0 1 0 0 0 0"), r"TransformMatrix .* is singular"),
    (dict(ElementDataFile="../x.raw"), r"ElementDataFile is '../x.raw': only LOCAL"),
    (dict(ElementDataFile="/tmp/x.raw"), r"ElementDataFile is '/tmp/x.raw'"),
    (dict(ElementDataFile="LIST"), r"ElementDataFile is 'LIST'"),
    (dict(ElementDataFile="x%03d.raw 1 3 1"), r"no LIST or file pattern"),
]


@pytest.mark.parametrize("fields,pattern", _BAD_HEADERS)
def test_header_refusals(tmp_path, fields, pattern) -> None:
    p = tmp_path / "bad.mha"
    p.write_bytes(header_text((5, 5, 5), **fields) + bytes(125))
    with pytest.raises(FormatError, match=pattern):
        read_header(p, max_voxels=CAP)
    with pytest.raises(FormatError, match=pattern):
        read_label_crop(p, max_voxels=CAP)


def test_dimensions_beyond_any_integer_type_are_a_limit(tmp_path) -> None:
    p = tmp_path / "big.mha"
    p.write_bytes(header_text((99999999999999999999, 2, 2)) + bytes(8))
    with pytest.raises(LimitError, match=r"declares 99999999999999999999x2x2 = 399,999"):
        read_header(p, max_voxels=CAP)


def test_header_structure_refusals(tmp_path) -> None:
    p = tmp_path / "h.mha"
    p.write_bytes(b"ObjectType = Image\nNDims = 3\n" + b"Comment = x\n" * 6000)
    with pytest.raises(FormatError, match=r"no ElementDataFile line in the first 65,536 bytes"):
        read_header(p, max_voxels=CAP)
    p.write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\n")
    with pytest.raises(FormatError, match="ends inside its MetaImage header"):
        read_header(p, max_voxels=CAP)
    p.write_bytes(b"ObjectType = Image\nNDims = 3\nNDims = 3\nElementDataFile = LOCAL\n")
    with pytest.raises(FormatError, match="sets NDims twice"):
        read_header(p, max_voxels=CAP)
    p.write_bytes(b"ObjectType = Image\njust words\nElementDataFile = LOCAL\n")
    with pytest.raises(FormatError, match=r"line 'just words' is not 'Key = Value'"):
        read_header(p, max_voxels=CAP)


def test_names_and_contents_must_agree(tmp_path) -> None:
    mha = write_mha(tmp_path / "a.mha", sample())
    named_nii = tmp_path / "a.nii.gz"
    named_nii.write_bytes(mha.read_bytes())
    with pytest.raises(FormatError, match="named as a NIfTI image but holds a MetaImage"):
        read_header(named_nii, max_voxels=CAP)
    nii = tmp_path / "b.nii.gz"
    nib.save(nib.Nifti1Image(sample(), np.eye(4)), nii)
    named_mha = tmp_path / "b.mha"
    named_mha.write_bytes(nii.read_bytes())
    with pytest.raises(FormatError, match="named as a MetaImage but does not start with"):
        read_header(named_mha, max_voxels=CAP)


def test_key_synonyms_and_defaults_as_simpleitk_reads_them(tmp_path) -> None:
    """No ObjectType line, Position/Orientation for Offset/TransformMatrix, ElementSize
    standing in for ElementSpacing: the geometry SimpleITK reads."""
    arr = sample((3, 4, 2), seed=6)
    p = tmp_path / "syn.mha"
    p.write_bytes(
        b"NDims = 3\nBinaryData = True\nElementSize = 2 3 4\nPosition = 1 2 3\n"
        b"Orientation = 0 1 0 1 0 0 0 0 1\nDimSize = 3 4 2\nElementType = MET_UCHAR\n"
        b"ElementDataFile = LOCAL\n" + arr.tobytes(order="F")
    )
    ref, affine = sitk_ras(p)
    lm = read_label_map(p, max_voxels=CAP)
    assert np.array_equal(lm.array, ref) and np.array_equal(ref, arr)
    assert np.allclose(lm.affine, affine, rtol=0, atol=1e-12)
    assert lm.header.zooms == (2.0, 3.0, 4.0)
