"""Upload type sniffing in the service: an upload its task does not take is refused with
415 and the evaluator's message (the sniffer itself: tests/evaluator/test_sniff.py)."""

from __future__ import annotations

import pytest

from app.api.multipart import upload_type
from app.errors import UnsupportedType


def test_sniff_refuses_with_a_message() -> None:
    with pytest.raises(UnsupportedType, match=r"Task 1 expects a \.zip, \.tar or \.tar\.gz"):
        upload_type(b"PatientID,Prediction\n", 1)
    with pytest.raises(UnsupportedType, match="bzip2"):
        upload_type(b"BZh91AY&SY", 2)
    with pytest.raises(UnsupportedType, match="unknown type"):
        upload_type(b"\x00\x01\x02binary", 3)


def test_refusal_carries_one_archive_problem() -> None:
    with pytest.raises(UnsupportedType) as info:
        upload_type(b"%PDF-1.7", 2)
    assert info.value.status_code == 415
    message = (
        "Task 2 expects a .csv or .json table of PatientID, Prediction (or an archive "
        "holding one); the upload is a PDF document."
    )
    assert info.value.errors == [{"case": "", "kind": "archive", "message": message}]
