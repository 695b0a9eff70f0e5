"""The test suite (tests/<area>/ mirrors the packages; tests/conftest.py holds the shared
fixtures). Shared here: the tiny test models' class names and `wait_until`, the one way a test
waits for something to happen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# The class names of the `tiny` test models: tests/conftest.py's tiny_onnx_path, the export
# tests' perturbed model and the browser test's demo model.
TINY_CLASSES: tuple[str, ...] = ("cat", "dog", "person")


def wait_until(
    condition: Callable[[], T], timeout_s: float = 10.0, interval_s: float = 0.01,
    what: str | Callable[[], object] = "the condition",
) -> T:  # fmt: skip
    """Poll `condition` every `interval_s` until it returns something truthy, and return that;
    after `timeout_s` fail with an AssertionError naming `what` (a string, or a callable
    evaluated then, e.g. the state that was waited on)."""
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout_s} s: {what() if callable(what) else what}")
        time.sleep(interval_s)
    return result
