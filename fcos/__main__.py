"""`python -m fcos` = `fcos`."""

import sys

from fcos.cli import main

sys.exit(main())
