"""Test algorithm: prints a few lines to stderr, then fails with exit code 2."""

import sys

print("loading the model", file=sys.stderr)
print("predicting case 1", file=sys.stderr)
print("error: model weights missing in /opt/ml/model", file=sys.stderr)
print("", file=sys.stderr)
sys.exit(2)
