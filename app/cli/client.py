"""The participants' HTTP client (httpx): upload an archive (or an algorithm's image
tarball and model), wait for its result.

Used by ``hecktor-eval submit`` and by the demo, which goes through the same API.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, cast

import httpx

Progress = Callable[[int, int], None]
FINAL = ("scored", "valid", "failed")


class ApiError(Exception):
    """An HTTP error answered by the service: its status, detail and error list."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.errors = errors or []


class _ProgressReader:
    """A file wrapper that reports how many bytes httpx has read for the upload; the
    second of two files reports after the first (``offset``, of ``total``)."""

    def __init__(
        self, path: Path, progress: Progress | None, *, offset: int = 0, total: int | None = None
    ) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 - closed by the caller
        self._size = os.fstat(self._f.fileno()).st_size
        self._offset = offset
        self._total = total if total is not None else self._size
        self._done = 0
        self._progress = progress
        self.name = path.name

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._done += len(data)
        if self._progress is not None:
            self._progress(min(self._offset + self._done, self._total), self._total)
        return data

    def fileno(self) -> int:
        return self._f.fileno()

    def seek(self, offset: int, whence: int = 0) -> int:
        pos = self._f.seek(offset, whence)
        if offset == 0 and whence == 0:
            self._done = 0
        return pos

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        self._f.close()


def raise_for_api(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        detail = str(body.get("detail", response.reason_phrase))
        errors = list(body.get("errors") or [])
    except ValueError:
        detail, errors = response.text[:500] or response.reason_phrase, []
    raise ApiError(response.status_code, detail, errors)


def make_client(server: str, token: str | None, *, timeout: float = 60.0) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=server.rstrip("/"),
        headers=headers,
        timeout=httpx.Timeout(timeout, write=None),
    )


def limits(
    client: httpx.Client, *, phase: str, task: int, dry_run: bool, size: int
) -> dict[str, Any]:
    """The phase's limits for an upload of ``size`` bytes (``GET /phases/{phase}/limits``);
    raises :class:`ApiError` with the refusal the upload itself would get."""
    params = {"task": str(task), "size": str(size), "dry_run": "true" if dry_run else "false"}
    response = client.get(f"/api/v1/phases/{phase}/limits", params=params)
    raise_for_api(response)
    return cast(dict[str, Any], response.json())


def upload(
    client: httpx.Client,
    *,
    phase: str,
    task: int,
    archive: Path,
    dry_run: bool = False,
    progress: Progress | None = None,
    model: Path | None = None,
) -> dict[str, Any]:
    """POST the archive or image tarball (fields ``phase`` and ``task`` go first, then
    ``file``, then an algorithm's ``model`` tarball when given)."""
    size = Path(archive).stat().st_size
    total = size + (Path(model).stat().st_size if model is not None else 0)
    readers = [_ProgressReader(Path(archive), progress, total=total)]
    if model is not None:
        readers.append(_ProgressReader(Path(model), progress, offset=size, total=total))
    try:
        # file-like objects httpx streams from (read() reports the progress)
        files = [
            (field, (r.name, cast(IO[bytes], r), "application/octet-stream"))
            for field, r in zip(("file", "model"), readers, strict=False)
        ]
        response = client.post(
            "/api/v1/submissions",
            params={"dry_run": "true"} if dry_run else None,
            data={"phase": phase, "task": str(task)},
            files=files,
        )
    finally:
        for r in readers:
            r.close()
    raise_for_api(response)
    return response.json()


def status(client: httpx.Client, submission_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/submissions/{submission_id}")
    raise_for_api(response)
    return response.json()


def wait(
    client: httpx.Client,
    submission_id: int,
    *,
    progress: Progress | None = None,
    timeout: float = 3600.0,
    interval: float = 0.5,
) -> dict[str, Any]:
    """Poll until the submission is scored, valid or failed; returns its last status."""
    deadline = time.monotonic() + timeout
    while True:
        doc = status(client, submission_id)
        if progress is not None:
            p = doc.get("progress") or {}
            progress(int(p.get("done", 0)), int(p.get("total", 0)))
        if doc["status"] in FINAL:
            return doc
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"submission {submission_id} is still {doc['status']} after {timeout:.0f} s"
            )
        time.sleep(interval)


def leaderboard(client: httpx.Client, phase: str, task: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/leaderboards/{phase}/{task}")
    raise_for_api(response)
    return response.json()
