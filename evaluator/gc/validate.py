"""One case's ``/output`` of an algorithm container checked as grand-challenge checks it
before an evaluation sees it, then staged in the layout ``hecktor-eval score`` reads.

The rules (GC-CONTRACT section 1), per declared output of the task
(:class:`evaluator.editions.base.AlgorithmOutput`):

- an image socket is a folder holding exactly one MetaImage (``.mha``): none is
  *missing*; a NIfTI, a TIFF, a ``.mhd``, two files or a sub-folder is *invalid*; the
  image must be a readable 3-D label map whose voxel values are the declared labels;
- a value socket is a JSON file holding one value of the declared kind (a number, a
  boolean, a string, anything), parsed strictly: NaN and Infinity, which grand-challenge
  stores as null and then refuses, are *invalid*, a boolean is not a number, and a
  string chosen from a set (the 2026 stages) must be one of the protocol's;
- every other entry under ``/output`` that no socket of the protocol declares is
  *extra* (hidden files too, named as such); the outputs the protocol's other tasks
  declare are allowed, and neither read nor scored, so that one image may serve every
  task of its edition (and must, where one job writes every task's outputs:
  ``ONE_JOB_ALL_TASKS``).

Messages are for participants: each names the path under ``/output``, the problem and
the fix, and never shows what a file holds beyond a short type description ("a
string"), so that a container cannot turn an error message into a copy of its hidden
inputs. A reader's own words, which may quote a header line, are kept apart in
``detail`` (organizer logs only). The work is bounded: symbolic links and special files
are refused without being followed, a value file is read only up to MAX_VALUE_BYTES, an
image's header is checked (its declared voxel count included) before its voxels are
decoded in one pass, and the walk looks only into folders a socket path runs through.

The voxels are read by the scorer's label-map reader, which accepts the values 0, 1
and 2 only: an edition's ``labels`` may narrow that set, not widen it.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from evaluator.editions.base import AlgorithmOutput
from evaluator.errors import FormatError, LabelError, LimitError
from evaluator.gc.collect import (
    IMAGE_SUFFIX,
    TIFF_SUFFIXES,
    copy_value_file,
    place_file,
    present_path,
    the_image,
)
from evaluator.gc.sockets import sockets_for
from evaluator.io.mha_header import MAX_HEADER, header_end, looks_like_mha
from evaluator.io.nifti import read_label_crop
from evaluator.protocol import Hecktor2026Protocol, Limits, Protocol

__all__ = [
    "MAX_VALUE_BYTES",
    "CaseOutputProblem",
    "Rule",
    "stage_case_outputs",
    "validate_case_outputs",
]

Rule = Literal["missing", "extra", "invalid"]

MAX_VALUE_BYTES = 4096  # a value file holds one JSON value ("T2", 1042.0, true)
MAX_LISTED_EXTRAS = 20  # extra entries named one by one; the rest are counted
MAX_SCANNED = 10_000  # entries looked at in one folder before the rest is only counted
_SAVE_MHA = "SimpleITK.WriteImage(image, path, useCompression=True)"
_HEAD = 544
_PATIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True, kw_only=True)
class CaseOutputProblem:
    """One problem of a case's outputs: which rule (``missing``, ``extra``,
    ``invalid``), the path under ``/output`` it concerns, the participant's message
    (path, problem, fix) and, for organizer logs only, a reader's own words."""

    rule: Rule
    path: str
    message: str
    detail: str = ""

    def __str__(self) -> str:
        return self.message


def validate_case_outputs(
    output_dir: Path, task: int, protocol: Protocol, *, limits: Limits | None = None
) -> list[CaseOutputProblem]:
    """The problems of one case's ``/output`` (``output_dir``) for ``task`` under
    ``protocol``'s sockets, in a stable order; empty when it is valid. Raises
    ``ValueError`` when the protocol has no such task or ``output_dir`` is no folder."""
    own, allowed = _sockets(task, protocol)
    if not output_dir.is_dir() or output_dir.is_symlink():
        raise ValueError(f"{output_dir} is not a folder")
    limits = limits or Limits()
    problems: list[CaseOutputProblem] = []
    for socket in own:
        problems += _check_socket(output_dir, socket, task, protocol, limits)
    problems += _extras(output_dir, task, protocol, own, allowed)
    return problems


def stage_case_outputs(
    output_dir: Path, task: int, protocol: Protocol, patient_id: str, stage_root: Path
) -> None:
    """Place one validated case's outputs for ``task`` where ``score_submission`` reads
    them: ``<stage_root>/<PatientID>.mha`` for an image output, ``<stage_root>/
    <PatientID>/<case file>`` (``rfs.json``, ``t-stage.json``) for a value output. Files
    are hard-linked or copied, never symbolically linked, so the staged folder outlives
    the case's output volume. Raises ``ValueError`` for an output that is not there."""
    if not _PATIENT_ID.fullmatch(patient_id) or patient_id in (".", ".."):
        raise ValueError(f"{patient_id!r} is not a PatientID")
    own, _ = _sockets(task, protocol)
    stage_root.mkdir(parents=True, exist_ok=True)
    for socket in own:
        rel = present_path(output_dir, socket)
        if rel is None:
            raise ValueError(f"{socket.relative_path}: no such output in {output_dir}")
        source = output_dir / rel
        if socket.image:
            place_file(the_image(source), stage_root / f"{patient_id}{IMAGE_SUFFIX}", symlink=False)
        else:
            copy_value_file(source, stage_root / patient_id / socket.case_file)


# --- the sockets ------------------------------------------------------------------------


def _sockets(
    task: int, protocol: Protocol
) -> tuple[tuple[AlgorithmOutput, ...], dict[str, tuple[int, AlgorithmOutput]]]:
    """The task's own outputs, and every relative path allowed under /output with the
    task and socket it belongs to."""
    try:
        table = sockets_for(protocol)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None
    if task not in table.tasks:
        raise ValueError(f"protocol {protocol.name!r} declares no outputs for task {task!r}")
    # an algorithm may serve every task of its edition (one image for all phases): the
    # outputs the other tasks declare are allowed, neither read nor scored
    tasks = sorted(table.tasks)
    allowed: dict[str, tuple[int, AlgorithmOutput]] = {}
    for t in [task, *(t for t in tasks if t != task)]:
        for socket in table.tasks[t]:
            for rel in (socket.relative_path, *socket.also):
                allowed.setdefault(rel, (t, socket))
    return table.tasks[task], allowed


def _declared(sockets: tuple[AlgorithmOutput, ...]) -> str:
    return ", ".join(
        f"{s.relative_path}/ (one .mha)" if s.image else s.relative_path for s in sockets
    )


def _shown(rel: str) -> str:
    """A participant-chosen path as it may be shown: printable and short, else escaped."""
    if rel.isprintable() and len(rel) <= 80:
        return rel
    text = repr(rel)
    return text if len(text) <= 80 else text[:77] + "..."


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def _not_regular(rel: str, st: os.stat_result, want: str) -> CaseOutputProblem | None:
    """A symbolic link or a special file where a file or folder is expected."""
    if stat.S_ISLNK(st.st_mode):
        what = "a symbolic link"
    elif not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        what = "a special file (not a regular file)"
    else:
        return None
    return CaseOutputProblem(
        rule="invalid",
        path=rel,
        message=f"{_shown(rel)} is {what}, which is not followed or read; write {want} "
        "itself at that path",
    )


# --- one socket -------------------------------------------------------------------------


def _present(output_dir: Path, socket: AlgorithmOutput) -> list[str]:
    """The socket's accepted relative paths that exist (links included), documented
    path first."""
    return [
        rel for rel in (socket.relative_path, *socket.also) if os.path.lexists(output_dir / rel)
    ]


def _check_socket(
    output_dir: Path, socket: AlgorithmOutput, task: int, protocol: Protocol, limits: Limits
) -> list[CaseOutputProblem]:
    found = _present(output_dir, socket)
    if not found:
        return [_missing(socket, task, protocol)]
    rel, *others = found
    problems = [
        CaseOutputProblem(
            rule="extra",
            path=other,
            message=f"{other}: the same output is also written to {rel}; write it once, "
            f"to {socket.relative_path}",
        )
        for other in others
    ]
    if socket.image:
        problems += _check_image_folder(output_dir, rel, socket, limits)
    else:
        problem = _check_value(output_dir, rel, socket, protocol)
        if problem is not None:
            problems.append(problem)
    return problems


def _missing(socket: AlgorithmOutput, task: int, protocol: Protocol) -> CaseOutputProblem:
    rel = socket.relative_path
    if socket.image:
        message = (
            f"{rel} is missing: the algorithm wrote no Task {task} segmentation; write one "
            f"label map to /output/{rel}/output.mha ({_SAVE_MHA})"
        )
    else:
        message = (
            f"{rel} is missing: the algorithm wrote no Task {task} {socket.case_file}; "
            f"write {_kind_text(socket)} as JSON to /output/{rel} (e.g. {_example(socket, protocol)})"
        )
    return CaseOutputProblem(rule="missing", path=rel, message=message)


# --- images -----------------------------------------------------------------------------


def _check_image_folder(
    output_dir: Path, rel: str, socket: AlgorithmOutput, limits: Limits
) -> list[CaseOutputProblem]:
    folder = output_dir / rel
    st = folder.lstat()
    link = _not_regular(rel, st, "the folder")
    if link is not None:
        return [link]
    fix = f"write exactly one label map to /output/{rel}/output.mha ({_SAVE_MHA})"
    if not stat.S_ISDIR(st.st_mode):
        return [
            CaseOutputProblem(
                rule="invalid",
                path=rel,
                message=f"{rel} is a file, not a folder: an image output is a folder "
                f"holding one .mha image; {fix}",
            )
        ]
    entries, hidden, more = _scan(folder)
    problems = [_hidden(f"{rel}/{name}") for name in hidden[:MAX_LISTED_EXTRAS]]
    if not entries:
        if more:
            return [*problems, _too_many(rel, more)]
        problems.append(
            CaseOutputProblem(
                rule="missing",
                path=rel,
                message=f"{rel} is an empty folder: the algorithm wrote no segmentation; {fix}",
            )
        )
        return problems
    if len(entries) > 1 or more:
        names = ", ".join(_shown(n + ("/" if d else "")) for n, d, _ in entries[:3])
        n = len(entries) + more
        problems.append(
            CaseOutputProblem(
                rule="invalid",
                path=rel,
                message=f"{rel} holds {n} entries ({names}{', ...' if n > 3 else ''}): "
                f"grand-challenge takes exactly one image per image output; {fix}",
            )
        )
        return problems
    name, is_dir, entry_st = entries[0]
    path = f"{rel}/{name}"
    if is_dir:
        problems.append(
            CaseOutputProblem(
                rule="invalid",
                path=path,
                message=f"{_shown(path)} is a sub-folder: the image must be written directly "
                f"in {rel}/, not in a folder inside it; {fix}",
            )
        )
        return problems
    problem = _not_regular(path, entry_st, "the image")
    if problem is None:
        problem = _check_image_file(output_dir, path, socket, limits, fix)
    if problem is not None:
        problems.append(problem)
    return problems


def _scan(folder: Path) -> tuple[list[tuple[str, bool, os.stat_result]], list[str], int]:
    """(visible entries: name, is a real folder, lstat; hidden names; entries beyond
    MAX_SCANNED, only counted), names sorted."""
    entries: list[tuple[str, bool, os.stat_result]] = []
    hidden: list[str] = []
    more = 0
    with os.scandir(folder) as it:
        for entry in it:
            if len(entries) + len(hidden) >= MAX_SCANNED:
                more += 1
                continue
            if entry.name.startswith("."):
                hidden.append(entry.name)
                continue
            st = entry.stat(follow_symlinks=False)
            entries.append((entry.name, stat.S_ISDIR(st.st_mode), st))
    entries.sort(key=lambda e: e[0])
    hidden.sort()
    return entries, hidden, more


def _check_image_file(
    output_dir: Path, path: str, socket: AlgorithmOutput, limits: Limits, fix: str
) -> CaseOutputProblem | None:
    low = path.lower()
    shown = _shown(path)

    def invalid(message: str, detail: str = "") -> CaseOutputProblem:
        return CaseOutputProblem(rule="invalid", path=path, message=message, detail=detail)

    if low.endswith((".nii.gz", ".nii")):
        return invalid(
            f"{shown} is a NIfTI file: grand-challenge accepts only MetaImage (.mha) or TIFF "
            f"image outputs and fails the job on a NIfTI; {fix}"
        )
    if low.endswith(TIFF_SUFFIXES):
        return invalid(
            f"{shown} is a TIFF file: a segmentation is scored from a MetaImage label map; {fix}"
        )
    if low.endswith(".mhd"):
        return invalid(
            f"{shown} is a .mhd header (its voxels in a separate file): write the label map "
            f"as one .mha file instead; {fix}"
        )
    if not low.endswith(IMAGE_SUFFIX):
        return invalid(f"{shown} is not named .mha: the image output must be a .mha file; {fix}")
    file = output_dir / path
    try:
        head = _read_head(file, _HEAD)
    except OSError as exc:
        return invalid(f"{shown} cannot be opened; {fix}", detail=str(exc.strerror))
    if not head:
        return invalid(f"{shown} is empty (0 bytes); {fix}")
    if not looks_like_mha(head):
        return invalid(
            f"{shown} is not a MetaImage file (its first bytes are not an MHA header); "
            f"write it with {_SAVE_MHA}"
        )
    header_problem = _check_mha_header(file, shown, limits, fix)
    if header_problem is not None:
        return CaseOutputProblem(rule="invalid", path=path, message=header_problem)
    labels = socket.labels
    allowed = ", ".join(str(v) for v in labels)
    try:
        crop = read_label_crop(file, max_voxels=limits.max_voxels, name=path)
    except LabelError as exc:
        return invalid(_label_message(shown, allowed), detail=exc.message)
    except LimitError as exc:
        return invalid(
            f"{shown} declares more voxels than a label map may hold "
            f"({limits.max_voxels:,}); a segmentation is on the CT grid; {fix}",
            detail=exc.message,
        )
    except FormatError as exc:
        return invalid(
            f"{shown} cannot be read as a MetaImage label map (its header or voxel data "
            "are malformed, truncated or in an unsupported encoding, or its values are not "
            f"whole numbers); {fix}",
            detail=exc.message,
        )
    if labels and crop.crop is not None:
        present = {int(v) for v in np.unique(crop.crop).tolist()}
        if not present <= set(labels):
            return invalid(_label_message(shown, allowed))
    return None


def _label_message(shown: str, allowed: str) -> str:
    return (
        f"{shown} holds voxel values other than the labels {allowed} (0 background, 1 GTVp, "
        "2 GTVn); map every other value to one of these and write the label map as uint8 "
        f"({_SAVE_MHA})"
    )


def _read_head(file: Path, n: int) -> bytes:
    fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        return f.read(n)


def _header_fields(file: Path) -> dict[str, str] | None:
    """The ``Key = Value`` lines of a MetaImage header (read up to MAX_HEADER bytes),
    or None when no ``ElementDataFile`` line ends it there (the reader names that)."""
    buf = _read_head(file, MAX_HEADER)
    end = header_end(buf)
    if end is None:
        return None
    fields: dict[str, str] = {}
    for line in buf[:end].decode("ascii", errors="replace").splitlines():
        key, eq, value = line.partition("=")
        if eq:
            fields.setdefault(key.strip(), value.strip())
    return fields


def _check_mha_header(file: Path, shown: str, limits: Limits, fix: str) -> str | None:
    """What is wrong with the header's dimensions, in words that show no header text;
    None when they are those of a 3-D, one-channel image of an allowed size."""
    try:
        fields = _header_fields(file)
    except OSError:
        return f"{shown} cannot be read; {fix}"
    if fields is None:
        return None
    ndims = fields.get("NDims")
    if ndims != "3":
        found = f"a {ndims}-D image" if ndims in ("1", "2", "4", "5", "6") else "not 3-D"
        return (
            f"{shown} is {found} (its NDims is not 3): a segmentation is a 3-D label map "
            f"on the CT grid (no time or channel axis); {fix}"
        )
    if fields.get("ElementNumberOfChannels", "1") != "1":
        return (
            f"{shown} holds several values per voxel (ElementNumberOfChannels is not 1): "
            f"a label map holds one value per voxel; {fix}"
        )
    dims = fields.get("DimSize", "").split()
    declared = len(dims) == 3 and all(d.isdigit() and len(d) <= 12 for d in dims)
    if declared and math.prod(int(d) for d in dims) > limits.max_voxels:
        return (
            f"{shown} declares more voxels than a label map may hold "
            f"({limits.max_voxels:,}); a segmentation is on the CT grid; {fix}"
        )
    return None


# --- values -----------------------------------------------------------------------------


def _kind_text(socket: AlgorithmOutput) -> str:
    return {
        "number": "a number",
        "boolean": "true or false",
        "number_or_boolean": "a number or true/false",
        "string": "a string",
        "any": "one JSON value",
    }[socket.value]


def _example(socket: AlgorithmOutput, protocol: Protocol) -> str:
    """A valid value of the socket, as JSON (the second allowed string, e.g. "T2")."""
    if socket.example:
        return socket.example
    if socket.value == "boolean":
        return "true"
    if socket.value == "string":
        allowed = _classes(socket, protocol)
        return json.dumps(allowed[min(1, len(allowed) - 1)] if allowed else "text")
    return "1042.0"


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise _NonFinite(name)


def _type_of(value: object) -> str:
    """A short description of a JSON value's type, never its content."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _check_value(
    output_dir: Path, rel: str, socket: AlgorithmOutput, protocol: Protocol
) -> CaseOutputProblem | None:
    file = output_dir / rel
    st = file.lstat()
    link = _not_regular(rel, st, "the JSON file")
    if link is not None:
        return link
    example = _example(socket, protocol)
    fix = f"write {_kind_text(socket)} as JSON, e.g. json.dump({example}, f)"

    def invalid(message: str) -> CaseOutputProblem:
        return CaseOutputProblem(rule="invalid", path=rel, message=message)

    if stat.S_ISDIR(st.st_mode):
        return invalid(f"{rel} is a folder, not a JSON file; {fix} to /output/{rel}")
    if st.st_size > MAX_VALUE_BYTES:
        return invalid(
            f"{rel} is {st.st_size:,} bytes: a value output holds one JSON value (at most "
            f"{MAX_VALUE_BYTES:,} bytes); {fix}"
        )
    try:
        data = _read_head(file, MAX_VALUE_BYTES + 1)
    except OSError:
        return invalid(f"{rel} cannot be read; {fix}")
    if not data.strip():
        return invalid(f"{rel} is empty; {fix}")
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except _NonFinite as exc:
        word = str(exc.args[0])
        return invalid(
            f"{rel} holds {word}, which grand-challenge stores as null and then refuses "
            f"(not {_kind_text(socket)}); write a finite value, e.g. {example}"
        )
    except (ValueError, RecursionError):
        return invalid(f"{rel} is not valid JSON (UTF-8 text of one JSON value); {fix}")
    return _check_kind(rel, value, socket, protocol, fix)


def _check_kind(
    rel: str, value: object, socket: AlgorithmOutput, protocol: Protocol, fix: str
) -> CaseOutputProblem | None:
    def invalid(message: str) -> CaseOutputProblem:
        return CaseOutputProblem(rule="invalid", path=rel, message=message)

    kind = socket.value
    found = _type_of(value)
    if kind == "number_or_boolean" and isinstance(value, bool):
        return None
    if kind in ("number", "number_or_boolean"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            hint = " (write the number without quotes)" if isinstance(value, str) else ""
            return invalid(f"{rel} holds {found}, not a number{hint}; {fix}")
        try:
            finite = math.isfinite(float(value))
        except OverflowError:
            finite = False
        if not finite:
            return invalid(f"{rel} holds a number too large to be finite; {fix}")
        return None
    if kind == "boolean":
        if not isinstance(value, bool):
            return invalid(f"{rel} holds {found}, not true or false; {fix}")
        return None
    if kind == "string":
        if not isinstance(value, str):
            return invalid(f"{rel} holds {found}, not a string; {fix}")
        allowed = _classes(socket, protocol)
        if allowed and _class_of(value, protocol) not in allowed:
            return invalid(
                f"{rel} holds a string that is not one of {', '.join(allowed)}; write one "
                f"of them, e.g. json.dump({_example(socket, protocol)}, f)"
            )
        return None
    return None


def _classes(socket: AlgorithmOutput, protocol: Protocol) -> tuple[str, ...]:
    """The allowed strings of a value output, from the protocol field it names."""
    if not socket.classes:
        return ()
    values = getattr(protocol, socket.classes, None)
    if not isinstance(values, tuple):
        raise ValueError(
            f"{socket.relative_path}: protocol {protocol.name!r} has no field "
            f"{socket.classes!r} listing the allowed values"
        )
    return tuple(str(v) for v in values)


def _class_of(text: str, protocol: Protocol) -> str | None:
    """A class as the scorer reads it: a stage in any case or an alias (``N2b``) is the
    protocol's stage."""
    if isinstance(protocol, Hecktor2026Protocol):
        return protocol.stage_of(text)
    return text


# --- entries no socket declares ----------------------------------------------------------


def _hidden(rel: str) -> CaseOutputProblem:
    return CaseOutputProblem(
        rule="extra",
        path=rel,
        message=f"{_shown(rel)} is a hidden file (a name starting with '.', e.g. left by "
        "macOS or an editor) that no output declares; do not write it to /output (use /tmp "
        "for scratch files)",
    )


def _too_many(rel: str, n: int) -> CaseOutputProblem:
    return CaseOutputProblem(
        rule="extra",
        path=rel,
        message=f"{rel or '/output'} holds {n:,} more entries than are looked at "
        f"({MAX_SCANNED:,}); write only the declared outputs to /output (use /tmp for "
        "scratch files)",
    )


def _extras(
    output_dir: Path,
    task: int,
    protocol: Protocol,
    own: tuple[AlgorithmOutput, ...],
    allowed: dict[str, tuple[int, AlgorithmOutput]],
) -> list[CaseOutputProblem]:
    """Entries under /output that no allowed socket path is or runs through."""
    parents = {rel.rsplit("/", i)[0] for rel in allowed for i in range(1, rel.count("/") + 1)}
    declared = _declared(own)
    found: list[CaseOutputProblem] = []
    folders = [""]
    while folders:
        base = folders.pop(0)
        entries, hidden, more = _scan(output_dir / base if base else output_dir)
        for name in hidden:
            found.append(_hidden(f"{base}/{name}" if base else name))
        for name, is_dir, _ in entries:
            rel = f"{base}/{name}" if base else name
            if rel in allowed:
                continue
            if rel in parents and is_dir:
                folders.append(rel)
                continue
            message = (
                f"{_shown(rel)} is not an output of Task {task}: no socket of "
                f"{protocol.name} reads it (the outputs are {declared}); remove it, "
                "or write scratch files to /tmp"
            )
            found.append(CaseOutputProblem(rule="extra", path=rel, message=message))
        if more:
            found.append(_too_many(base, more))
    if len(found) > MAX_LISTED_EXTRAS:
        n = len(found) - (MAX_LISTED_EXTRAS - 1)
        found = [
            *found[: MAX_LISTED_EXTRAS - 1],
            CaseOutputProblem(
                rule="extra",
                path="",
                message=f"... and {n:,} more entries under /output that no output "
                f"declares; write only {declared}",
            ),
        ]
    return found
