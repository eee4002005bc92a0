"""Test algorithm: forks without end; every child forks too. The first process says how
many children it got before the first refused fork, then keeps trying."""

import errno
import os
import time

children = 0
told = False
while True:
    try:
        pid = os.fork()
    except OSError as exc:
        if not told:
            print(
                f"fork refused after {children} children: {errno.errorcode.get(exc.errno or 0)}",
                flush=True,
            )
            told = True
        time.sleep(0.01)
        continue
    if pid == 0:
        told = True  # only the first process reports
        children = 0
    else:
        children += 1
