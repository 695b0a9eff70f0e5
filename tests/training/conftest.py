"""Fixtures shared by the training tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.training.data_helpers import write_eval_voc


@pytest.fixture()
def voc_root(tmp_path: Path) -> Path:
    """The evaluation CLIs' tiny VOC tree (data_helpers.EVAL_IMAGES), split `val`."""
    return write_eval_voc(tmp_path / "voc")


@pytest.fixture
def single_thread() -> Iterator[None]:
    """One intra-op torch thread: on a small shared CI box, more threads mostly spin and wait."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
