"""Fixtures shared by the evaluation CLIs' tests (evaluate, errors, compare)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.test_evaluate import write_voc


@pytest.fixture()
def voc_root(tmp_path: Path) -> Path:
    """A tiny VOC tree: three images of cats, dogs, people and a bird (test_evaluate.IMAGES)."""
    return write_voc(tmp_path / "voc")
