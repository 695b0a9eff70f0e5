"""The on-disk format of captured images (DETECTOR_CAPTURE_DIR), the one description of it:

    CAPTURE_DIR/<model>/<YYYY-MM-DD>/<stem>.<ext>   the uploaded bytes, untouched
    CAPTURE_DIR/<model>/<YYYY-MM-DD>/<stem>.txt     pre-labels, YOLO: "class_id cx cy w h"
    CAPTURE_DIR/<model>/<YYYY-MM-DD>/<stem>.json    the sidecar (SCHEMA below), written last

`<model>` is the repository name, the date the UTC day of the request, `<stem>` the first 16
hex digits of the bytes' SHA-256 (the same image on the same day and model is one capture; a
later one replaces its labels), `<ext>` the format sniffed from the first bytes (jpg, png,
webp, gif, bmp, tif; `bin` for anything else). Every file is written under a hidden temporary
name (`.<name>.tmp`) and renamed into place, the sidecar last: an image and .txt without their
.json are a capture being written (or removed) and a reader skips them.

YOLO lines: one per detection, in the sidecar's order (highest score first), coordinates
normalised to the image's width and height with 6 decimals, boxes clipped to the image. The
width and height are those of the image as the service decodes it, EXIF orientation applied
(export.preprocess): a reader must apply the orientation too (PIL `ImageOps.exif_transpose`).
The labels are the detections the client got: the request's threshold, cap and class filter
applied (`thresholds` in the sidecar), so they are pre-labels to review, not ground truth.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from export.postprocess import Detections

SCHEMA = 1
STEM_HEX = 16  # hex digits of the SHA-256 in a capture's file names
LABELS_SUFFIX, SIDECAR_SUFFIX = ".txt", ".json"
REASONS: tuple[str, ...] = ("unsure", "empty", "sample")

# (magic bytes at offset 0, format name, file extension); WebP also needs "WEBP" at offset 8
_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\xff\xd8\xff", "jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "png", "png"),
    (b"GIF87a", "gif", "gif"),
    (b"GIF89a", "gif", "gif"),
    (b"BM", "bmp", "bmp"),
    (b"II*\x00", "tiff", "tif"),
    (b"MM\x00*", "tiff", "tif"),
)


def sniff_format(data: bytes) -> tuple[str, str]:
    """(format name, file extension) from the first bytes; ("unknown", "bin") if none fits."""
    head = bytes(data[:12])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp", "webp"
    for magic, name, ext in _MAGIC:
        if head.startswith(magic):
            return name, ext
    return "unknown", "bin"


@dataclass(frozen=True)
class CaptureItem:
    """One image to store, as the request path hands it over (references only, no copies)."""

    model: str
    version: str
    class_names: tuple[str, ...]
    route: str  # detect | batch | v2 | deepstack
    time: datetime  # aware, UTC: when the request was answered
    reason: str  # one of REASONS
    data: bytes  # the uploaded image, untouched
    width: int
    height: int
    detections: Detections
    thresholds: dict[str, Any]  # score_threshold, max_detections, tile, classes, nms_iou
    request_id: str | None = None


@dataclass(frozen=True)
class CaptureFiles:
    """The three files of one capture: relative folder, stem and their contents."""

    folder: str  # "<model>/<YYYY-MM-DD>"
    stem: str
    image_name: str
    image: bytes
    labels: bytes
    sidecar: bytes

    @property
    def names(self) -> tuple[str, str, str]:
        """The file names in the order they are written (the sidecar last)."""
        return self.image_name, self.stem + LABELS_SUFFIX, self.stem + SIDECAR_SUFFIX

    @property
    def size(self) -> int:
        return len(self.image) + len(self.labels) + len(self.sidecar)


def yolo_lines(detections: Detections, width: int, height: int) -> str:
    """The YOLO pre-labels: "class_id cx cy w h" per detection, normalised, 6 decimals."""
    if len(detections) == 0 or width <= 0 or height <= 0:
        return ""
    boxes = detections.boxes.astype(np.float64)
    x1, x2 = np.clip(boxes[:, 0], 0, width), np.clip(boxes[:, 2], 0, width)
    y1, y2 = np.clip(boxes[:, 1], 0, height), np.clip(boxes[:, 3], 0, height)
    x2, y2 = np.maximum(x1, x2), np.maximum(y1, y2)
    rows = zip(detections.class_ids.tolist(), ((x1 + x2) / 2 / width).tolist(),
               ((y1 + y2) / 2 / height).tolist(), ((x2 - x1) / width).tolist(),
               ((y2 - y1) / height).tolist(), strict=True)  # fmt: skip
    return "".join(f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for c, cx, cy, w, h in rows)


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a `Z`: 2026-12-07T14:31:26.123Z."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sidecar(item: CaptureItem, sha256: str, fmt: str) -> dict[str, Any]:
    """The sidecar document (schema 1)."""
    names, d = item.class_names, item.detections
    boxes = np.round(d.boxes.astype(np.float64), 2).tolist()
    scores = np.round(d.scores.astype(np.float64), 4).tolist()
    detections = [
        {"class_id": c, "label": names[c] if 0 <= c < len(names) else str(c), "score": s,
         "box": b}
        for c, s, b in zip(d.class_ids.tolist(), scores, boxes, strict=True)
    ]  # fmt: skip
    return {
        "schema": SCHEMA,
        "model": {"name": item.model, "version": item.version},
        "route": item.route,
        "time": iso_utc(item.time),
        "reason": item.reason,
        "request_id": item.request_id,
        "image": {
            "width": item.width,
            "height": item.height,
            "format": fmt,
            "sha256": sha256,
            "bytes": len(item.data),
        },
        "thresholds": item.thresholds,
        "classes": list(names),
        "detections": detections,
    }


def capture_files(item: CaptureItem) -> CaptureFiles:
    """Everything to write for `item` (hashing and formatting: the writer thread's work)."""
    sha256 = hashlib.sha256(item.data).hexdigest()
    fmt, ext = sniff_format(item.data)
    stem = sha256[:STEM_HEX]
    labels = yolo_lines(item.detections, item.width, item.height).encode()
    doc = json.dumps(sidecar(item, sha256, fmt)).encode() + b"\n"
    folder = f"{item.model}/{item.time.strftime('%Y-%m-%d')}"
    return CaptureFiles(folder, stem, f"{stem}.{ext}", item.data, labels, doc)
