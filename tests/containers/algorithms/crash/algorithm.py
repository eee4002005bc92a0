"""Test algorithm: prints a few lines to stderr, then fails with exit code 2 (or the
code in /input/exit_code.json, when there is one)."""

import json
import sys
from pathlib import Path

print("loading the model", file=sys.stderr)
print("predicting case 1", file=sys.stderr)
print("error: model weights missing in /opt/ml/model", file=sys.stderr)
print("", file=sys.stderr)
code = Path("/input/exit_code.json")
sys.exit(json.loads(code.read_text()) if code.exists() else 2)
