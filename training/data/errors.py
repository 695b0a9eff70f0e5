"""The one error type of the dataset layer."""

from __future__ import annotations


class DatasetError(Exception):
    """An annotation or image problem; the message always names the offending file."""
