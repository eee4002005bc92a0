"""Test algorithm: a segmentation that is not a MetaImage and a NaN for Task 2."""

from pathlib import Path

out = Path("/output/images/tumor-lymph-node-segmentation")
out.mkdir(parents=True)
(out / "output.mha").write_bytes(b"this is not an image\n" * 100)
Path("/output/rfs.json").write_text("NaN")
print("wrote garbage")
