"""`python -m training.evaluate`: the evaluation CLI, kept at its documented name.

The command lives in training/evaluation/evaluate.py; the library it runs in the other modules
of training/evaluation/ (the package's docstring maps them).
"""

from training.evaluation.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
