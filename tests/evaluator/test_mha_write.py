"""The MetaImage writer: SimpleITK reads its files back bit for bit (voxels, spacing,
origin, direction), and so does the project's own reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from evaluator.io.mha_write import mha_bytes, write_mha
from evaluator.io.nifti import read_image, read_label_map

F = np.diag([-1.0, -1.0, 1.0])


def rotated(degrees: float) -> np.ndarray:
    """A rotation about an oblique axis followed by a z flip (row-major, det -1)."""
    t = np.deg2rad(degrees)
    rz = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    rx = np.array(
        [[1.0, 0.0, 0.0], [0.0, np.cos(t / 3), -np.sin(t / 3)], [0, np.sin(t / 3), np.cos(t / 3)]]
    )
    return rz @ rx @ np.diag([1.0, 1.0, -1.0])


def sample(dtype: str, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        return (rng.standard_normal(shape) * 300.0 - 12.345).astype(np.float32)
    if dtype == "float64":
        return rng.standard_normal(shape) * 1e-3
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


GEOMETRIES = [
    ((0.9765625, 0.9765625, 3.27), (-250.0, -230.5, -700.125), np.eye(3)),
    ((1.1, 0.7, 2.0000001), (12.3456789012345, -0.1, 1e-7), rotated(10.0)),
    ((4.0, 4.0, 5.0), (0.0, 0.0, 0.0), np.diag([-1.0, 1.0, -1.0])),
]


@pytest.mark.parametrize(
    "dtype", ["uint8", "int8", "int16", "uint16", "int32", "uint32", "float32", "float64"]
)
@pytest.mark.parametrize("geometry", range(len(GEOMETRIES)))
def test_simpleitk_reads_it_back_bit_for_bit(tmp_path: Path, dtype: str, geometry: int) -> None:
    spacing, origin, direction = GEOMETRIES[geometry]
    arr = sample(dtype, (7, 5, 3), seed=geometry)
    path = tmp_path / "x.mha"
    write_mha(path, arr, spacing=spacing, origin=origin, direction=direction)
    img = sitk.ReadImage(str(path))
    back = sitk.GetArrayFromImage(img)
    assert back.dtype == arr.dtype
    assert back.shape == (3, 5, 7)
    assert np.array_equal(back.transpose(2, 1, 0), arr)  # NaN-free samples: exact
    assert img.GetSpacing() == tuple(float(s) for s in spacing)
    assert img.GetOrigin() == tuple(float(o) for o in origin)
    assert img.GetDirection() == tuple(float(v) for v in direction.ravel())


def test_float_values_survive_exactly(tmp_path: Path) -> None:
    special = np.array(
        [0.0, -0.0, 1e-45, 3.4028235e38, -420.3, np.pi, np.inf, -np.inf], dtype=np.float32
    )
    arr = np.resize(special, (4, 2, 3)).astype(np.float32)
    arr[0, 0, 0] = np.nan
    path = tmp_path / "f.mha"
    write_mha(path, arr, spacing=(1, 1, 1), origin=(0, 0, 0))
    back = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0)
    assert back.tobytes() == np.ascontiguousarray(arr).tobytes()


def test_big_endian_and_non_contiguous_input(tmp_path: Path) -> None:
    base = sample("int16", (20, 9, 40), seed=4)
    arr = base[::2, :, 5:31].astype(">i2")  # a view, big-endian
    path = tmp_path / "v.mha"
    write_mha(path, arr, spacing=(1, 2, 3), origin=(4, 5, 6))
    back = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0)
    assert back.dtype == np.int16 and np.array_equal(back, arr)


def test_many_slabs(tmp_path: Path) -> None:
    """A volume larger than one compression slab (8 MiB): slabs join in order."""
    arr = np.arange(256 * 256 * 70, dtype=np.int32).reshape(256, 256, 70, order="F")
    path = tmp_path / "big.mha"
    write_mha(path, arr, spacing=(1, 1, 1), origin=(0, 0, 0))
    back = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0)
    assert np.array_equal(back, arr)


def test_project_reader_reads_it(tmp_path: Path) -> None:
    spacing, origin, direction = GEOMETRIES[1]
    labels = np.zeros((9, 8, 6), dtype=np.uint8)
    labels[2:5, 3:6, 1:4] = 1
    labels[6:8, 1:3, 4:6] = 2
    path = tmp_path / "CHUM-001.mha"
    write_mha(path, labels, spacing=spacing, origin=origin, direction=direction)
    lm = read_label_map(path, max_voxels=10**6)
    assert np.array_equal(lm.array, labels)
    # the RAS affine of GC-CONTRACT section 4, computed independently
    expected = np.eye(4)
    expected[:3, :3] = F @ direction @ np.diag(spacing)
    expected[:3, 3] = F @ np.asarray(origin)
    assert np.allclose(lm.affine, expected, rtol=0, atol=1e-12)
    assert lm.header.zooms == spacing
    pet = sample("float32", (9, 8, 6), seed=9)
    write_mha(tmp_path / "pet.mha", pet, spacing=spacing, origin=origin, direction=direction)
    header, arr = read_image(tmp_path / "pet.mha", max_voxels=10**6)
    assert arr.dtype == np.float32 and np.array_equal(arr, pet)
    assert header.compression == "zlib"


def test_header_as_simpleitk_writes_it() -> None:
    data = mha_bytes(np.zeros((2, 3, 4), np.uint8), spacing=(1.0, 0.5, 2.0), origin=(0, 0, 0))
    head = data[: data.index(b"ElementDataFile = LOCAL\n") + 24].decode()
    lines = dict(line.split(" = ") for line in head.splitlines())
    assert lines["DimSize"] == "2 3 4"
    assert lines["ElementSpacing"] == "1 0.5 2"
    assert lines["TransformMatrix"] == "1 0 0 0 1 0 0 0 1"
    assert lines["ElementType"] == "MET_UCHAR"
    assert lines["AnatomicalOrientation"] == "RAI"  # SimpleITK's word for the identity
    assert int(lines["CompressedDataSize"]) == len(data) - len(head)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"spacing": (1, 0, 1), "origin": (0, 0, 0)}, "spacing"),
        ({"spacing": (1, 1, 1), "origin": (0, np.nan, 0)}, "origin"),
        ({"spacing": (1, 1, 1), "origin": (0, 0, 0), "direction": np.zeros((3, 3))}, "singular"),
    ],
)
def test_bad_geometry_is_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mha_bytes(np.zeros((2, 2, 2), np.uint8), **kwargs)


def test_bad_arrays_are_refused() -> None:
    with pytest.raises(ValueError, match="3-D"):
        mha_bytes(np.zeros((2, 2), np.uint8), spacing=(1, 1, 1), origin=(0, 0, 0))
    with pytest.raises(ValueError, match="voxel type"):
        mha_bytes(np.zeros((2, 2, 2), np.complex64), spacing=(1, 1, 1), origin=(0, 0, 0))
