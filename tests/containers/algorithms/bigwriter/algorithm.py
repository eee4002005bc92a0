"""Test algorithm: writes 10 GB to /output, 4 MiB at a time."""

chunk = b"\x00\x01" * (2 << 20)
with open("/output/big.bin", "wb") as fh:
    for i in range(10 * 1024 // 4):
        fh.write(chunk)
        if i % 64 == 0:
            print(f"{(i + 1) * 4} MiB written", flush=True)
