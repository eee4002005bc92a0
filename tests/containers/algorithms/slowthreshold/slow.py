"""Test algorithm: sleeps 3 s, then runs the threshold algorithm (its image's
/opt/algorithm/algorithm.py), so that a case's container runs for a few seconds."""

import runpy
import time

print("sleeping 3 s", flush=True)
time.sleep(3)
runpy.run_path("/opt/algorithm/algorithm.py", run_name="__main__")
