"""The hidden inputs of an algorithm phase, converted into what grand-challenge puts
under ``/input`` for one algorithm job, one folder per case.

Source (the released layout, as ``hecktor-eval synth`` writes it)::

    <src>/<PatientID>/<PatientID>__CT.nii.gz   (or .nii)
    <src>/<PatientID>/<PatientID>__PT.nii.gz
    <src>/<PatientID>/ehr.json                 a JSON object (the clinical record)

or flat: ``<src>/<PatientID>__CT.nii.gz``, ``<src>/<PatientID>__PT.nii.gz``,
``<src>/<PatientID>__ehr.json``. Result::

    <dest>/index.json                          {"version": 1, "cases": {PatientID: folder}, "sha256"}
    <dest>/<folder>/images/ct/<uuid4>.mha
    <dest>/<folder>/images/pet/<uuid4>.mha
    <dest>/<folder>/ehr.json
    <dest>/<folder>/inputs.json                grand-challenge's list of socket values

``<folder>`` is a random hex name and the images are named by random UUIDs, so no
PatientID appears anywhere a container sees (an ``ehr.json`` that names its patient is
refused). Each image is converted the way grand-challenge converts an upload (with
SimpleITK): the voxels in their stored type (a scaled NIfTI becomes float32, scaled in
double precision as ITK does), ITK's geometry (the sform or qform ITK picks, LPS:
``direction = F @ A[:3, :3] / spacing``, ``origin = F @ A[:3, 3]``, ``F = diag(-1, -1,
1)``), written by :mod:`evaluator.io.mha_write`. CT and PET keep their own grids:
algorithms resample the PET themselves.

``sha256`` identifies the converted inputs independently of the random names: a hash
over each case's PatientID, socket and file content.

Every problem of every case is collected and raised at once (:class:`InputsError`),
each naming the case and the file; nothing is left in ``dest`` then.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from evaluator.errors import EvaluatorError, SubmissionError
from evaluator.io.hashing import combine_hashes
from evaluator.io.mha_write import mha_bytes
from evaluator.io.nifti import read_image
from evaluator.io.nifti_header import LPS_TO_RAS, ImageHeader

__all__ = [
    "INDEX_NAME",
    "INDEX_VERSION",
    "SOCKETS",
    "InputIndex",
    "InputSocket",
    "InputsError",
    "convert_inputs",
    "read_input_index",
]

INDEX_NAME = "index.json"
INDEX_VERSION = 1
MAX_VOXELS = 1 << 30  # per image: a 512 x 512 x 4096 CT
MAX_EHR_BYTES = 1 << 20
_FOLDER = re.compile(r"[0-9a-f]{16}")
_PATIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class InputsError(EvaluatorError):
    """The phase's inputs cannot be converted, or a converted store is unreadable.
    ``problems`` lists every problem found (organizer-side: each names the case and
    the file)."""

    def __init__(self, problems: Collection[str]) -> None:
        self.problems = list(problems)
        if not self.problems:
            raise ValueError("InputsError needs at least one problem")
        n = len(self.problems)
        body = "\n".join(f"  - {p}" for p in self.problems[:50])
        more = f"\n  ... and {n - 50} more" if n > 50 else ""
        super().__init__(f"algorithm inputs invalid, {n} problem(s):\n{body}{more}")


@dataclass(frozen=True, kw_only=True)
class InputSocket:
    """A grand-challenge input socket (its serialized fields)."""

    pk: int
    slug: str
    title: str
    kind: str  # the display name: "Image", "Anything"
    super_kind: str  # "Image" or "Value"
    relative_path: str

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "description": "",
            "slug": self.slug,
            "kind": self.kind,
            "pk": self.pk,
            "default_value": None,
            "super_kind": self.super_kind,
            "relative_path": self.relative_path,
            "overlay_segments": [],
            "look_up_table": None,
        }


CT_SOCKET = InputSocket(
    pk=1, slug="ct-image", title="CT Image", kind="Image", super_kind="Image",
    relative_path="images/ct",
)  # fmt: skip
PET_SOCKET = InputSocket(
    pk=2, slug="pet-image", title="PET Image", kind="Image", super_kind="Image",
    relative_path="images/pet",
)  # fmt: skip
EHR_SOCKET = InputSocket(
    pk=3, slug="electronic-health-record", title="Electronic Health Record", kind="Anything",
    super_kind="Value", relative_path="ehr.json",
)  # fmt: skip
SOCKETS = (CT_SOCKET, PET_SOCKET, EHR_SOCKET)


@dataclass(frozen=True, kw_only=True)
class InputIndex:
    """A converted store: ``root/<folder>`` per PatientID."""

    root: Path
    cases: dict[str, str]  # PatientID -> folder name
    sha256: str

    def __len__(self) -> int:
        return len(self.cases)

    def case_dir(self, patient_id: str) -> Path:
        return self.root / self.cases[patient_id]


@dataclass(frozen=True)
class _Sources:
    ct: Path | None
    pet: Path | None
    ehr: Path | None


def _find(src: Path, pid: str) -> _Sources | None:
    """A case's source files, folder layout first, then flat; None: no trace of it."""
    folder = src / pid
    if folder.is_dir():

        def image(tag: str) -> Path | None:
            for ext in (".nii.gz", ".nii"):
                p = folder / f"{pid}__{tag}{ext}"
                if p.is_file():
                    return p
            return None

        ehr = folder / "ehr.json"
        return _Sources(image("CT"), image("PT"), ehr if ehr.is_file() else None)
    found = [
        next(
            (p for ext in (".nii.gz", ".nii") if (p := src / f"{pid}__{tag}{ext}").is_file()), None
        )
        for tag in ("CT", "PT")
    ]
    ehr = src / f"{pid}__ehr.json"
    sources = _Sources(found[0], found[1], ehr if ehr.is_file() else None)
    if sources.ct is None and sources.pet is None and sources.ehr is None:
        return None
    return sources


def itk_geometry(
    header: ImageHeader,
) -> tuple[tuple[float, ...], tuple[float, ...], npt.NDArray[np.float64]]:
    """(spacing, origin, direction) as ITK reads them from ``header`` (whose affine is
    ITK's choice of form, in RAS)."""
    affine = header.affine
    spacing = np.asarray(header.zooms, dtype=np.float64)
    direction = LPS_TO_RAS @ affine[:3, :3] / spacing
    origin = LPS_TO_RAS @ affine[:3, 3]
    return (
        tuple(float(s) for s in spacing),
        tuple(float(o) for o in origin),
        np.asarray(direction, dtype=np.float64),
    )


def itk_voxels(header: ImageHeader, raw: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The voxels ITK gives for ``raw``: as stored, or with the NIfTI scaling applied
    as ITK's NIfTI reader applies it (in double precision, the header's float32 slope
    and intercept, then stored as float32; float64 data stays float64)."""
    if not header.scaled:
        return raw.astype(raw.dtype.newbyteorder("="), copy=False)
    slope = float(header.slope if header.slope is not None else 1.0)
    inter = float(header.inter or 0.0)
    kind = np.float64 if raw.dtype == np.float64 else np.float32
    out = np.empty(raw.shape, dtype=kind, order="F")
    step = max(1, (16 << 20) // max(1, raw.shape[0] * raw.shape[1]))  # slabs of 16 M voxels
    for k in range(0, raw.shape[2], step):
        slab = raw[:, :, k : k + step].astype(np.float64)
        slab *= slope
        slab += inter
        out[:, :, k : k + step] = slab
    return out


def _image_mha(path: Path, label: str, problems: list[str], *, encode: bool) -> bytes | None:
    """The .mha bytes of one source image (b"" when not ``encode``: only checked);
    None (and a problem) when unreadable."""
    try:
        header, raw = read_image(path, max_voxels=MAX_VOXELS, name=path.name)
        spacing, origin, direction = itk_geometry(header)
        voxels = itk_voxels(header, raw)
        del raw
        if not encode:
            return b""
        return mha_bytes(voxels, spacing=spacing, origin=origin, direction=direction)
    except SubmissionError as exc:
        problems.append(f"{label}: {exc}")
    except (OSError, ValueError, MemoryError) as exc:
        problems.append(f"{label}: {path.name} cannot be converted ({exc})")
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _ehr(path: Path, pid: str, label: str, problems: list[str]) -> dict[str, Any] | None:
    """The clinical record: a JSON object (NaN and infinities refused, as grand-challenge
    refuses them) that does not name its patient."""
    try:
        if path.stat().st_size > MAX_EHR_BYTES:
            problems.append(
                f"{label}: {path.name} is over {MAX_EHR_BYTES >> 20} MiB; a clinical "
                "record is a small JSON object"
            )
            return None
        text = path.read_text(encoding="utf-8")
        value = json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        problems.append(f"{label}: {path.name} is not UTF-8 text; save it as UTF-8 JSON")
        return None
    except ValueError as exc:
        problems.append(f"{label}: {path.name} is not valid JSON ({exc}); fix the file")
        return None
    except OSError as exc:
        problems.append(f"{label}: {path.name} cannot be read ({exc.strerror})")
        return None
    if not isinstance(value, dict):
        problems.append(
            f"{label}: {path.name} holds a JSON {type(value).__name__}, expected an object "
            '({"Age": 61, ...}: the clinical record)'
        )
        return None
    canonical = json.dumps(value, ensure_ascii=False)
    if pid in canonical:
        problems.append(
            f"{label}: {path.name} names the PatientID {pid}; algorithms must not see it: "
            "remove that field"
        )
        return None
    return value


def _values(ct_pk: str, pet_pk: str, ehr: dict[str, Any]) -> list[dict[str, Any]]:
    """The case's ``inputs.json``: one socket value per input, as grand-challenge
    serializes them (``socket`` and its legacy alias ``interface``)."""
    out = []
    for n, (sock, image, value) in enumerate(
        ((CT_SOCKET, ct_pk, None), (PET_SOCKET, pet_pk, None), (EHR_SOCKET, None, ehr)), 1
    ):
        out.append(
            {
                "pk": n,
                "socket": sock.as_json(),
                "interface": sock.as_json(),
                "value": value,
                "file": None,
                "image": None if image is None else {"pk": image, "name": f"{image}.mha"},
            }
        )
    return out


def _write_case(folder: Path, ct: bytes, pet: bytes, ehr: dict[str, Any]) -> list[tuple[str, str]]:
    """One case folder; returns (socket slug, sha256) of its content."""
    ct_pk, pet_pk = str(uuid.uuid4()), str(uuid.uuid4())
    (folder / "images" / "ct").mkdir(parents=True)
    (folder / "images" / "pet").mkdir()
    (folder / "images" / "ct" / f"{ct_pk}.mha").write_bytes(ct)
    (folder / "images" / "pet" / f"{pet_pk}.mha").write_bytes(pet)
    ehr_text = json.dumps(ehr, ensure_ascii=False)
    (folder / "ehr.json").write_text(ehr_text, encoding="utf-8")
    inputs = json.dumps(_values(ct_pk, pet_pk, ehr), ensure_ascii=False, indent=1)
    (folder / "inputs.json").write_text(inputs + "\n", encoding="utf-8")
    return [
        (CT_SOCKET.slug, hashlib.sha256(ct).hexdigest()),
        (PET_SOCKET.slug, hashlib.sha256(pet).hexdigest()),
        (EHR_SOCKET.slug, hashlib.sha256(ehr_text.encode()).hexdigest()),
    ]


def _case_problems_before_reading(src: Path, pid: str) -> tuple[_Sources | None, list[str]]:
    if not _PATIENT_ID.fullmatch(pid):
        return None, [f"{pid!r}: not a PatientID (letters, digits, '.', '_', '-')"]
    sources = _find(src, pid)
    if sources is None:
        return None, [
            f"{pid}: no inputs: expected {pid}/{pid}__CT.nii.gz, {pid}/{pid}__PT.nii.gz "
            f"and {pid}/ehr.json in the inputs folder"
        ]
    missing = []
    if sources.ct is None:
        missing.append(f"{pid}__CT.nii.gz")
    if sources.pet is None:
        missing.append(f"{pid}__PT.nii.gz")
    if sources.ehr is None:
        missing.append("ehr.json" if (src / pid).is_dir() else f"{pid}__ehr.json")
    if missing:
        return sources, [f"{pid}: missing {', '.join(missing)}"]
    return sources, []


def convert_inputs(src: Path, dest: Path, patient_ids: Collection[str]) -> InputIndex:
    """Convert the inputs of ``patient_ids`` from ``src`` into a new store ``dest`` (a
    folder that must not exist yet). Raises :class:`InputsError` listing every
    problem of every case; ``dest`` is removed then."""
    src, dest = Path(src), Path(dest)
    if not src.is_dir():
        raise InputsError(
            [f"the inputs folder {src.name or src} does not exist or is not a folder"]
        )
    if dest.exists():
        raise InputsError([f"the destination {dest.name} exists already; choose a new folder"])
    if not patient_ids:
        raise InputsError(["no case to convert: the phase has no ground-truth case"])
    problems: list[str] = []
    dest.mkdir(parents=True)
    try:
        cases: dict[str, str] = {}
        parts: list[tuple[str, str]] = []
        for pid in sorted(set(patient_ids)):
            sources, found = _case_problems_before_reading(src, pid)
            problems += found
            if sources is None:
                continue
            encode = not problems  # after a problem the rest is only checked
            ct = pet = None
            if sources.ct is not None:
                ct = _image_mha(sources.ct, pid, problems, encode=encode)
            if sources.pet is not None:
                pet = _image_mha(sources.pet, pid, problems, encode=encode)
            ehr = None if sources.ehr is None else _ehr(sources.ehr, pid, pid, problems)
            if ct is None or pet is None or ehr is None or problems:
                continue  # nothing more is written once a problem is known
            folder = secrets.token_hex(8)
            cases[pid] = folder
            parts += [
                (f"{pid}/{slug}", digest)
                for slug, digest in _write_case(dest / folder, ct, pet, ehr)
            ]
        if problems:
            raise InputsError(problems)
        digest = combine_hashes(parts)
        index = {"version": INDEX_VERSION, "cases": cases, "sha256": digest}
        (dest / INDEX_NAME).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return InputIndex(root=dest, cases=cases, sha256=digest)


def load_input_index(dest: Path) -> InputIndex:
    """The store at ``dest``, checked: its index and every case folder it names."""
    dest = Path(dest)
    try:
        doc = json.loads((dest / INDEX_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputsError([f"{INDEX_NAME} of the inputs cannot be read ({exc})"]) from None
    if not isinstance(doc, dict) or doc.get("version") != INDEX_VERSION:
        raise InputsError([f"{INDEX_NAME} is not a version {INDEX_VERSION} inputs index"])
    cases, digest = doc.get("cases"), doc.get("sha256")
    if not isinstance(cases, dict) or not isinstance(digest, str):
        raise InputsError([f"{INDEX_NAME} lacks its cases or sha256"])
    problems = []
    for pid, folder in sorted(cases.items()):
        if not isinstance(folder, str) or not _FOLDER.fullmatch(folder):
            problems.append(f"{pid}: case folder {folder!r} is not a 16-hex name")
        elif not (dest / folder / "inputs.json").is_file():
            problems.append(f"{pid}: case folder {folder} or its inputs.json is missing")
    if problems:
        raise InputsError(problems)
    return InputIndex(root=dest, cases=dict(cases), sha256=digest)


def read_input_index(dest: Path) -> dict[str, Path]:
    """PatientID -> the case folder to mount as ``/input`` (see :func:`load_input_index`)."""
    index = load_input_index(dest)
    return {pid: index.case_dir(pid) for pid in index.cases}
