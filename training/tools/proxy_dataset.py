"""Build a proxy "user dataset" from a Pascal VOC folder: Roboflow's YOLO layout, merged classes.

The fine-tuning recipe (configs/finetune.toml) is measured on datasets a user could bring: classes
the bundled model does not have, in the YOLO layout labelling tools export. Without such data on
the machine, this makes one from VOC (configs/finetune.md has the runs on both renderings):

    python -m training.tools.proxy_dataset --voc-root ../shared/data/voc2012-640 --output /tmp/p1
    python -m training.tools.proxy_dataset --voc-root ../shared/data/voc2012-640 --output /tmp/p2 \
        --render negative

Classes: `vehicle` (car, bus, motorbike, bicycle), `animal` (cat, dog, horse, sheep, cow),
`furniture` (chair, sofa, diningtable) and `person` (the one class shared with the bundled model);
an image holding any other VOC class is left out. `train` comes from VOC's train split (which the
bundled model was trained on, under other labels), `valid` and `test` from VOC's val split (which
it was not). Each list of eligible ids is shuffled with `random.Random(seed)`; every object is
written, `difficult` ones included.

`--render negative` writes each photo as a noisy, slightly blurred negative grayscale image (a
stand-in for a camera of another domain, like a thermal one): on the test split with its VOC
labels the bundled model's mAP@0.5 falls from 0.477 to 0.228, so a recipe has more to learn than
class names. The noise is seeded per image id, so a rebuild is identical.
"""

from __future__ import annotations

import argparse
import random
import shutil
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from model.config import VOC_CLASSES
from training.data.sample import Sample
from training.data.voc import load_voc

NAMES = ("vehicle", "animal", "person", "furniture")
MERGE = {
    "car": "vehicle", "bus": "vehicle", "motorbike": "vehicle", "bicycle": "vehicle",
    "cat": "animal", "dog": "animal", "horse": "animal", "sheep": "animal", "cow": "animal",
    "person": "person",
    "chair": "furniture", "sofa": "furniture", "diningtable": "furniture",
}  # fmt: skip
RENDERS = ("photo", "negative")
NOISE_STD = 6.0  # grey levels, before the blur
BLUR_RADIUS = 1.2  # px


def eligible(samples: Sequence[Sample]) -> list[Sample]:
    """Samples with at least one object, every one of a class in MERGE."""
    return [
        s for s in samples
        if len(s.labels) and all(VOC_CLASSES[int(k)] in MERGE for k in s.labels)
    ]  # fmt: skip


def yolo_lines(sample: Sample) -> list[str]:
    """`class cx cy w h` (normalised) per object, the class an index into NAMES."""
    lines = []
    for (x1, y1, x2, y2), k in zip(sample.boxes.tolist(), sample.labels.tolist(), strict=True):
        cls = NAMES.index(MERGE[VOC_CLASSES[k]])
        w, h = sample.width, sample.height
        lines.append(
            f"{cls} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
            f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
        )
    return lines


def negative(image: Image.Image, image_id: str) -> Image.Image:
    """Negative grayscale + Gaussian noise (seeded by the id) + a slight blur, as RGB."""
    rng = np.random.default_rng(zlib.crc32(image_id.encode()))
    grey = 255.0 - np.asarray(ImageOps.grayscale(image), dtype=np.float32)
    grey = np.clip(grey + rng.normal(0.0, NOISE_STD, grey.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).filter(ImageFilter.GaussianBlur(BLUR_RADIUS)).convert("RGB")


def write_split(out: Path, split: str, samples: Sequence[Sample], render: str) -> Counter[str]:
    """out/<split>/images + labels; returns the objects per class."""
    images, labels = out / split / "images", out / split / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    counts: Counter[str] = Counter()
    for s in samples:
        src = Path(s.image_path)
        if render == "negative":
            with Image.open(src) as img:
                rendered = negative(img.convert("RGB"), s.image_id)
            rendered.save(images / f"{s.image_id}.jpg", quality=92)
        else:
            shutil.copyfile(src, images / f"{s.image_id}{src.suffix}")
        (labels / f"{s.image_id}.txt").write_text("\n".join(yolo_lines(s)) + "\n")
        counts.update(MERGE[VOC_CLASSES[k]] for k in s.labels.tolist())
    return counts


def build(
    voc_root: Path, out: Path, sizes: tuple[int, int, int] = (420, 80, 200),
    render: str = "photo", seed: int = 0,
) -> dict[str, tuple[int, Counter[str]]]:  # fmt: skip
    """Write the proxy dataset (replacing `out`); returns split -> (images, objects per class).

    sizes: train (from VOC train), valid and test (disjoint, from VOC val) image counts; fewer
    if fewer images are eligible.
    """
    if render not in RENDERS:
        raise ValueError(f"render must be one of {RENDERS}, not {render!r}")
    rng = random.Random(seed)
    train = eligible(load_voc(voc_root, "train"))
    val = eligible(load_voc(voc_root, "val"))
    rng.shuffle(train)
    rng.shuffle(val)
    n_train, n_valid, n_test = sizes
    splits = {
        "train": train[:n_train],
        "valid": val[:n_valid],
        "test": val[n_valid : n_valid + n_test],
    }
    if out.exists():
        shutil.rmtree(out)
    summary = {}
    for split, samples in splits.items():
        summary[split] = (len(samples), write_split(out, split, samples, render))
    project = out.name
    (out / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\n"
        f"nc: {len(NAMES)}\nnames: {list(NAMES)!r}\n\n"
        f"roboflow:\n  workspace: proxy\n  project: {project}\n  version: 1\n"
        "  license: CC BY 4.0\n"
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--voc-root", type=Path, required=True, help="VOC folder with train/val splits")
    p.add_argument("--output", type=Path, required=True, help="dataset folder (replaced)")
    p.add_argument(
        "--render", choices=RENDERS, default="photo", help="photo: the JPEGs as they are"
    )
    p.add_argument("--sizes", type=int, nargs=3, default=(420, 80, 200),
                   metavar=("TRAIN", "VALID", "TEST"), help="images per split")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    summary = build(a.voc_root, a.output, tuple(a.sizes), a.render, a.seed)
    for split, (n, counts) in summary.items():
        per_class = ", ".join(f"{c} {counts[c]}" for c in NAMES)
        print(f"{split:6s} {n:4d} images, {sum(counts.values()):5d} objects ({per_class})")
    print(f"wrote {a.output / 'data.yaml'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
