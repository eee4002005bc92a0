"""Test algorithm: the PET thresholded on the CT grid, and a number for Task 2 and 3.

Reads the one .mha under /input/images/pet and /input/images/ct (MetaImage, raw or
zlib-compressed, x fastest) and writes
  /output/images/tumor-lymph-node-segmentation/output.mha  uint8 on the CT geometry:
      1 where PET >= 8, 2 where 4 <= PET < 8, else 0;
  /output/rfs.json        the number of labelled voxels (a float);
  /output/hpv-status.json the labelled fraction of the voxels (0..1).
Python's standard library only.
"""

from __future__ import annotations

import array
import json
import sys
import zlib
from pathlib import Path
from typing import Any

TYPES = {
    "MET_UCHAR": "B",
    "MET_CHAR": "b",
    "MET_USHORT": "H",
    "MET_SHORT": "h",
    "MET_UINT": "I",
    "MET_INT": "i",
    "MET_ULONG_LONG": "Q",
    "MET_LONG_LONG": "q",
    "MET_FLOAT": "f",
    "MET_DOUBLE": "d",
}
GEOMETRY = (
    "TransformMatrix",
    "Offset",
    "CenterOfRotation",
    "AnatomicalOrientation",
    "ElementSpacing",
    "DimSize",
)


def read_mha(path: Path) -> tuple[dict[str, str], array.array[Any]]:
    raw = path.read_bytes()
    header: dict[str, str] = {}
    pos = 0
    while True:
        end = raw.index(b"\n", pos)
        key, _, value = raw[pos:end].decode().partition("=")
        header[key.strip()] = value.strip()
        pos = end + 1
        if key.strip() == "ElementDataFile":
            if header["ElementDataFile"] != "LOCAL":
                sys.exit(f"{path.name}: data in a separate file")
            break
    data = raw[pos:]
    if header.get("CompressedData", "False") == "True":
        data = zlib.decompress(data)
    values = array.array(TYPES[header["ElementType"]])
    values.frombytes(data)
    if header.get("BinaryDataByteOrderMSB", "False") == "True":
        values.byteswap()
    return header, values


def one(folder: str) -> tuple[dict[str, str], array.array[Any]]:
    files = sorted(Path(folder).glob("*.mha"))
    if len(files) != 1:
        sys.exit(f"{folder}: expected one .mha, found {len(files)}")
    return read_mha(files[0])


def main() -> None:
    ct, _ = one("/input/images/ct")
    pet_header, pet = one("/input/images/pet")
    if pet_header["DimSize"] != ct["DimSize"]:
        sys.exit(f"PET {pet_header['DimSize']} and CT {ct['DimSize']} grids differ")
    labels = bytes(1 if v >= 8 else 2 if v >= 4 else 0 for v in pet)
    lines = [
        "ObjectType = Image",
        "NDims = 3",
        "BinaryData = True",
        "BinaryDataByteOrderMSB = False",
        "CompressedData = True",
    ]
    packed = zlib.compress(labels, 1)
    lines.append(f"CompressedDataSize = {len(packed)}")
    lines += [f"{key} = {ct[key]}" for key in GEOMETRY if key in ct]
    lines += ["ElementType = MET_UCHAR", "ElementDataFile = LOCAL"]
    out = Path("/output/images/tumor-lymph-node-segmentation")
    out.mkdir(parents=True, exist_ok=True)
    (out / "output.mha").write_bytes(("\n".join(lines) + "\n").encode() + packed)
    labelled = len(labels) - labels.count(0)
    Path("/output/rfs.json").write_text(json.dumps(float(labelled)))
    Path("/output/hpv-status.json").write_text(json.dumps(labelled / max(1, len(labels))))
    print(f"labelled {labelled} of {len(labels)} voxels")


main()
