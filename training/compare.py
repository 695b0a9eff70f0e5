"""`python -m training.compare`: the paired-comparison CLI, kept at its documented name.

The command lives in training/evaluation/compare.py.
"""

from training.evaluation.compare import main

if __name__ == "__main__":
    raise SystemExit(main())
