"""Caps where they belong, checked against a real uvicorn server on 127.0.0.1:

- the upload size cap answers 413 before the body has been read in full (declared
  Content-Length: before a byte of it; chunked: while streaming), and nothing of the
  upload stays on disk;
- a NIfTI header's declared size is checked before any voxel buffer is allocated.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.cli.demo import ServerThread
from app.main import create_app
from tests.app.conftest import ORG, RecordingDispatcher, auth, free_port, make_settings
from tests.hostile import gz, nifti_raw

CAP = 1 << 20
BOUNDARY = "hostileboundary7MA4YWxkTrZu0gW"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, challenge: Any) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("caps")
    settings = make_settings(tmp / "data", f"sqlite:///{tmp / 'hecktor.db'}", max_upload_bytes=CAP)
    port = free_port()
    st = ServerThread(create_app(settings, dispatcher=RecordingDispatcher()), "127.0.0.1", port)
    st.start()
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=30) as c:
        r = c.post(
            "/api/v1/admin/phases",
            json={"name": "caps", "ground_truth": str(challenge.ground_truth), "tasks": [2]},
            headers=auth(ORG),
        )
        assert r.status_code == 201, r.text
        r = c.post("/api/v1/admin/teams", json={"name": "big"}, headers=auth(ORG))
        token = r.json()["token"]
    try:
        yield {"port": port, "token": token, "settings": settings, "base": base}
    finally:
        st.server.should_exit = True
        st.thread.join(timeout=30)


def _preamble() -> bytes:
    """The form fields, then the start of the file part (its data follows)."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="phase"\r\n\r\ncaps\r\n',
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="task"\r\n\r\n2\r\n',
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="p.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n",
    ]
    return "".join(parts).encode()


def _headers(server: dict[str, Any], extra: str) -> bytes:
    return (
        "POST /api/v1/submissions HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server['port']}\r\n"
        f"Authorization: Bearer {server['token']}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"{extra}\r\n"
    ).encode()


def _read_response(sock: socket.socket, timeout: float = 20.0) -> tuple[int, dict[str, Any]]:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, json.loads(body[:length] or b"{}")


def _nothing_stored(server: dict[str, Any]) -> None:
    s = server["settings"]
    assert not list(s.incoming_dir.iterdir()), "a partial upload stayed in incoming/"
    assert not list(s.submissions_dir.iterdir())
    with httpx.Client(base_url=server["base"]) as c:
        r = c.get("/api/v1/submissions", headers=auth(server["token"]))
        assert r.status_code == 200 and r.json() == []


def test_declared_length_over_the_cap_is_refused_before_the_body(server: dict[str, Any]) -> None:
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=20) as sock:
        sock.sendall(_headers(server, f"Content-Length: {100 << 20}\r\n"))  # no body byte sent
        t0 = time.monotonic()
        status, body = _read_response(sock)
    assert status == 413, body
    assert "larger than the limit of 1.0 MiB" in body["detail"]
    assert time.monotonic() - t0 < 5
    _nothing_stored(server)


def test_chunked_body_over_the_cap_is_refused_while_streaming(server: dict[str, Any]) -> None:
    planned = 64 << 20
    block = b"PatientID,Prediction\n" + b"X-1,0.5\n" * 8192  # ~64 KiB
    sent = 0
    status, body = 0, {}
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=20) as sock:
        sock.sendall(_headers(server, "Transfer-Encoding: chunked\r\n"))
        pre = _preamble()
        sock.sendall(b"%x\r\n%s\r\n" % (len(pre), pre))
        while sent < planned:
            readable, _, _ = select.select([sock], [], [], 0.005)
            if readable:
                status, body = _read_response(sock)
                break
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
            except (BrokenPipeError, ConnectionResetError):
                status, body = _read_response(sock)
                break
            sent += len(block)
    assert status == 413, body
    assert "larger than the limit of 1.0 MiB" in body["detail"]
    # refused after a little more than the cap (what the socket buffers held), not at the end
    assert CAP < sent < planned // 4, sent
    _nothing_stored(server)


def test_within_the_cap_is_accepted(server: dict[str, Any], challenge: Any) -> None:
    """The same server takes a normal upload afterwards (the cap is not a blanket refusal)."""
    with httpx.Client(base_url=server["base"], timeout=30) as c:
        r = c.post(
            "/api/v1/submissions",
            data={"phase": "caps", "task": "2"},
            files={"file": ("p.csv", challenge.archive("good", 2).read_bytes())},
            headers=auth(server["token"]),
        )
    assert r.status_code == 202, r.text


_PEAK_OF_READ = """
import sys, tracemalloc
from pathlib import Path
from evaluator.io.nifti import read_label_map
tracemalloc.start()
try:
    read_label_map(Path(sys.argv[1]), max_voxels=512 * 512 * 1024)
    print("read")
except Exception as e:
    print(type(e).__name__ + ": " + str(e))
print(tracemalloc.get_traced_memory()[1])
"""


def _peak_of_read(path: Path) -> tuple[str, int]:
    """The reader's outcome and its peak traced allocation, in a fresh process (threads
    other tests leave behind would count in this one)."""
    r = subprocess.run(
        [sys.executable, "-c", _PEAK_OF_READ, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    outcome, peak = r.stdout.strip().splitlines()[-2:]
    return outcome, int(peak)


def test_declared_image_size_is_checked_before_allocation(tmp_path: Path) -> None:
    """A 30-byte body declaring 4096^3 voxels (64 GiB) is refused by its header alone."""
    path = tmp_path / "huge.nii.gz"
    path.write_bytes(gz(nifti_raw(np.zeros((2, 2, 2), np.uint8), np.eye(4), shape=(4096,) * 3)))
    outcome, peak = _peak_of_read(path)
    assert outcome.startswith("LimitError") and "over the limit of" in outcome, outcome
    assert peak < 1 << 20, peak
    # and a header within the voxel cap but beyond the file's data: truncated, found
    # while decoding into a buffer of the declared size (not more)
    path.write_bytes(gz(nifti_raw(np.zeros((2, 2, 2), np.uint8), np.eye(4), shape=(256, 256, 64))))
    outcome, peak = _peak_of_read(path)
    assert "truncated" in outcome, outcome
    assert peak < (256 * 256 * 64) + (2 << 20), peak
