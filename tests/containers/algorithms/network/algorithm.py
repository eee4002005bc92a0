"""Test algorithm: tries to reach the outside and the host.

Targets: 1.1.1.1:53, the usual container gateways, and the [host, port] pairs listed in
/input/targets.json when there is one. Prints what each attempt gave; exits 3 when any
connection succeeded, else writes valid-looking outputs and exits 0."""

import json
import socket
from pathlib import Path

targets: list[list[object]] = [
    ["1.1.1.1", 53],
    ["10.88.0.1", 53],
    ["172.17.0.1", 53],
    ["169.254.169.254", 80],
]
extra = Path("/input/targets.json")
if extra.exists():
    targets += json.loads(extra.read_text())
connected = 0
for host, port in targets:
    try:
        with socket.create_connection((str(host), int(str(port))), timeout=2):
            print(f"connect {host}:{port}: CONNECTED", flush=True)
            connected += 1
    except OSError as exc:
        print(f"connect {host}:{port}: refused ({exc})", flush=True)
try:
    print("resolve example.org:", socket.gethostbyname("example.org"), flush=True)
    connected += 1
except OSError as exc:
    print(f"resolve example.org: failed ({exc})", flush=True)
if connected:
    raise SystemExit(3)
Path("/output/rfs.json").write_text("1.5")
Path("/output/hpv-status.json").write_text("0.5")
