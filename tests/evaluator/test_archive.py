"""Archives read in place: every hostile archive refused with a message that names the
problem, and only the members a task wants are ever read."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from evaluator.errors import SubmissionError, SubmissionRejected
from evaluator.io.archive import Scan
from evaluator.io.sniff import detect_archive
from evaluator.protocol import Limits
from tests.builders import make_tar, make_zip

LIM = Limits()


def extract(path: Path, limits: Limits = LIM) -> list[str]:
    """The names of the files of ``path``, every member read to its end."""
    scan = Scan(path, limits=limits, want=lambda m: True)
    for m, stream in scan:
        f = stream if stream is not None else m.ref.open()
        try:
            while f.read(1 << 20):
                pass
        except SubmissionError as exc:  # a member that cannot be read: the task's problem
            raise SubmissionRejected([exc]) from None
    scan.finish()
    return sorted(m.name for m in scan.members)


def rejected(path: Path, limits: Limits = LIM) -> list[str]:
    with pytest.raises(SubmissionRejected) as e:
        extract(path, limits)
    return [p.message for p in e.value.problems]


def test_single_top_folder_stripped_and_junk_skipped(tmp_path) -> None:
    z = make_zip(
        tmp_path / "a.zip",
        {
            "preds/A-1.nii.gz": b"1",
            "preds/B-1.nii.gz": b"2",
            "__MACOSX/preds/._A-1.nii.gz": b"x",
            "preds/.DS_Store": b"x",
        },
    )
    assert extract(z) == ["A-1.nii.gz", "B-1.nii.gz"]
    t = make_tar(tmp_path / "a.tar.gz", {"x/A-1.nii.gz": b"1", "y/B-1.nii.gz": b"2"})
    assert extract(t) == ["x/A-1.nii.gz", "y/B-1.nii.gz"]  # two top folders: kept


def test_detect_by_magic_not_name(tmp_path) -> None:
    z = make_zip(tmp_path / "really_a_zip.tar.gz", {"a": b"1"})
    assert detect_archive(z) == "zip"
    t = make_tar(tmp_path / "x.zip", {"a": b"1"}, mode="w")
    assert detect_archive(t) == "tar"
    g = make_tar(tmp_path / "y.bin", {"a": b"1"}, mode="w:gz")
    assert detect_archive(g) == "tar.gz"


def test_absolute_path(tmp_path) -> None:
    t = make_tar(tmp_path / "abs.tar", {"/etc/A-1.nii.gz": b"1"}, mode="w")
    assert rejected(t) == [
        "member '/etc/A-1.nii.gz' has an absolute path; archive the files "
        "with paths relative to the folder that holds them"
    ]


def test_dotdot(tmp_path) -> None:
    z = make_zip(tmp_path / "dd.zip", {"a/../../x.nii.gz": b"1"})
    assert "points outside the archive" in rejected(z)[0]


def test_symlink_and_hardlink(tmp_path) -> None:
    p = tmp_path / "links.tar"
    with tarfile.open(p, "w") as tf:
        s = tarfile.TarInfo("A-1.nii.gz")
        s.type, s.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(s)
        h = tarfile.TarInfo("B-1.nii.gz")
        h.type, h.linkname = tarfile.LNKTYPE, "A-1.nii.gz"
        tf.addfile(h)
    msgs = rejected(p)
    assert "is a symbolic link; links are not accepted" in msgs[0]
    assert "is a hard link; links are not accepted" in msgs[1]


def test_zip_symlink(tmp_path) -> None:
    p = tmp_path / "l.zip"
    with zipfile.ZipFile(p, "w") as zf:
        info = zipfile.ZipInfo("A-1.nii.gz")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    assert "symbolic link" in rejected(p)[0]


def test_device_file(tmp_path) -> None:
    p = tmp_path / "dev.tar"
    with tarfile.open(p, "w") as tf:
        d = tarfile.TarInfo("null")
        d.type = tarfile.CHRTYPE
        tf.addfile(d)
        f = tarfile.TarInfo("fifo")
        f.type = tarfile.FIFOTYPE
        tf.addfile(f)
    msgs = rejected(p)
    assert len(msgs) == 2 and all("not a regular file" in m for m in msgs)


def test_too_many_members(tmp_path) -> None:
    z = make_zip(tmp_path / "many.zip", {f"{i}.nii.gz": b"1" for i in range(12)})
    msgs = rejected(z, Limits(max_members=10))
    assert msgs == [
        "the archive has 12 members, more than the limit of 10; one file per case is expected"
    ]
    t = make_tar(tmp_path / "many.tar", {f"{i}.nii.gz": b"1" for i in range(12)}, mode="w")
    assert "more than 10 members" in rejected(t, Limits(max_members=10))[0]


def test_member_over_size_cap(tmp_path) -> None:
    z = make_zip(tmp_path / "big.zip", {"A-1.nii.gz": b"a" * 5000})
    msgs = rejected(z, Limits(max_member_bytes=4096))
    assert msgs == [
        "member 'A-1.nii.gz' is 4.9 KiB uncompressed, over the limit of 4.0 KiB per file"
    ]


def test_total_over_cap(tmp_path) -> None:
    t = make_tar(tmp_path / "tot.tar", {f"{i}.nii.gz": b"a" * 3000 for i in range(4)}, mode="w")
    msgs = rejected(t, Limits(max_total_bytes=10000))
    assert any("expand to more than" in m and "(the limit)" in m for m in msgs)


def test_lying_header_is_caught_while_reading(tmp_path) -> None:
    # a zip whose central directory declares a tiny size for a large member
    p = tmp_path / "liar.zip"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("A-1.nii.gz", b"b" * 10000)
    data = bytearray(p.read_bytes())
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24 : cd + 28] = (100).to_bytes(4, "little")  # uncompressed size in the central dir
    p.write_bytes(bytes(data))
    msgs = rejected(p, Limits(max_member_bytes=4096))
    assert msgs and "corrupt or truncated" in msgs[0]


def test_names_colliding_after_strip(tmp_path) -> None:
    z = make_zip(tmp_path / "c.zip", {"top/A-1.nii.gz": b"1", "top/a-1.NII.GZ".lower(): b"2"})
    assert "would be extracted to the same file" in rejected(z)[0]


def test_non_utf8_names(tmp_path) -> None:
    p = tmp_path / "latin.tar"
    with tarfile.open(p, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tf:
        info = tarfile.TarInfo("caf\xe9.nii.gz")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"1"))
    # refused with a message that can be stored and sent as JSON (no lone surrogates)
    (msg,) = rejected(p)
    assert "caf\\xe9.nii.gz" in msg and "not valid UTF-8" in msg
    msg.encode("utf-8")


def test_empty_archive(tmp_path) -> None:
    z = make_zip(tmp_path / "e.zip", {})
    assert rejected(z) == ["the archive holds no files; put your prediction files in it"]


def test_not_an_archive_and_truncated(tmp_path) -> None:
    p = tmp_path / "x.zip"
    p.write_bytes(b"%PDF-1.4 definitely not a zip")
    assert "not a .zip, .tar or .tar.gz archive" in rejected(p)[0]
    z = make_zip(tmp_path / "t.zip", {f"{i}.nii.gz": b"abc" * 1000 for i in range(5)})
    cut = tmp_path / "cut.zip"
    cut.write_bytes(z.read_bytes()[:-200])
    assert "corrupt or truncated" in rejected(cut)[0]
    t = make_tar(tmp_path / "t.tar.gz", {f"{i}.nii.gz": bytes(range(256)) * 400 for i in range(5)})
    cut2 = tmp_path / "cut.tar.gz"
    cut2.write_bytes(t.read_bytes()[: len(t.read_bytes()) // 2])
    assert "corrupt or truncated" in rejected(cut2)[0]


def test_nested_archive_is_not_opened(tmp_path) -> None:
    inner = make_zip(tmp_path / "inner.zip", {"A-1.nii.gz": b"1"})
    outer = make_zip(tmp_path / "outer.zip", {"inner.zip": inner.read_bytes()})
    assert extract(outer) == ["inner.zip"]  # a file like any other; the Task 1 reader rejects it


def test_single_case_folder_is_not_stripped(tmp_path) -> None:
    # a Task 2 per-case layout with one case: the folder name is the PatientID
    z = make_zip(tmp_path / "one.zip", {"CHUM-001/rfs.json": b"0.5"})
    assert extract(z) == ["CHUM-001/rfs.json"]
