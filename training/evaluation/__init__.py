"""The evaluation CLIs' parts: which split and class mapping they read, their reports, and the
error analysis at an operating point (`python -m training.evaluation.error_analysis`)."""
