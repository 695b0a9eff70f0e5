"""`python -m export --help`: see export.cli."""

from __future__ import annotations

import sys

from export.cli import main

if __name__ == "__main__":
    sys.exit(main())
