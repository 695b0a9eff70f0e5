"""Detections drawn onto an image with Pillow: boxes and `class score` tags.

NumPy/Pillow only (no torch): shared by the service (`POST /detect?annotate=true`,
service/annotate.py) and the offline predict CLI (`python -m export.predict`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from export.postprocess import Detections

Color = tuple[int, int, int]

# One colour per class id (cycled); service/static/app.js uses the same list.
PALETTE: tuple[Color, ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
    (220, 190, 255), (170, 110, 40), (255, 225, 25), (128, 0, 0), (170, 255, 195),
    (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128), (255, 255, 255),
)  # fmt: skip


def class_color(class_id: int) -> Color:
    return PALETTE[class_id % len(PALETTE)]


def _text_color(bg: Color) -> Color:
    luminance = 0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2]
    return (0, 0, 0) if luminance > 150 else (255, 255, 255)


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def label_text(class_id: int, score: float, class_names: Sequence[str]) -> str:
    name = class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id)
    return f"{name} {score:.2f}"


def draw_detections(
    image: Image.Image, detections: Detections, class_names: Sequence[str]
) -> Image.Image:
    """Draw boxes and `label score` tags onto `image` (RGB, modified in place and returned).

    Boxes are in `image` pixels. Lowest scores are drawn first, so the best ones stay on top.
    """
    width, height = image.size
    longest = max(width, height)
    line = max(2, round(longest / 320))
    font = _font(min(64, max(11, round(longest / 45))))
    pad = max(1, line // 2 + 1)
    draw = ImageDraw.Draw(image)
    for i in [int(j) for j in detections.scores.argsort(kind="stable")]:
        x1, y1, x2, y2 = (float(v) for v in detections.boxes[i])
        x1, x2 = sorted((min(max(x1, 0.0), width - 1.0), min(max(x2, 0.0), width - 1.0)))
        y1, y2 = sorted((min(max(y1, 0.0), height - 1.0), min(max(y2, 0.0), height - 1.0)))
        class_id = int(detections.class_ids[i])
        color = class_color(class_id)
        draw.rectangle((round(x1), round(y1), round(x2), round(y2)), outline=color, width=line)

        text = label_text(class_id, float(detections.scores[i]), class_names)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 2 * pad, bottom - top + 2 * pad
        tx = min(round(x1), max(0, width - tw))
        ty = round(y1) - th if round(y1) - th >= 0 else round(y1)  # above the box, else inside
        draw.rectangle((tx, ty, tx + tw - 1, ty + th - 1), fill=color)
        draw.text((tx + pad - left, ty + pad - top), text, fill=_text_color(color), font=font)
    return image
