"""Detections drawn onto the image with Pillow: `POST /detect?annotate=true`.

The boxes are drawn on a decode of the upload (EXIF orientation applied, like the detection
pipeline): at the original size up to `MAX_SIDE` pixels on the longer side, reduced by an
integer factor beyond (boxes scaled with it), since the annotated image is for looking at: a
40 MP photo drawn at full size cost 5.1 s of CPU and a 101 MB PNG. Rendering (decode, draw,
encode) runs on the inference worker, after the detection, so it is subject to the same limits
(DETECTOR_MAX_PIXELS, queue, deadline: it stops at the decoder's next read once the deadline
has passed) as the detection.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from PIL import Image

# The drawing lives in export/draw.py (shared with `python -m export.predict`).
from export.draw import PALETTE, class_color, draw_detections, label_text
from export.postprocess import Detections
from export.preprocess import decode_image
from export.runtime import DetectionResult

__all__ = ["FORMATS", "PALETTE", "class_color", "draw_detections", "encode", "label_text", "render"]

ImageFormat = Literal["jpeg", "png"]

JPEG_QUALITY = 90
PNG_COMPRESS_LEVEL = 3  # fast; annotated images are for looking at, not for archiving
# Longer side of the annotated image at most: a 2K screen (2048 x 1080) shows it whole; a 12 MP
# phone photo is drawn at half its size, a 40 MP upload at a quarter (in 0.3 s of CPU as PNG).
MAX_SIDE = 2048


@dataclass(frozen=True)
class OutputFormat:
    pillow: str
    media_type: str
    extension: str


FORMATS: dict[str, OutputFormat] = {
    "jpeg": OutputFormat("JPEG", "image/jpeg", "jpg"),
    "png": OutputFormat("PNG", "image/png", "png"),
}


def encode(image: Image.Image, image_format: ImageFormat) -> bytes:
    fmt = FORMATS[image_format]
    buf = io.BytesIO()
    if fmt.pillow == "JPEG":
        image.convert("RGB").save(buf, "JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buf, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def _scaled(detections: Detections, sx: float, sy: float) -> Detections:
    boxes = detections.boxes * [sx, sy, sx, sy]
    return Detections(boxes.astype(detections.boxes.dtype), detections.scores, detections.class_ids)


def render(
    data: bytes,
    result: DetectionResult,
    class_names: Sequence[str],
    image_format: ImageFormat = "jpeg",
    max_pixels: int | None = None,
    deadline: float | None = None,
) -> bytes:
    """The upload `data` with `result`'s detections drawn on it, encoded as `image_format`:
    the original size, or scaled down to a longer side of MAX_SIDE.

    Adds the time taken (decode, draw, encode) to `result.timings_s` as `annotate`.
    """
    t0 = time.perf_counter()
    image, _ = decode_image(data, max_pixels, deadline=deadline)
    factor = -(-max(image.size) // MAX_SIDE)
    if factor > 1:  # an integer box reduction: far cheaper than a resize to exactly MAX_SIDE
        image = image.reduce(factor)
    dets = result.detections
    if image.size != (result.width, result.height):
        dets = _scaled(dets, image.width / result.width, image.height / result.height)
    out = encode(draw_detections(image, dets, class_names), image_format)
    result.timings_s["annotate"] = time.perf_counter() - t0
    return out
