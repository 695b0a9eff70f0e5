"""Shrink a Pascal VOC folder for transport: resized images (WebP or JPEG), boxes scaled with them.

A lent GPU machine receives at most 64 MiB per run, working tree included; VOC-640 is 125 MB.
This writes a copy in the same VOC layout (Annotations, JPEGImages, ImageSets/Main) whose images
are resized to `--size` (longer side; the aspect ratio is kept) and re-encoded, and whose XML
boxes and <size> are scaled to match, so that `training` reads it exactly like the original.

  python -m training.tools.shrink_voc --src ../shared/data/voc2012-640 --dst /tmp/voc-416 \
      --size 416 --splits train,val --format webp --quality 75

Box coordinates stay in VOC's 1-based inclusive convention: the continuous box
(xmin - 1, ymin - 1, xmax, ymax) is scaled and written back as floats (training.data.voc reads
floats), so no rounding is added.
"""

from __future__ import annotations

import argparse
import shutil
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from training.data.errors import DatasetError
from training.data.voc import find_image, read_split

FORMATS = {"webp": ("WEBP", ".webp"), "jpeg": ("JPEG", ".jpg")}


def scaled_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(w, h) with the longer side `size` (never enlarged)."""
    scale = min(1.0, size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def scale_voc_box(
    box: tuple[float, float, float, float], sx: float, sy: float
) -> tuple[float, float, float, float]:
    """VOC (xmin, ymin, xmax, ymax), 1-based inclusive, scaled by (sx, sy), same convention."""
    xmin, ymin, xmax, ymax = box
    return (xmin - 1.0) * sx + 1.0, (ymin - 1.0) * sy + 1.0, xmax * sx, ymax * sy


def shrink_one(src: Path, dst: Path, image_id: str, size: int, fmt: str, quality: int) -> int:
    """Writes the resized image and its scaled XML; returns the image's encoded bytes."""
    pil_format, ext = FORMATS[fmt]
    tree = ET.parse(src / "Annotations" / f"{image_id}.xml")
    root = tree.getroot()
    filename = root.find("filename")
    image_path = find_image(src, image_id, filename.text if filename is not None else None)
    if image_path is None:
        raise DatasetError(f"{src}: no image for {image_id!r} in JPEGImages")
    with Image.open(image_path) as img:
        rgb = img.convert("RGB")
    w0, h0 = rgb.size
    w1, h1 = scaled_size(w0, h0, size)
    sx, sy = w1 / w0, h1 / h0
    out_image = dst / "JPEGImages" / f"{image_id}{ext}"
    rgb.resize((w1, h1), Image.BILINEAR).save(out_image, pil_format, quality=quality)
    size_node = root.find("size")
    if size_node is None:
        size_node = ET.SubElement(root, "size")
    for tag, value in (("width", w1), ("height", h1), ("depth", 3)):
        node = size_node.find(tag)
        if node is None:
            node = ET.SubElement(size_node, tag)
        node.text = str(value)
    if filename is None:
        filename = ET.SubElement(root, "filename")
    filename.text = out_image.name
    for bnd in root.iter("bndbox"):
        tags = ("xmin", "ymin", "xmax", "ymax")
        box = tuple(float(bnd.findtext(t, "0")) for t in tags)
        for tag, value in zip(tags, scale_voc_box(box, sx, sy), strict=True):  # type: ignore[arg-type]
            bnd.find(tag).text = f"{value:.2f}"  # type: ignore[union-attr]
    tree.write(dst / "Annotations" / f"{image_id}.xml")
    return out_image.stat().st_size


def shrink_voc(
    src: Path, dst: Path, splits: list[str], size: int, fmt: str = "webp", quality: int = 75,
    workers: int = 4,
) -> tuple[int, int]:  # fmt: skip
    """Copies `splits` of the VOC folder `src` into `dst`, shrunk; returns (images, bytes)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, not {fmt!r}")
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    ids: list[str] = []
    for split in splits:
        split_ids = read_split(src, split)
        shutil.copyfile(src / "ImageSets" / "Main" / f"{split}.txt",
                        dst / "ImageSets" / "Main" / f"{split}.txt")  # fmt: skip
        seen = set(ids)
        ids += [i for i in split_ids if i not in seen]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        sizes = list(pool.map(lambda i: shrink_one(src, dst, i, size, fmt, quality), ids))
    return len(ids), sum(sizes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.tools.shrink_voc", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--src", required=True, type=Path, help="VOC folder (Annotations, ...)")
    p.add_argument("--dst", required=True, type=Path, help="output folder (created)")
    p.add_argument("--size", type=int, default=416, help="longer side of the written images")
    p.add_argument("--splits", default="train,val", help="comma-separated split names")
    p.add_argument("--format", default="webp", choices=sorted(FORMATS))
    p.add_argument("--quality", type=int, default=75)
    p.add_argument("--workers", type=int, default=4)
    a = p.parse_args(argv)
    splits = [s for s in a.splits.split(",") if s]
    n, total = shrink_voc(a.src, a.dst, splits, a.size, a.format, a.quality, a.workers)
    print(f"{n} images, {total / 2**20:.1f} MiB of images -> {a.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
