"""``python -m app serve|admin|submit|demo ...`` (the same commands as ``hecktor-eval``)."""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
