"""Test algorithm: takes memory 64 MiB at a time, every page written, without end."""

held = []
while True:
    held.append(b"\x01" * (64 << 20))
    print(f"holding {len(held) * 64} MiB", flush=True)
