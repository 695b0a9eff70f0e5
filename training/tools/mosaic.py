"""Mosaic a VOC split into larger images with smaller objects: a test set for tiled inference.

Each group of grid x grid consecutive photos of the split (in the split file's order, so the
output is deterministic) becomes one canvas of grid x CELL px a side: every photo is resized
to CELL px on its long side (aspect kept) and placed at the top-left of its cell, the rest
grey; its boxes are scaled and shifted with it. A last incomplete group is padded with empty
cells, so every photo's objects are scored. Written in the same VOC layout (JPEGImages,
Annotations, ImageSets/Main/<split>.txt), so `python -m training.evaluate --data OUT` reads it.

    python -m training.tools.mosaic --voc-root ../shared/data/voc2012-640 --split val \
        --output /tmp/mosaic-val --grid 2

With --proxy it writes a fine-tuning proxy of the same kind instead (build_proxy): train, val
and test splits in one folder, for `python -m training --data OUT`.
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from training.data.errors import DatasetError
from training.data.voc import find_image, read_split
from training.tools.shrink_voc import scale_voc_box

# Each photo's long side in the mosaic: VOC-640's own size, so a 2 x 2 mosaic is 1280 px, the
# large-photo case where the model's 384 px view shrinks objects 3.3x instead of 1.7x.
CELL = 640
FILL = (114, 114, 114)  # the padding grey of YOLO-style mosaics: no edges a detector would see
JPEG_QUALITY = 90  # high enough that re-encoding adds no visible artefacts to small objects
# --proxy: val photos kept for validation (30 mosaics), the rest of val is the test split.
PROXY_VAL_PHOTOS = 120


def _objects(root: ET.Element) -> list[tuple[str, int, tuple[float, float, float, float]]]:
    """(name, difficult, VOC box 1-based inclusive) per <object>."""
    out = []
    for obj in root.iter("object"):
        bnd = obj.find("bndbox")
        if bnd is None:
            continue
        box = tuple(float(bnd.findtext(t, "0")) for t in ("xmin", "ymin", "xmax", "ymax"))
        difficult = int(float(obj.findtext("difficult", "0") or 0))
        out.append((obj.findtext("name", "").strip(), difficult, box))
    return out  # type: ignore[return-value]


def mosaic_group(
    src: Path, ids: Sequence[str], grid: int, cell: int = CELL
) -> tuple[Image.Image, list[tuple[str, int, tuple[float, float, float, float]]]]:
    """One mosaic of `ids` (at most grid * grid; missing cells stay empty) -> (RGB canvas,
    [(name, difficult, VOC box in canvas pixels)])."""
    canvas = Image.new("RGB", (grid * cell, grid * cell), FILL)
    objects = []
    for k, image_id in enumerate(ids):
        root = ET.parse(src / "Annotations" / f"{image_id}.xml").getroot()
        path = find_image(src, image_id, root.findtext("filename"))
        if path is None:
            raise DatasetError(f"{src}: no image for {image_id!r} in JPEGImages")
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        w0, h0 = rgb.size
        s = cell / max(w0, h0)  # enlarged or reduced: `cell` px on its long side
        w1, h1 = max(1, round(w0 * s)), max(1, round(h0 * s))
        ox, oy = (k % grid) * cell, (k // grid) * cell
        canvas.paste(rgb.resize((w1, h1), Image.Resampling.BILINEAR), (ox, oy))
        for name, difficult, box in _objects(root):
            x1, y1, x2, y2 = scale_voc_box(box, w1 / w0, h1 / h0)
            objects.append((name, difficult, (x1 + ox, y1 + oy, x2 + ox, y2 + oy)))
    return canvas, objects


def annotation_xml(filename: str, size: int, objects: Sequence) -> ET.ElementTree:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = filename
    size_node = ET.SubElement(root, "size")
    for tag, value in (("width", size), ("height", size), ("depth", 3)):
        ET.SubElement(size_node, tag).text = str(value)
    for name, difficult, box in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "difficult").text = str(difficult)
        bnd = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
            ET.SubElement(bnd, tag).text = f"{value:.2f}"
    return ET.ElementTree(root)


def build_mosaics(
    src: Path, split: str, out: Path, grid: int = 2, cell: int = CELL, limit: int = 0,
    ids: Sequence[str] | None = None, prefix: str = "",
) -> int:
    """Writes the mosaics of `split` of the VOC folder `src` into `out` (the split file
    `split`); returns how many. `limit` > 0: only the first `limit` mosaics; `ids`: these
    photos instead of the split file's; `prefix`: before each mosaic's name."""
    if grid < 1:
        raise ValueError(f"grid must be >= 1, not {grid}")
    ids = list(ids) if ids is not None else read_split(src, split)
    per = grid * grid
    groups = [ids[i : i + per] for i in range(0, len(ids), per)]
    if limit > 0:
        groups = groups[:limit]
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    names = []
    for n, group in enumerate(groups):
        name = f"{prefix}mosaic_{n:05d}"
        canvas, objects = mosaic_group(src, group, grid, cell)
        canvas.save(out / "JPEGImages" / f"{name}.jpg", "JPEG", quality=JPEG_QUALITY)
        tree = annotation_xml(f"{name}.jpg", grid * cell, objects)
        tree.write(out / "Annotations" / f"{name}.xml")
        names.append(name)
    (out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return len(names)


def build_proxy(
    src: Path, out: Path, grid: int = 2, cell: int = CELL, val_photos: int = PROXY_VAL_PHOTOS
) -> dict[str, int]:
    """A fine-tuning proxy of large photos with small objects: `train` from the train split,
    `val` from the first `val_photos` photos of the val split and `test` from the rest, each
    mosaic named after its split. Returns the mosaics per split."""
    val = read_split(src, "val")
    parts = {"train": read_split(src, "train"), "val": val[:val_photos],
             "test": val[val_photos:]}  # fmt: skip
    return {name: build_mosaics(src, name, out, grid, cell, ids=ids, prefix=f"{name}_")
            for name, ids in parts.items()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.tools.mosaic", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--voc-root", required=True, type=Path, help="VOC folder (Annotations, ...)")
    p.add_argument("--split", default="val", help="the split to mosaic (ImageSets/Main)")
    p.add_argument("--output", required=True, type=Path, help="output VOC folder (created)")
    p.add_argument("--grid", type=int, default=2, help="photos per mosaic side")
    p.add_argument("--cell", type=int, default=CELL, help="each photo's long side in px")
    p.add_argument("--limit", type=int, default=0, help="at most this many mosaics (0 = all)")
    p.add_argument("--proxy", action="store_true", help="a fine-tuning proxy instead of one "
                   f"split: train from train; val from the first {PROXY_VAL_PHOTOS} photos of "
                   "val, test from the rest")  # fmt: skip
    a = p.parse_args(argv)
    side = a.grid * a.cell
    try:
        if a.proxy:
            counts = build_proxy(a.voc_root, a.output, a.grid, a.cell)
            done = ", ".join(f"{k} {v}" for k, v in counts.items())
            print(f"mosaics of {a.grid}x{a.grid} photos ({side}x{side} px): {done} -> {a.output}")
            return 0
        n = build_mosaics(a.voc_root, a.split, a.output, a.grid, a.cell, a.limit)
    except (DatasetError, ValueError, OSError) as exc:
        print(f"error: {exc}")
        return 2
    print(f"{n} mosaics of {a.grid}x{a.grid} photos ({side}x{side} px) -> {a.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
