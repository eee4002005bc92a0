"""``/input/predictions.json``: grand-challenge's list of the submission's algorithm jobs.

Each job is ``{"pk", "status", "inputs", "outputs", ...}``; each input or output value is
``{"socket" | "interface": {...}, "value", "file", "image", "pk"}``. ``socket`` is the
current name of the field and ``interface`` its legacy alias: either is accepted. Only
the fields scoring needs are kept.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluator.gc.errors import GCInputError

__all__ = ["Job", "SocketValue", "read_jobs", "safe_relative_path"]

SUCCEEDED = "Succeeded"
_SAFE_PK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_PREDICTIONS_BYTES = 256 << 20


@dataclass(frozen=True, kw_only=True)
class SocketValue:
    """One input or output value of a job."""

    slug: str
    relative_path: str
    super_kind: str  # "Image", "File" or "Value"
    value: Any  # the JSON value when stored in the database, else None
    image_pk: str | None
    image_name: str | None


@dataclass(frozen=True, kw_only=True)
class Job:
    pk: str
    inputs: tuple[SocketValue, ...]
    outputs: tuple[SocketValue, ...]

    def input_named(self, slug: str, relative_path: str) -> SocketValue | None:
        """The input whose socket has this slug, else the one at this relative path."""
        for v in self.inputs:
            if v.slug == slug:
                return v
        for v in self.inputs:
            if v.relative_path == relative_path:
                return v
        return None


def safe_relative_path(text: str) -> bool:
    """Whether ``text`` is a relative path that stays inside the folder it is joined to."""
    parts = text.split("/")
    return bool(text) and not text.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def _socket_value(item: object, where: str) -> SocketValue | str:
    """The value, or the text of its problem."""
    if not isinstance(item, dict):
        return f"{where}: expected an object, found {type(item).__name__}"
    socket = item.get("socket")
    if socket is None:
        socket = item.get("interface")
    if not isinstance(socket, dict):
        return f'{where}: has neither a "socket" nor an "interface" object'
    slug = socket.get("slug")
    rel = socket.get("relative_path")
    super_kind = socket.get("super_kind")
    if not isinstance(rel, str) or not safe_relative_path(rel):
        return f"{where}: socket relative_path {rel!r} is not a relative path inside the job folder"
    image = item.get("image")
    image_pk = image_name = None
    if isinstance(image, dict):
        pk, name = image.get("pk"), image.get("name")
        image_pk = str(pk) if pk is not None else None
        image_name = name if isinstance(name, str) else None
    return SocketValue(
        slug=slug if isinstance(slug, str) else "",
        relative_path=rel,
        super_kind=super_kind if isinstance(super_kind, str) else "",
        value=item.get("value"),
        image_pk=image_pk,
        image_name=image_name,
    )


def _values(job: dict[str, Any], field: str, where: str, problems: list[str]) -> list[SocketValue]:
    items = job.get(field)
    if not isinstance(items, list):
        problems.append(f'{where}: "{field}" is {type(items).__name__}, expected a list')
        return []
    out: list[SocketValue] = []
    for i, item in enumerate(items):
        v = _socket_value(item, f"{where} {field}[{i}]")
        if isinstance(v, str):
            problems.append(v)
        else:
            out.append(v)
    return out


def _job(item: object, index: int, problems: list[str]) -> Job | None:
    where = f"predictions.json item {index}"
    if not isinstance(item, dict):
        problems.append(f"{where}: expected a job object, found {type(item).__name__}")
        return None
    pk = item.get("pk")
    if not isinstance(pk, str) or not _SAFE_PK.fullmatch(pk):
        problems.append(f"{where}: job pk {pk!r} is not a UUID-like string")
        return None
    where = f"job {pk}"
    status = item.get("status")
    if status != SUCCEEDED:
        problems.append(
            f"{where}: status is {status!r}, expected {SUCCEEDED!r}; grand-challenge "
            "evaluates a submission only once every job succeeded"
        )
    n = len(problems)
    inputs = _values(item, "inputs", where, problems)
    outputs = _values(item, "outputs", where, problems)
    if len(problems) > n:
        return None
    return Job(pk=pk, inputs=tuple(inputs), outputs=tuple(outputs))


def read_jobs(path: Path) -> list[Job]:
    """The jobs of ``predictions.json``, in file order.

    Raises :class:`GCInputError` listing every problem: a missing, unreadable or
    malformed file, a job without a pk, a repeated pk, a status other than
    "Succeeded", an input or output value without a socket.
    """
    if not path.is_file():
        raise GCInputError(
            [
                f"{path}: not found; the evaluation needs grand-challenge's predictions.json "
                "there (pass --input DIR for another folder)"
            ]
        )
    try:
        if path.stat().st_size > MAX_PREDICTIONS_BYTES:
            raise GCInputError([f"{path}: larger than {MAX_PREDICTIONS_BYTES:,} bytes"])
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise GCInputError([f"{path}: cannot be read ({exc.strerror})"]) from None
    except json.JSONDecodeError as exc:
        raise GCInputError(
            [f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"]
        ) from None
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise GCInputError([f"{path}: not valid JSON ({type(exc).__name__})"]) from None
    if not isinstance(data, list):
        raise GCInputError([f"{path}: expected a list of jobs, found {type(data).__name__}"])
    problems: list[str] = []
    jobs: list[Job] = []
    seen: set[str] = set()
    for i, item in enumerate(data):
        job = _job(item, i, problems)
        if job is None:
            continue
        if job.pk in seen:
            problems.append(f"job {job.pk}: listed twice in predictions.json")
            continue
        seen.add(job.pk)
        jobs.append(job)
    if not data:
        problems.append(f"{path}: holds no jobs; a submission has one job per case")
    if problems:
        raise GCInputError(problems)
    return jobs
