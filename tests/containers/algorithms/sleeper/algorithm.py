"""Test algorithm: says it started, then sleeps for an hour."""

import time

print("sleeping", flush=True)
time.sleep(3600)
