"""`python -m export.predict`: run an exported model over images; annotated copies + JSON lines.

    python -m export.predict --model runs/mine/model.onnx photos/ --output predictions/
    python -m export.predict --model models/default.onnx "shots/**/*.jpg" --classes person,dog
    python -m export.predict --model model.onnx img.jpg --coco-results coco.json --no-images
    python -m export.predict --model birds --model-dir models/ photos/   # a model by its name

`--model` is an ONNX file, or the name of a model in a model repository (the service's
DETECTOR_MODEL_DIR layout, export/repository.py: `NAME.onnx`, or Triton's
`NAME/VERSION/model.onnx`, newest version; `NAME:VERSION` picks one): `--model-dir`, by default
the DETECTOR_MODEL_DIR environment variable, so the CLI finds the models the service serves.

Inputs: image files, folders (searched recursively) and glob patterns, in any mix. Each image
goes through the service's pipeline (export.runtime.ImageDetector.detect_bytes: EXIF-aware
decode, letterbox, ONNX Runtime or, with --backend openvino, OpenVINO, decode + NMS) with the
service's defaults (score threshold 0.4 on the final score, NMS IoU 0.5, at most 100
detections, 40 Mpx decode limit). `--tile auto|N` adds tiled inference for small objects
(export/tiling.py: the whole image plus overlapping tiles at the model's input scale).
Writes `<output>/predictions.jsonl` (one line per image: its
path, size, detections with class name, score and xyxy box in image pixels, timings), annotated
images under `<output>/images/` (the service's drawing, export/draw.py) and, with
--coco-results, a COCO results list. Images that cannot be read are reported and skipped.
NumPy + Pillow + onnxruntime (or openvino) only: no torch.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, get_args

import numpy as np

from export.backends import BACKENDS, Precision, load_detector
from export.defaults import MAX_DETECTIONS, NMS_IOU, SCORE_THRESHOLD  # the service's defaults
from export.errors import DetectorError
from export.postprocess import Detections, candidate_config
from export.preprocess import DEFAULT_MAX_PIXELS, decode_image
from export.repository import NAME, SUFFIX, VERSION, VERSIONED_FILE, scan_folder
from export.runtime import DetectionResult
from export.tiling import DEFAULT_MAX_TILES, MAX_GRID, parse_tile

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})


@dataclass(frozen=True)
class Job:
    path: Path
    name: str  # relative output name (no suffix change)


def find_images(inputs: Sequence[str]) -> list[Job]:
    """Files, folders (recursive) and glob patterns -> images, each with a unique output name
    (its path under the folder given, or its file name)."""
    jobs: list[Job] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            for p in sorted(path.rglob("*")):
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                    jobs.append(Job(p, str(p.relative_to(path))))
        elif path.is_file():
            jobs.append(Job(path, path.name))
        else:
            matches = sorted(glob.glob(entry, recursive=True))
            files = [Path(m) for m in matches
                     if Path(m).is_file() and Path(m).suffix.lower() in IMAGE_SUFFIXES]  # fmt: skip
            if not files:
                raise FileNotFoundError(f"{entry}: no such image, folder or matching images")
            jobs += [Job(p, p.name) for p in files]
    seen: dict[str, int] = {}
    unique = []
    for job in jobs:
        n = seen.get(job.name, 0)
        seen[job.name] = n + 1
        name = job.name if n == 0 else f"{Path(job.name).stem}_{n}{Path(job.name).suffix}"
        unique.append(Job(job.path, name))
    return unique


def resolve_model(value: str, model_dir: str | None) -> Path:
    """--model: an existing file, else a model name (`NAME` or `NAME:VERSION`) in the model
    repository `model_dir`; FileNotFoundError naming what is there when neither is found."""
    path = Path(value)
    if path.is_file():
        return path
    name, _, version = value.partition(":")
    if path.suffix == SUFFIX or not NAME.match(name) or (version and not VERSION.match(version)):
        raise FileNotFoundError(f"--model {value}: no such file")
    if not model_dir:
        raise FileNotFoundError(f"--model {value}: no such file; to use a model by its name, "
                                "give --model-dir or set DETECTOR_MODEL_DIR")  # fmt: skip
    try:
        models = scan_folder(Path(model_dir))
    except OSError as exc:
        raise FileNotFoundError(f"--model-dir {model_dir}: cannot list it ({exc})") from None
    source = models.get(name)
    if source is None:
        raise FileNotFoundError(f"--model {value}: no such file, nor a model named {name!r} in "
                                f"{model_dir}; models: {', '.join(models) or 'none'}")  # fmt: skip
    if not version or version == source.version:
        return source.path
    versions = [] if source.version is None else _versions(source.path.parent.parent)
    if version in versions:
        return source.path.parent.parent / version / VERSIONED_FILE
    have = f"versions: {', '.join(versions)}" if versions else "it is one file, no versions"
    raise FileNotFoundError(f"--model {value}: model {name!r} has no version {version} ({have})")


def _versions(folder: Path) -> list[str]:
    """The version folders of a Triton-layout model (each with its model.onnx), in order."""
    found = [d.name for d in folder.iterdir() if VERSION.match(d.name)]
    return sorted((v for v in found if (folder / v / VERSIONED_FILE).is_file()), key=int)


def keep_classes(dets: Detections, class_ids: np.ndarray | None, limit: int) -> Detections:
    """The detections of `class_ids` (None: all), best first, at most `limit`."""
    keep = np.ones(len(dets.scores), dtype=bool)
    if class_ids is not None:
        keep = np.isin(dets.class_ids, class_ids)
    order = np.flatnonzero(keep)[np.argsort(-dets.scores[keep], kind="stable")][:limit]
    return Detections(dets.boxes[order], dets.scores[order], dets.class_ids[order])


def detection_record(job: Job, result: DetectionResult, names: Sequence[str]) -> dict[str, Any]:
    d = result.detections
    return {
        "image": str(job.path),
        "width": result.width,
        "height": result.height,
        "detections": [
            {
                "class_id": int(c),
                "class_name": names[int(c)],
                "score": round(float(s), 5),
                "box": [round(float(v), 2) for v in b],
            }
            for b, s, c in zip(d.boxes, d.scores, d.class_ids, strict=True)
        ],
        "timings_ms": {k: round(v * 1000.0, 2) for k, v in result.timings_s.items()},
        **({"tiles": result.tiles} if result.tiles else {}),  # --tile: the tile runs
    }


def coco_records(image_id: int, dets: Detections, category_ids: Sequence[int]) -> list[dict]:
    """COCO results entries: bbox [x, y, w, h] in image pixels."""
    return [
        {"image_id": image_id, "category_id": int(category_ids[int(c)]),
         "bbox": [round(float(b[0]), 2), round(float(b[1]), 2),
                  round(float(b[2] - b[0]), 2), round(float(b[3] - b[1]), 2)],
         "score": round(float(s), 5)}
        for b, s, c in zip(dets.boxes, dets.scores, dets.class_ids, strict=True)
    ]  # fmt: skip


def coco_ids(gt_path: str | None, names: Sequence[str]) -> tuple[dict[str, int] | None, list[int]]:
    """(file name -> image id, model class id -> category id) from a COCO annotation file
    (matched by file name and category name); without one: None and class id + 1."""
    if not gt_path:
        return None, [i + 1 for i in range(len(names))]
    data = json.loads(Path(gt_path).read_text(encoding="utf-8"))
    images = {Path(str(im["file_name"])).name: int(im["id"]) for im in data["images"]}
    by_name = {str(c["name"]): int(c["id"]) for c in data["categories"]}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"{gt_path}: no categories named {missing}")
    return images, [by_name[n] for n in names]


class Progress:
    """A one-line progress bar on a terminal (else a line every 10%)."""

    def __init__(self, total: int, stream: TextIO = sys.stderr, enabled: bool = True) -> None:
        self.total, self.stream, self.enabled = total, stream, enabled and total > 0
        self.tty = stream.isatty()
        self.t0 = time.perf_counter()
        self.done = 0
        self._last_tenth = -1

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        rate = self.done / max(1e-9, time.perf_counter() - self.t0)
        filled = int(30 * self.done / self.total)
        line = (f"[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} "
                f"{rate:.1f} img/s")  # fmt: skip
        if self.tty:
            self.stream.write("\r" + line + ("\n" if self.done == self.total else ""))
            self.stream.flush()
        elif self.done * 10 // self.total != self._last_tenth:
            self._last_tenth = self.done * 10 // self.total
            print(line, file=self.stream, flush=True)


def _annotate(job: Job, data: bytes, result: DetectionResult, names: Sequence[str],
              out_dir: Path, max_pixels: int) -> None:  # fmt: skip
    from export.draw import draw_detections

    image, _ = decode_image(data, max_pixels)  # full resolution, EXIF-oriented
    target = out_dir / "images" / job.name
    if target.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        target = target.with_suffix(".jpg")
    target.parent.mkdir(parents=True, exist_ok=True)
    drawn = draw_detections(image, result.detections, names)
    if target.suffix.lower() == ".png":
        drawn.save(target, "PNG", compress_level=3)
    else:
        drawn.convert("RGB").save(target, "JPEG", quality=90)


def predict(args: argparse.Namespace, jobs: Iterable[Job], total: int) -> dict[str, int]:
    detector = load_detector(args.model, args.backend, args.threads or None,
                             precision=args.ov_precision)  # fmt: skip
    names = detector.metadata.class_names
    class_ids = None
    if args.classes:
        wanted = [c.strip() for c in args.classes.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in names]
        if unknown:
            raise ValueError(f"the model has no classes {unknown}; it has {list(names)}")
        class_ids = np.array([names.index(c) for c in wanted], dtype=np.int64)
    # With a class filter the cap applies after it (the other classes take no slots).
    cap = 1000 if class_ids is not None else args.max_detections
    cfg = candidate_config(args.score_threshold, cap, args.nms_iou)
    image_ids, category_ids = coco_ids(args.coco_gt, names) if args.coco_results else (None, [])
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {"images": 0, "detections": 0, "failed": 0}
    coco: list[dict] = []
    progress = Progress(total, enabled=not args.quiet)
    with open(out_dir / "predictions.jsonl", "w", encoding="utf-8") as lines:
        for index, job in enumerate(jobs):
            try:
                data = job.path.read_bytes()
                result = detector.detect_bytes(data, cfg, args.max_pixels, tile=args.tile,
                                               max_tiles=args.max_tiles)  # fmt: skip
                result.detections = keep_classes(result.detections, class_ids,
                                                 args.max_detections)  # fmt: skip
                if not args.no_images:
                    _annotate(job, data, result, names, out_dir, args.max_pixels)
            except (OSError, DetectorError) as exc:
                counts["failed"] += 1
                lines.write(json.dumps({"image": str(job.path), "error": str(exc)}) + "\n")
                print(f"\n{job.path}: skipped: {exc}", file=sys.stderr)
                progress.update()
                continue
            lines.write(json.dumps(detection_record(job, result, names)) + "\n")
            counts["images"] += 1
            counts["detections"] += len(result.detections.scores)
            if args.coco_results:
                image_id = (image_ids or {}).get(job.path.name, index + 1)
                coco += coco_records(image_id, result.detections, category_ids)
            progress.update()
    if args.coco_results:
        Path(args.coco_results).write_text(json.dumps(coco) + "\n", encoding="utf-8")
    return counts


def tile_arg(value: str) -> str | int:
    """--tile's parser: export.tiling.parse_tile, its message as argparse's error."""
    try:
        return parse_tile(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m export.predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help="images, folders or glob patterns (quote them)")
    p.add_argument(
        "--model",
        required=True,
        metavar="FILE|NAME",
        help="an exported .onnx file (fp32 or INT8), or the name of a model in --model-dir "
        "(NAME or NAME:VERSION)",
    )
    p.add_argument(
        "--model-dir",
        default=os.environ.get("DETECTOR_MODEL_DIR") or None,
        metavar="DIR",
        help="the model repository where --model NAME is looked up (NAME.onnx, or Triton's "
        "NAME/VERSION/model.onnx; default: $DETECTOR_MODEL_DIR, as the service)",
    )
    p.add_argument("--output", default="predictions", help="output folder")
    p.add_argument(
        "--score-threshold",
        type=float,
        default=SCORE_THRESHOLD,
        help="keep detections scoring at least this (the service's default)",
    )
    p.add_argument(
        "--max-detections", type=int, default=MAX_DETECTIONS, help="at most this many per image"
    )
    p.add_argument("--nms-iou", type=float, default=NMS_IOU, help="class-wise NMS IoU")
    p.add_argument(
        "--classes", default=None, help="comma-separated class names to keep (default: all)"
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="refuse images with more pixels than this",
    )
    p.add_argument("--no-images", action="store_true", help="write no annotated images")
    p.add_argument(
        "--coco-results",
        default=None,
        metavar="FILE",
        help="also write COCO-format results to FILE",
    )
    p.add_argument(
        "--coco-gt",
        default=None,
        metavar="JSON",
        help="a COCO annotation file: image and category ids for --coco-results "
        "(matched by file name and class name; default: running index, class id + 1)",
    )
    p.add_argument("--threads", type=int, default=0, help="inference threads (0 = all cores)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="onnxruntime",
        help="the runtime (auto: openvino when installed, else onnxruntime)",
    )
    p.add_argument(
        "--ov-precision",
        choices=get_args(Precision),
        default="bf16",
        help="OpenVINO's inference precision hint for floating-point layers",
    )
    p.add_argument(
        "--tile",
        type=tile_arg,
        default="off",
        metavar="off|auto|N",
        help="tiled inference for small objects (export/tiling.py): the whole image plus "
        f"overlapping tiles at the model's input scale; auto (large images only) or an N x N "
        f"grid, N 1-{MAX_GRID}",
    )
    p.add_argument(
        "--max-tiles",
        type=int,
        default=DEFAULT_MAX_TILES,
        help="at most this many tiles per image (the grid is reduced to fit)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if not 0.0 <= args.score_threshold <= 1.0:
        p.error("--score-threshold must be in [0, 1]")
    if args.max_detections < 1:
        p.error("--max-detections must be >= 1")
    if args.max_tiles < 0:
        p.error("--max-tiles must be >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        model = resolve_model(args.model, args.model_dir)
        if str(model) != args.model and not args.quiet:
            print(f"model {args.model}: {model}", file=sys.stderr)
        args.model = str(model)
        jobs = find_images(args.inputs)
        counts = predict(args, jobs, len(jobs))
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output)
    written = [str(out / "predictions.jsonl")]
    written += [] if args.no_images else [str(out / "images")]
    written += [args.coco_results] if args.coco_results else []
    failed = f", {counts['failed']} unreadable" if counts["failed"] else ""
    print(
        f"{counts['images']} images, {counts['detections']} detections{failed}: "
        + ", ".join(written)
    )
    return 1 if counts["failed"] and not counts["images"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
