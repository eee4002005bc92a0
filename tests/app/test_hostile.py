"""Hostile uploads through the HTTP API, judged by the real local dispatcher (a spawn
process pool whose jobs run under an address-space limit).

Each input asserts: the participant-facing message (a substring naming the problem),
that the judgment arrives within a time bound, that memory stayed bounded (the judging
processes' peak RSS, and the server process's RSS growth), and that the service still
answers other requests afterwards. The last test submits a valid archive and gets it
scored. Inputs a participant may legitimately send (a BOM, semicolons, trailing gzip
data) must be *scored*, with the same numbers as the clean file.
"""

from __future__ import annotations

import json
import stat
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from app.jobs.local import LocalDispatcher
from evaluator.errors import MAX_LISTED_PROBLEMS
from evaluator.protocol import Limits
from tests.app.conftest import Api, auth, judge_pids, judged_service
from tests.hostile import (
    GIB,
    ZipEntry,
    bzip2_zeros,
    children_peak_rss,
    deflate_zeros,
    flip_middle,
    forged_tar_member,
    gz,
    make_tar,
    make_zip,
    nifti_raw,
    proc_memory,
    raw_zip,
    rlimit_inside_job,
    tar_member,
)

PHASE = "hostile"
UPLOAD_CAP = 8 << 20  # bytes; small so that the over-the-cap input stays cheap
JOB_MEMORY_MB = 1536  # RLIMIT_AS of a judging job (a warmed-up judge maps ~0.4-0.8 GB)
JUDGE_PEAK_RSS = 700 << 20  # the judges' high-water mark after every input
SERVER_RSS_GROWTH = 96 << 20  # per input, in this (client + server) process
TIME_BOUND = 30.0  # seconds from upload to judgment, per input
LIMITS = Limits()


# -- the world: one service, one team, the synthetic challenge's geometry ---------------------
@dataclass
class World:
    api: Api
    token: str
    dispatcher: LocalDispatcher
    case_ids: list[str]
    good1: dict[str, bytes]  # <PatientID>.nii.gz -> bytes of the "good" team's prediction
    grid: dict[str, Any]  # case 0: shape, affine, array
    good2: bytes
    good3: bytes
    clean_scores: dict[int, float]
    settings: Any = None


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, challenge: Any) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("hostile")
    with judged_service(
        tmp,
        challenge,
        max_upload_bytes=UPLOAD_CAP,
        job_memory_mb=JOB_MEMORY_MB,
        job_timeout_seconds=120,
    ) as (api, d):
        # one team sends every hostile upload: the failed-submission and dry-run
        # allowances, tested on their own elsewhere, must not refuse them here
        api.create_phase(PHASE, daily_limit=100_000, failed_limit=100_000, dry_run_limit=100_000)
        token = api.create_team("mallory")
        good1 = challenge.predictions("good")
        case_ids = sorted(n.removesuffix(".nii.gz") for n in good1)
        img = nib.Nifti1Image.from_bytes(gzip_decompress(good1[f"{case_ids[0]}.nii.gz"]))
        grid = {
            "shape": img.shape,
            "affine": img.affine,
            "array": np.asanyarray(img.dataobj),
        }
        w = World(
            api=api,
            token=token,
            dispatcher=d,
            case_ids=case_ids,
            good1=good1,
            grid=grid,
            good2=challenge.archive("good", 2).read_bytes(),
            good3=challenge.archive("good", 3).read_bytes(),
            clean_scores={},
            settings=d.settings,
        )
        for task, metric in ((1, "gtvp_dsc_mean"), (2, "c_index"), (3, "auc")):
            content = task1_zip(w) if task == 1 else (w.good2 if task == 2 else w.good3)
            sid = api.submit_ok(token, PHASE, task, None, content=content, filename="clean")
            doc = api.wait(token, sid, timeout=120)
            assert doc["status"] == "scored", doc["errors"]
            w.clean_scores[task] = doc["result"]["metrics"][metric]
        yield w


def gzip_decompress(data: bytes) -> bytes:
    import gzip

    return gzip.decompress(data)


# -- input builders --------------------------------------------------------------------------
def task1_zip(w: World, replace: dict[str, bytes | None] | None = None) -> bytes:
    """The good team's Task 1 files, flat in a zip; ``replace`` swaps (None: drops) files."""
    files: dict[str, bytes] = dict(w.good1)
    for name, data in (replace or {}).items():
        if data is None:
            files.pop(name, None)
        else:
            files[name] = data
    return make_zip(files, compression=zipfile.ZIP_STORED)


def case0(w: World) -> str:
    return f"{w.case_ids[0]}.nii.gz"


def image(w: World, data: bytes) -> bytes:
    """A Task 1 zip whose first case is ``data``."""
    return task1_zip(w, {case0(w): data})


def nii(w: World, arr: Any = None, affine: Any = None, **kw: Any) -> bytes:
    arr = w.grid["array"] if arr is None else arr
    return gz(nifti_raw(arr, w.grid["affine"] if affine is None else affine, **kw))


def table(w: World, task: int, edit: Callable[[list[str]], list[str]]) -> bytes:
    """The good team's CSV of ``task`` with its lines (header first) edited."""
    lines = (w.good2 if task == 2 else w.good3).decode().splitlines()
    return ("\n".join(edit(lines)) + "\n").encode()


def set_value(row: int, value: str, sep: str = ",") -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        pid = lines[row].split(",")[0]
        lines[row] = f"{pid}{sep}{value}"
        return lines

    return edit


@cache
def deflate_bomb() -> bytes:
    data, crc = deflate_zeros(1100)  # 1.1 GiB of zeros in about 1.1 MB
    return raw_zip(
        [ZipEntry("CHUB-003.nii.gz", data, method=zipfile.ZIP_DEFLATED, crc=crc, size=1100 << 20)]
    )


def nested_bomb(w: World) -> bytes:
    inner = raw_zip(
        [
            ZipEntry(f"{i}.nii", bzip2_zeros(16), method=zipfile.ZIP_BZIP2, crc=0, size=16 << 20)
            for i in range(4)
        ]
    )
    return make_zip({**w.good1, "more.zip": make_zip({f"layer{i}.zip": inner for i in range(4)})})


def zip_in_case(w: World) -> bytes:
    return image(w, make_zip({case0(w): w.good1[case0(w)]}))


def lying_size(w: World) -> bytes:
    import zlib

    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = bytes(8 << 20)
    data = c.compress(payload) + c.flush()
    entries = [ZipEntry(n, b, crc=None) for n, b in w.good1.items() if n != case0(w)]
    entries.append(
        ZipEntry(case0(w), data, method=zipfile.ZIP_DEFLATED, crc=zlib.crc32(payload), size=1000)
    )
    return raw_zip(entries)


def too_many_zip(w: World) -> bytes:
    n = LIMITS.max_members + 1
    return raw_zip([ZipEntry(f"f{i}.txt", b"") for i in range(n)])


def too_many_tar(w: World) -> bytes:
    n = LIMITS.max_members + 1
    return make_tar([tar_member(f"f{i}.txt", b"") for i in range(n)])


def forged_total(w: World) -> bytes:
    return raw_zip(
        [
            ZipEntry(f"{pid}.nii.gz", b"\0" * 600_000, size=GIB - 1, crc=0)
            for pid in [*w.case_ids, "X-1", "X-2", "X-3"]
        ]
    )


def huge_table_zip(w: World) -> bytes:
    big = b"PatientID,Prediction\n" + b"X-0,0.5\n" * ((LIMITS.max_table_bytes // 8) + 10)
    return make_zip({"predictions.csv": big})


def many_rows(w: World) -> bytes:
    n = LIMITS.max_table_rows + 5
    return b"PatientID,Prediction\n" + b"".join(b"X-%d,1\n" % i for i in range(n))


def many_unknown(w: World) -> bytes:
    return w.good2 + b"".join(b"X-%d,1\n" % i for i in range(5000))


def _affine(w: World, flip: bool = False, shift: float = 0.0) -> np.ndarray:
    a = np.array(w.grid["affine"], dtype=np.float64)
    if flip:
        a[:, 0] = -a[:, 0]
    a[:3, 3] += shift
    return a


def _arr(w: World, dtype: Any, value: float | None = None) -> np.ndarray:
    a = np.asarray(w.grid["array"]).astype(dtype)
    if value is not None:
        a.flat[a.size // 2] = value
    return a


def multi_member_tail(w: World) -> bytes:
    """A valid .nii.gz followed by a second gzip member of 512 MiB of zeros."""
    import gzip

    tail = gzip.compress(b"", mtime=0)[:10]  # gzip header of the second member
    data, crc = deflate_zeros(512)
    import struct

    tail += data + struct.pack("<II", crc, (512 << 20) & 0xFFFFFFFF)
    return image(w, w.good1[case0(w)] + tail)


# -- the inputs ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hostile:
    id: str
    task: int
    build: Callable[[World], bytes]
    expect: str  # a substring of the message (or "" for inputs that must be scored)
    outcome: str = "failed"  # "failed" (judged), "sync" (refused at upload), "scored"
    status: int = 0  # the HTTP status of a "sync" refusal
    filename: str = "upload"


H = Hostile
INPUTS: list[Hostile] = [
    # ---- archives
    H("zip-bomb-bzip2-not-a-case", 1, lambda w: make_zip({**w.good1, "bomb.nii": bytes(64 << 20)}, compression=zipfile.ZIP_BZIP2), "case 'bomb' is not part of this phase"),
    H("zip-bomb-deflate-1.1GiB", 1, lambda w: deflate_bomb(), "more than a label map on this case's CT grid"),
    H("zip-bomb-nested-archives", 1, nested_bomb, "more.zip: unexpected file"),
    H("archive-inside-a-case-file", 1, zip_in_case, "not a NIfTI file"),
    H("zip-declares-9-GiB", 1, forged_total, "more than a label map on this case's CT grid"),
    H("zip-lying-uncompressed-size", 1, lying_size, "corrupt or truncated"),
    H("zip-absolute-path", 1, lambda w: make_zip({f"/etc/{k}": v for k, v in w.good1.items()}), "has an absolute path"),
    H("tar-absolute-path", 1, lambda w: make_tar([tar_member(f"/tmp/{k}", v) for k, v in w.good1.items()]), "has an absolute path"),
    H("zip-dotdot", 1, lambda w: make_zip({**w.good1, "../../evil.nii.gz": b"x"}), "points outside the archive"),
    H("tar-dotdot", 1, lambda w: make_tar([tar_member("a/../../evil.nii.gz", b"x")]), "points outside the archive"),
    H("zip-backslash-dotdot", 1, lambda w: make_zip({**w.good1, "..\\..\\evil.nii.gz": b"x"}), "points outside the archive"),
    H("tar-symlink", 1, lambda w: make_tar([tar_member(case0(w), kind=tarfile.SYMTYPE, linkname="/etc/passwd")]), "is a symbolic link"),
    H("zip-symlink", 1, lambda w: raw_zip([ZipEntry(case0(w), b"/etc/passwd", mode=stat.S_IFLNK | 0o777)]), "is a symbolic link"),
    H("tar-hardlink", 1, lambda w: make_tar([tar_member(case0(w), kind=tarfile.LNKTYPE, linkname="/etc/passwd")]), "is a hard link"),
    H("tar-char-device", 1, lambda w: make_tar([tar_member(case0(w), kind=tarfile.CHRTYPE)]), "is not a regular file"),
    H("tar-fifo", 1, lambda w: make_tar([tar_member(case0(w), kind=tarfile.FIFOTYPE)]), "is not a regular file"),
    H("zip-device-mode", 1, lambda w: raw_zip([ZipEntry(case0(w), b"", mode=stat.S_IFBLK | 0o600)]), "is not a regular file"),
    H("zip-too-many-members", 1, too_many_zip, f"more than the limit of {LIMITS.max_members}"),
    H("tar-too-many-members", 1, too_many_tar, f"more than {LIMITS.max_members} members"),
    H("tar-member-over-cap", 1, lambda w: forged_tar_member(case0(w), 2 * GIB, b"\0" * 4096), "(2.0 GiB) is not read by this task"),
    H("names-collide-after-strip-case", 1, lambda w: make_zip({**{f"top/{k}": v for k, v in w.good1.items()}, f"top/{case0(w).lower()}": b"x"}), "would be extracted to the same file"),
    H("names-collide-after-strip-dot", 1, lambda w: make_zip({**{f"top/{k}": v for k, v in w.good1.items()}, f"top/./{case0(w)}": b"x"}), "would be extracted to the same file"),
    H("same-case-in-two-folders", 1, lambda w: make_zip({**{f"a/{k}": v for k, v in w.good1.items()}, f"b/{case0(w)}": w.good1[case0(w)]}), "a second prediction for case"),
    H("file-and-folder-same-name", 1, lambda w: make_zip({**w.good1, "x": b"1", "x/y.nii.gz": b"2"}), "is a file and also the folder of"),
    H("tar-non-utf8-name", 1, lambda w: make_tar([tar_member("caf\xe9.nii.gz", b"x")], encoding="latin-1"), "is not valid UTF-8"),
    H("zip-utf8-flag-invalid-bytes", 1, lambda w: raw_zip([ZipEntry(b"caf\xe9.nii.gz", b"x", flags=0x800)]), "is not valid UTF-8 although the archive marks it"),
    H("member-name-too-long", 1, lambda w: make_zip({**w.good1, "a" * 300 + ".nii.gz": b"x"}), "longer than the limit"),
    H("zip-encrypted-flag", 1, lambda w: raw_zip([ZipEntry(case0(w), b"x", flags=0x1)]), "is encrypted"),
    H("empty-zip", 1, lambda w: make_zip({}), "the archive holds no files"),
    H("only-junk", 1, lambda w: make_zip({"__MACOSX/._a": b"x", ".DS_Store": b"x"}), "the archive holds no files"),
    H("empty-tar-gz", 1, lambda w: gz(bytes(10240)), "an empty .tar.gz archive", "sync", 415),
    H("not-an-archive", 1, lambda w: b"\x01" + np.random.default_rng(0).bytes(4095), "a file of unknown type", "sync", 415),
    H("pdf", 1, lambda w: b"%PDF-1.7\n" + bytes(2000), "the upload is a PDF document", "sync", 415),
    H("seven-zip", 1, lambda w: b"7z\xbc\xaf\x27\x1c" + bytes(200), "a 7-Zip archive", "sync", 415),
    H("single-nii-gz", 1, lambda w: w.good1[case0(w)], "a single gzip-compressed NIfTI image", "sync", 415),
    H("empty-upload", 1, lambda w: b"", "the upload is an empty file", "sync", 415),
    H("over-upload-cap", 1, lambda w: b"PK\x03\x04" + bytes(UPLOAD_CAP + 1), "larger than the limit of 8.0 MiB", "sync", 413),
    H("truncated-zip", 1, lambda w: task1_zip(w)[: len(task1_zip(w)) // 2], "corrupt or truncated"),
    H("truncated-tar-gz", 1, lambda w: (t := make_tar([tar_member(k, v) for k, v in w.good1.items()]))[: len(t) // 2], "corrupt or truncated"),
    H("corrupt-zip-data", 1, lambda w: flip_middle(make_zip(w.good1)), "corrupt or truncated"),
    H("missing-case", 1, lambda w: task1_zip(w, {case0(w): None}), "no prediction for case"),
    H("unknown-case", 1, lambda w: task1_zip(w, {"NOPE-001.nii.gz": w.good1[case0(w)]}), "is not part of this phase"),
    H("stray-file", 1, lambda w: task1_zip(w, {"notes.bin": b"hi"}), "unexpected file"),
    H("readme-beside-the-maps", 1, lambda w: task1_zip(w, {"README.txt": b"hi", "plans.json": b"{}"}), "", "scored"),
    # ---- images (the first case replaced)
    H("nifti-huge-declared-size", 1, lambda w: image(w, nii(w, np.zeros((2, 2, 2), np.uint8), shape=(4096, 4096, 4096))), "over the limit of"),
    H("nifti-big-shape-under-cap", 1, lambda w: image(w, nii(w, np.zeros((2, 2, 2), np.uint8), shape=(512, 512, 1000))), "does not match the CT"),
    H("nifti-truncated-gzip", 1, lambda w: image(w, w.good1[case0(w)][: len(w.good1[case0(w)]) // 2]), "truncated"),
    H("nifti-corrupt-gzip", 1, lambda w: image(w, flip_middle(w.good1[case0(w)], 16)), "gzip data is corrupt"),
    H("nifti-wrong-magic-pair", 1, lambda w: image(w, nii(w, magic=b"ni1\0")), "wrong NIfTI magic"),
    H("nifti-wrong-magic-garbage", 1, lambda w: image(w, nii(w, magic=b"abc\0")), "wrong NIfTI magic"),
    H("nifti-not-nifti", 1, lambda w: image(w, gz(b"hello, this is text " * 50)), "not a NIfTI file"),
    H("nifti-empty-file", 1, lambda w: image(w, b""), "too short for a NIfTI header"),
    H("nifti-2d", 1, lambda w: image(w, nii(w, np.zeros((64, 64), np.uint8))), "the image is 2-D"),
    H("nifti-4d", 1, lambda w: image(w, nii(w, np.zeros((*w.grid["shape"], 2), np.uint8))), "the image is 4-D"),
    H("nifti-float-non-integer", 1, lambda w: image(w, nii(w, _arr(w, np.float32, 0.5))), "non-integer values (0.5)"),
    H("nifti-label-3", 1, lambda w: image(w, nii(w, _arr(w, np.uint8, 3))), "holds label value(s) 3"),
    H("nifti-label-255", 1, lambda w: image(w, nii(w, _arr(w, np.uint8, 255))), "holds label value(s) 255"),
    H("nifti-negative-label", 1, lambda w: image(w, nii(w, _arr(w, np.int16, -1))), "holds label value(s) -1"),
    H("nifti-nan", 1, lambda w: image(w, nii(w, _arr(w, np.float32, np.nan))), "NaN or infinite"),
    H("nifti-scl-slope-3", 1, lambda w: image(w, nii(w, np.ones(w.grid["shape"], np.uint8), slope=3.0)), "holds label value(s) 3"),
    H("nifti-scl-slope-half", 1, lambda w: image(w, nii(w, np.ones(w.grid["shape"], np.uint8), slope=0.5)), "non-integer values (0.5)"),
    H("nifti-complex", 1, lambda w: image(w, nii(w, _arr(w, np.complex64))), "the voxel type is complex64"),
    H("nifti-wrong-shape", 1, lambda w: image(w, nii(w, np.asarray(w.grid["array"])[:, :, :-1])), "does not match the CT"),
    H("nifti-flipped-axis", 1, lambda w: image(w, nii(w, affine=_affine(w, flip=True))), "orientation/spacing"),
    H("nifti-shifted-origin", 1, lambda w: image(w, nii(w, affine=_affine(w, shift=5.0))), "origin"),
    H("nifti-huge-vox-offset", 1, lambda w: image(w, nii(w, vox_offset=1 << 30)), "beyond the 1,048,576 bytes allowed for the header"),
    H("nifti-gzip-tail-512MiB", 1, multi_member_tail, "", "scored"),
    # ---- tables
    H("csv-no-header", 2, lambda w: table(w, 2, lambda ls: ls[1:]), "no header"),
    H("csv-wrong-columns", 2, lambda w: table(w, 2, lambda ls: ["id,score", *ls[1:]]), "wrong columns"),
    H("csv-pandas-index", 2, lambda w: table(w, 2, lambda ls: [",PatientID,Prediction", *(f"{i},{r}" for i, r in enumerate(ls[1:]))]), "to_csv(..., index=False)"),
    H("csv-bom", 2, lambda w: b"\xef\xbb\xbf" + w.good2, "", "scored"),
    H("csv-utf16", 2, lambda w: w.good2.decode().encode("utf-16"), "", "scored"),
    H("csv-semicolons", 2, lambda w: w.good2.replace(b",", b";"), "", "scored"),
    H("csv-decimal-comma", 2, lambda w: table(w, 2, lambda ls: [x.replace(",", ";").replace(".", ",") for x in ls]), "uses a decimal comma"),
    H("csv-duplicate-ids", 2, lambda w: table(w, 2, lambda ls: [*ls, ls[1]]), "appears 2 times"),
    H("csv-nan", 2, lambda w: table(w, 2, set_value(1, "NaN")), "'NaN' is not a finite number"),
    H("csv-inf", 2, lambda w: table(w, 2, set_value(1, "-inf")), "'-inf' is not a finite number"),
    H("csv-overflow", 2, lambda w: table(w, 2, set_value(1, "1e999")), "too large to be a finite number"),
    H("csv-empty-value", 2, lambda w: table(w, 2, set_value(1, "")), "the value is empty"),
    H("csv-string-value", 2, lambda w: table(w, 2, set_value(1, "high")), "'high' is not a number"),
    H("csv-huge-file-in-zip", 2, huge_table_zip, "-byte limit for a prediction table of this phase"),
    H("csv-too-many-rows", 2, many_rows, f"more than {LIMITS.max_table_rows:,} rows"),
    H("csv-5000-unknown-ids", 2, many_unknown, "more problems like the ones above"),
    H("csv-huge-field", 2, lambda w: table(w, 2, set_value(1, "9" * 200_000)), "not a readable CSV table"),
    H("csv-latin1", 2, lambda w: table(w, 2, lambda ls: [*ls, "Caf\u00e9-1,1"]).decode().encode("latin-1"), "is not UTF-8 text"),
    H("csv-nul-bytes-in-zip", 2, lambda w: make_zip({"predictions.csv": w.good2 + b"\0\0\0"}), "holds NUL bytes"),
    H("csv-nul-bytes-bare", 2, lambda w: w.good2 + b"\0" * 10, "the upload is a file of unknown type", "sync", 415),
    H("csv-gzipped", 2, lambda w: gz(w.good2), "a gzip-compressed file that is not a tar archive", "sync", 415),
    H("two-tables-in-zip", 2, lambda w: make_zip({"a.csv": w.good2, "b.csv": w.good2}), "holds 2 table files"),
    H("task3-probability-out-of-range", 3, lambda w: table(w, 3, set_value(1, "1.5")), "outside [0, 1]"),
    H("json-wrong-shape-numbers", 2, lambda w: b"[42, 43]", "item 1: found 42; expected a list of"),
    H("json-wrong-shape-list-of-lists", 2, lambda w: json.dumps([["CHUB-003", 1.0]]).encode(), "found a list; expected a list of"),
    H("json-column-oriented", 2, lambda w: json.dumps({"PatientID": {"0": "a"}, "Prediction": {"0": 1}}).encode(), "column-oriented"),
    H("json-deeply-nested", 2, lambda w: b"[" * 200_000 + b"]" * 200_000, "levels deep, more than the limit"),
    H("json-huge-integer", 2, lambda w: b'{"CHUB-003": ' + b"9" * 100_000 + b"}", "not valid JSON"),
    H("json-nan-literal", 2, lambda w: json.dumps({pid: 1.0 for pid in w.case_ids}).replace("1.0", "NaN", 1).encode(), "the value is NaN"),
    H("json-string-values", 2, lambda w: json.dumps({pid: "1.0" for pid in w.case_ids}).encode(), "write numbers without quotes"),
    H("json-null-id", 2, lambda w: json.dumps([{"PatientID": None, "Prediction": 1}]).encode(), "PatientID is null"),
    H("json-too-many-entries", 2, lambda w: json.dumps({f"X-{i}": 1 for i in range(LIMITS.max_table_rows * 2 + 5)}).encode(), "-byte limit for a prediction table of this phase"),
]  # fmt: skip


def _messages(body: dict[str, Any]) -> str:
    parts = [str(body.get("detail") or "")]
    parts += [f"{e.get('case', '')}: {e.get('message', '')}" for e in body.get("errors") or []]
    return "\n".join(parts)


def test_inputs_are_distinct() -> None:
    assert len({h.id for h in INPUTS}) == len(INPUTS) >= 40


@pytest.mark.parametrize("h", INPUTS, ids=[h.id for h in INPUTS])
def test_hostile_input(world: World, h: Hostile) -> None:
    api, token = world.api, world.token
    content = h.build(world)
    rss0 = proc_memory()
    t0 = time.monotonic()
    r = api.upload(token, PHASE, h.task, content=content, filename=h.filename)
    if h.outcome == "sync":
        assert r.status_code == h.status, r.text[:500]
        text = _messages(r.json())
    else:
        assert r.status_code == 202, r.text[:500]
        doc = api.wait(token, r.json()["id"], timeout=TIME_BOUND)
        text = _messages(doc)
        if h.outcome == "scored":
            assert doc["status"] == "scored", text
            metric = {1: "gtvp_dsc_mean", 2: "c_index", 3: "auc"}[h.task]
            assert doc["result"]["metrics"][metric] == world.clean_scores[h.task]
        else:
            assert doc["status"] == "failed", doc
            assert doc["result"] is None
            # never an internal error: every hostile input is the participant's to fix
            assert all(e["kind"] != "internal" for e in doc["errors"]), text
            assert len(doc["errors"]) <= MAX_LISTED_PROBLEMS
    elapsed = time.monotonic() - t0
    assert h.expect in text, text[:2000]
    assert "Traceback" not in text and "hecktor-sub-" not in text
    assert str(world.settings.data_dir) not in text
    assert elapsed < TIME_BOUND
    # memory: the judges' high-water mark, and this process's growth (client + server)
    for pid in judge_pids(world.dispatcher):
        assert proc_memory(pid, "VmHWM") < JUDGE_PEAK_RSS, (pid, proc_memory(pid, "VmHWM"))
    assert proc_memory() - rss0 < SERVER_RSS_GROWTH + len(content) * 3
    # the service still answers
    assert api.client.get("/healthz").status_code == 200
    assert api.client.get(f"/api/v1/leaderboards/{PHASE}/{h.task}").status_code == 200
    assert not list(world.settings.incoming_dir.iterdir()), "an upload was left in incoming/"


def test_jobs_run_under_an_address_space_limit(world: World) -> None:
    """In a judging process, ``job_memory_mb`` becomes the job's RLIMIT_AS (and an
    allocation beyond it fails with MemoryError instead of taking the machine down)."""
    ex = world.dispatcher._executor
    assert ex is not None
    soft, failed = ex.submit(rlimit_inside_job, JOB_MEMORY_MB).result(timeout=60)
    assert soft == JOB_MEMORY_MB << 20 and failed


def test_judging_children_stayed_small(world: World) -> None:
    """Jobs run in forked children of the judging processes; the largest peak RSS of
    those children (every hostile input above included) stays far below the limit."""
    ex = world.dispatcher._executor
    assert ex is not None
    futures = [ex.submit(children_peak_rss, 0.3) for _ in range(4)]
    peaks = dict(f.result(timeout=60) for f in futures)
    assert peaks and max(peaks.values()) < JUDGE_PEAK_RSS, peaks


def test_still_scores_a_valid_submission_afterwards(world: World) -> None:
    api = world.api
    for task, content in ((1, task1_zip(world)), (2, world.good2), (3, world.good3)):
        sid = api.submit_ok(world.token, PHASE, task, None, content=content, filename="ok")
        doc = api.wait(world.token, sid, timeout=TIME_BOUND)
        assert doc["status"] == "scored", doc["errors"]
    board = api.leaderboard(PHASE, 1)
    assert [r["team"] for r in board["rows"]] == ["mallory"]
    r = api.client.get(f"/api/v1/submissions?phase={PHASE}", headers=auth(world.token))
    assert r.status_code == 200 and sid in [x["id"] for x in r.json()]
