"""Hand-made YOLO-format datasets (Ultralytics and Roboflow layouts) for the tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

# Per image: (file stem, (width, height), label lines or None for no label file).
Labels = Sequence[str] | None


def write_split(
    root: Path, images: Sequence[tuple[str, tuple[int, int], Labels]], seed: int = 0
) -> None:
    """root/images/<stem>.jpg and root/labels/<stem>.txt (none where the lines are None)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for stem, (w, h), lines in images:
        pixels = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{stem}.jpg", quality=85)
        if lines is not None:
            (root / "labels" / f"{stem}.txt").write_text("".join(f"{x}\n" for x in lines))


def roboflow_dataset(root: Path, names_yaml: str = "['cat', 'dog']") -> Path:
    """Roboflow's export: data.yaml with ../train/images paths, train/ valid/ test/ beside it.

    train: a (0.5, 0.5, 0.5, 0.5) cat, a dog and a cat; an empty label file; an image
    without a label file; one with a degenerate box, an out-of-range box, an unknown class
    id and a malformed line next to a good dog. valid: one cat. test: one dog and one cat.
    """
    write_split(root / "train", [
        ("a", (200, 100), ["0 0.5 0.5 0.5 0.5"]),
        ("b", (100, 100), ["1 0.25 0.25 0.2 0.2", "0 0.75 0.75 0.2 0.4"]),
        ("c", (120, 90), []),
        ("d", (90, 120), None),
        ("e", (100, 100), ["1 0.5 0.5 0.3 0.3", "0 0.5 0.5 0 0.2", "0 1.4 0.5 0.2 0.2",
                           "7 0.5 0.5 0.1 0.1", "0 0.5 zero 0.1 0.1"]),
    ], seed=1)  # fmt: skip
    write_split(root / "valid", [("v", (100, 80), ["0 0.5 0.5 0.4 0.4"])], seed=2)
    write_split(root / "test", [("t", (100, 100), ["1 0.3 0.3 0.2 0.2", "0 0.7 0.7 0.3 0.3"])],
                seed=3)  # fmt: skip
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\n"
        f"nc: 2\nnames: {names_yaml}\n\nroboflow:\n  workspace: w\n  project: p\n  version: 1\n"
    )
    return root / "data.yaml"
