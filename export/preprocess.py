"""Image decoding and letterbox pre-processing: NumPy + Pillow only (no torch)."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from export.errors import (
    EmptyInputError,
    ImageDecodeError,
    ImageTooLargeError,
    UnsupportedImageTypeError,
)

DEFAULT_MAX_PIXELS = 40_000_000
_ORIENTATION = 0x0112  # EXIF tag
_ORIENTATIONS_SWAPPING_AXES = (5, 6, 7, 8)  # transpose / rotate 90 / transverse / rotate 270


@dataclass(frozen=True)
class Letterbox:
    """How an original image maps into the network input: x_in = x * scale_x, y_in = y * scale_y."""

    scale_x: float
    scale_y: float
    orig_width: int
    orig_height: int
    input_width: int  # padded tensor width (multiple of pad_multiple)
    input_height: int

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) xyxy in input pixels -> (N, 4) xyxy in original pixels, clipped."""
        out = boxes / np.asarray([self.scale_x, self.scale_y, self.scale_x, self.scale_y],
                                 dtype=boxes.dtype)
        out[:, 0::2] = np.clip(out[:, 0::2], 0, self.orig_width)
        out[:, 1::2] = np.clip(out[:, 1::2], 0, self.orig_height)
        return out

    def for_original_size(self, width: int, height: int) -> Letterbox:
        """The same input tensor, mapped to a (width, height) original of which the
        letterboxed image was a reduced decode (JPEG draft)."""
        return Letterbox(
            self.scale_x * self.orig_width / width, self.scale_y * self.orig_height / height,
            width, height, self.input_width, self.input_height,
        )  # fmt: skip


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode (L, LA, P, RGBA, CMYK, I;16, I, F, ...) -> RGB; alpha over white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        arr8 = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def load_image(
    data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """Decode bytes into an RGB image with EXIF orientation applied (first frame if animated).

    `draft_size`: for JPEGs, let the decoder downscale by 1/2..1/8 while keeping the longer
    side >= draft_size (much cheaper for large photos; orientation is applied afterwards).
    The image may then be smaller than the file's; `decode_image` also returns the full size.
    """
    return decode_image(data, max_pixels, draft_size)[0]


def decode_image(
    data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """`load_image`, plus the (width, height) of the full-resolution, EXIF-oriented image."""
    if not data:
        raise EmptyInputError("empty body: no image bytes were sent")
    limit = max_pixels if max_pixels is not None else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            old = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = limit
            try:
                img = Image.open(io.BytesIO(data))
            finally:
                Image.MAX_IMAGE_PIXELS = old
    except UnidentifiedImageError as exc:
        raise UnsupportedImageTypeError("the body is not an image in a supported format") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image has more than {max_pixels} pixels") from exc
    except Exception as exc:
        raise ImageDecodeError(f"cannot read image header: {exc}") from exc
    w, h = img.size
    if max_pixels is not None and w * h > max_pixels:
        raise ImageTooLargeError(f"image is {w}x{h} = {w * h} pixels; limit is {max_pixels}")
    if w < 1 or h < 1:
        raise ImageDecodeError(f"image has an empty size {w}x{h}")
    try:
        if draft_size and img.format == "JPEG" and img.mode in ("RGB", "L"):
            img.draft(img.mode, (draft_size, draft_size))
        img.seek(0)
        img.load()
        if img.getexif().get(_ORIENTATION, 1) in _ORIENTATIONS_SWAPPING_AXES:
            w, h = h, w
        img = ImageOps.exif_transpose(img) or img
        return _to_rgb(img), (w, h)
    except Exception as exc:
        raise ImageDecodeError(f"cannot decode image data: {exc}") from exc


def letterbox_size(width: int, height: int, input_size: int, pad_multiple: int = 32) -> tuple[
    float, int, int, int, int
]:
    """Scale so the longer side is `input_size`; pad each side up to a multiple of pad_multiple.

    Returns (scale, resized_w, resized_h, padded_w, padded_h).
    """
    scale = input_size / max(width, height)
    rw = max(1, round(width * scale))
    rh = max(1, round(height * scale))
    pw = -(-rw // pad_multiple) * pad_multiple
    ph = -(-rh // pad_multiple) * pad_multiple
    return scale, rw, rh, pw, ph


def preprocess(
    image: Image.Image,
    input_size: int = 512,
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
    std: tuple[float, float, float] = (0.229, 0.224, 0.225),
    pad_multiple: int = 32,
) -> tuple[np.ndarray, Letterbox]:
    """RGB image -> ((1, 3, H, W) float32 normalised tensor, Letterbox).

    The image is resized (bilinear) so its longer side is `input_size`, placed top-left, and
    padded bottom/right with zeros (the mean colour after normalisation) to multiples of 32.
    """
    w, h = image.size
    _, rw, rh, pw, ph = letterbox_size(w, h, input_size, pad_multiple)
    resized = image if (rw, rh) == (w, h) else image.resize((rw, rh), Image.Resampling.BILINEAR)
    chw = np.asarray(resized).transpose(2, 0, 1)  # (3, rh, rw) uint8 view, no copy
    scale_vec = (np.asarray(std, dtype=np.float32) * 255.0)[:, None, None]
    mean_vec = (np.asarray(mean, dtype=np.float32) * 255.0)[:, None, None]
    out = np.zeros((1, 3, ph, pw), dtype=np.float32)
    # Written straight into the padded tensor, channel-planar: the same float32 arithmetic
    # as (x - mean) / std on an (h, w, 3) array (bit-identical), ~3x faster, no temporaries.
    view = out[0, :, :rh, :rw]
    np.subtract(chw, mean_vec, out=view, dtype=np.float32)
    np.divide(view, scale_vec, out=view)
    # Box mapping uses the exact per-axis scale of the (rounded) resize.
    return out, Letterbox(rw / w, rh / h, w, h, pw, ph)
