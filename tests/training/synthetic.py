"""Tiny synthetic VOC-layout datasets for trainer tests: coloured rectangles on noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model.checkpoint import save_weights_only
from model.config import get_preset
from model.fcos import FCOS
from tests.training.data_helpers import write_annotation, write_split
from training.cli import main

COLOURS = {"red": (230, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 230)}


def make_voc(
    root: Path, num_images: int = 6, size: int = 128, classes: tuple[str, ...] = ("red", "green"),
    max_objects: int = 3, seed: int = 0, split: str = "train",
) -> Path:  # fmt: skip
    """Write `num_images` images with 1..max_objects rectangles into root (one VOC year dir)."""
    rng = np.random.default_rng(seed)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(num_images):
        image_id = f"img{i:03d}"
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8) // 3 + 60
        objects: list[tuple[str, int, int, int, int]] = []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            placed = _place(rng, size, objects)
            if placed is None:
                continue
            x1, y1, w, h = placed
            name = classes[int(rng.integers(len(classes)))]
            pixels[y1 : y1 + h, x1 : x1 + w] = COLOURS[name]
            objects.append((name, x1, y1, x1 + w, y1 + h))
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{image_id}.png")
        voc_objects = [(n, a + 1, b + 1, c, d, 0) for n, a, b, c, d in objects]  # 1-based
        write_annotation(root, image_id, f"{image_id}.png", size, size, voc_objects)
        ids.append(image_id)
    write_split(root, ids, split)
    return root


def _place(
    rng: np.random.Generator, size: int, objects: list[tuple[str, int, int, int, int]]
) -> tuple[int, int, int, int] | None:
    """A rectangle (x1, y1, w, h) that does not overlap `objects` (None after 50 tries)."""
    for _ in range(50):
        w, h = (int(v) for v in rng.integers(size // 6, size // 2, 2))
        x1, y1 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
        if all(
            x1 >= c + 2 or x1 + w + 2 <= a or y1 >= d + 2 or y1 + h + 2 <= b
            for _, a, b, c, d in objects
        ):
            return x1, y1, w, h
    return None



def add_val_split(voc: Path) -> None:
    """Make a make_voc tree's train split its val split too (validation on the train images)."""
    main_dir = voc / "ImageSets" / "Main"
    (main_dir / "val.txt").write_text((main_dir / "train.txt").read_text())


def tiny_args(data_root: Path, out: Path, *extra: str) -> list[str]:
    """CLI flags of a tiny, fast CPU run on a make_voc tree at data_root/VOC (validated when
    the tree has a val split: add_val_split)."""
    return [
        "--preset", "tiny", "--input-size", "0", "--data", str(data_root / "VOC"),
        "--classes", "red,green", "--batch-size", "2", "--workers", "0",
        "--output-dir", str(out), "--no-progress", "--log-interval", "1", "--device", "cpu",
        "--lr-base-batch", "0", "--lr", "2e-3", "--warmup-iters", "2", *extra,
    ]  # fmt: skip


def save_random_weights(
    path: Path, seed: int = 0, preset: str = "tiny", classes: tuple[str, ...] | None = None,
    half: bool = False, **extra: object,
) -> FCOS:  # fmt: skip
    """A `preset` model (its default classes, or `classes`) with its init perturbed (torch seed
    `seed`), saved as a weights-only file (fp16 storage with `half`) with `extra` keys; returns
    the model."""
    torch.manual_seed(seed)
    model = FCOS(get_preset(preset, class_names=classes) if classes else get_preset(preset))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_weights_only(model, path, half=half, **extra)
    return model


def tiny_batch() -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """A (2, 3, 128, 128) uint8 noise batch with one box (xyxy px) and label per image."""
    images = torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8)
    boxes = [torch.tensor([[10.0, 12.0, 60.0, 70.0]]), torch.tensor([[30.0, 5.0, 120.0, 90.0]])]
    return images, boxes, [torch.tensor([0]), torch.tensor([1])]


def run_tiny(tmp_path: Path, *flags: str) -> Path:
    """Train one epoch of `tiny_args` with `flags` on a fresh 4-image make_voc tree under
    tmp_path; returns the run directory."""
    make_voc(tmp_path / "data" / "VOC", num_images=4, seed=2)
    run = tmp_path / "run"
    assert main(tiny_args(tmp_path / "data", run, "--epochs", "1", *flags)) == 0
    return run
