"""`python -m training` -> training.cli.main."""

from training.cli import main

raise SystemExit(main())
