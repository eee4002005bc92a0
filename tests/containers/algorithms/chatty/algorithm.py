"""Test algorithm: 40 MB of numbered lines, half on stdout, half on stderr, then one last
stderr line."""

import sys

block = "x" * 90
for i in range(200_000):
    stream = sys.stdout if i % 2 == 0 else sys.stderr
    stream.write(f"line {i:06d} {block}\n")
sys.stdout.flush()
print("all written", file=sys.stderr)
