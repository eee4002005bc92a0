"""Upload type sniffing: the archive or table kind from an upload's first bytes, and the
message when a task does not take it."""

from __future__ import annotations

import pytest

from app.api.multipart import sniff_type
from app.errors import UnsupportedType


@pytest.mark.parametrize(
    ("head", "task", "kind"),
    [
        (b"PK\x03\x04rest", 1, "zip"),
        (b"PK\x05\x06" + bytes(18), 2, "zip"),
        (b"\x1f\x8b\x08\x00", 1, "tar.gz"),
        (bytes(257) + b"ustar\x0000" + bytes(100), 1, "tar"),
        (b"PatientID,Prediction\n", 2, "csv"),
        (b"\xef\xbb\xbf PatientID;Prediction\n", 3, "csv"),
        (b'  [{"PatientID": "A"}]', 2, "json"),
        (b'{"A-1": 0.3}', 3, "json"),
        ("PatientID,Prédiction\n".encode()[:24], 3, "csv"),  # a character cut at the end
    ],
)
def test_sniff(head: bytes, task: int, kind: str) -> None:
    assert sniff_type(head, task) == kind


def test_sniff_refuses_with_a_message() -> None:
    with pytest.raises(UnsupportedType, match=r"Task 1 expects a \.zip, \.tar or \.tar\.gz"):
        sniff_type(b"PatientID,Prediction\n", 1)
    with pytest.raises(UnsupportedType, match="bzip2"):
        sniff_type(b"BZh91AY&SY", 2)
    with pytest.raises(UnsupportedType, match="unknown type"):
        sniff_type(b"\x00\x01\x02binary", 3)
