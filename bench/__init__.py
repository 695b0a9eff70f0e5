"""CPU speed benchmark of the detector: `python -m bench` (see bench/run.py, bench/RESULTS.md)."""
