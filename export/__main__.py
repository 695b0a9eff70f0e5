"""`python -m export --help`: see export.exporter.cli."""

from __future__ import annotations

import sys

from export.exporter.cli import main

if __name__ == "__main__":
    sys.exit(main())
