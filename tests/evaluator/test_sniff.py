"""Upload type sniffing: the archive or table kind from an upload's first bytes, the
message when a task does not take it, and the size text of messages."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from evaluator.io.sizes import human_size
from evaluator.io.sniff import UnsupportedUpload, sniff_type


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
    with pytest.raises(UnsupportedUpload, match=r"Task 1 expects a \.zip, \.tar or \.tar\.gz"):
        sniff_type(b"PatientID,Prediction\n", 1)
    with pytest.raises(UnsupportedUpload, match="bzip2"):
        sniff_type(b"BZh91AY&SY", 2)
    with pytest.raises(UnsupportedUpload, match="unknown type"):
        sniff_type(b"\x00\x01\x02binary", 3)


def test_refusal_is_an_archive_problem_of_no_case() -> None:
    with pytest.raises(UnsupportedUpload) as info:
        sniff_type(b"", 1)
    assert info.value.as_dict() == {
        "case": "",
        "kind": "archive",
        "message": "Task 1 expects a .zip, .tar or .tar.gz archive of <PatientID>.nii.gz "
        "(or .mha) files; the upload is an empty file.",
    }


def _tar_gz(name: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo(name)
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    return buf.getvalue()


def test_gzip_that_is_not_a_tar_is_refused_with_what_it_is() -> None:
    assert sniff_type(_tar_gz("A-1.nii.gz")[:512], 1) == "tar.gz"
    with pytest.raises(UnsupportedUpload, match="a gzip-compressed file that is not a tar"):
        sniff_type(gzip.compress(b"PatientID,Prediction\nA,1\n"), 2)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1024, "1.0 KiB"),
        (5000, "4.9 KiB"),
        (300_000, "293.0 KiB"),
        (1 << 20, "1.0 MiB"),
        (8 << 30, "8.0 GiB"),
        (3 << 40, "3.0 TiB"),
        (2048 << 40, "2048.0 TiB"),
    ],
)
def test_human_size(n: int, text: str) -> None:
    assert human_size(n) == text
