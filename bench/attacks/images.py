"""Images built in memory: ordinary, odd (modes, shapes, EXIF, animation) and hostile (the
attack figures' and the service tests')."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def noise(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)


def jpeg(width: int = 320, height: int = 240, **kw: object) -> bytes:
    return encode(noise(width, height), "JPEG", quality=85, **kw)


def png(width: int = 64, height: int = 48, mode: str = "RGB") -> bytes:
    return encode(noise(width, height, mode if mode in ("RGB", "RGBA", "L") else "RGB")
                  .convert(mode), "PNG")  # fmt: skip


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))  # fmt: skip


def raw_png(width: int, height: int, bit_depth: int, color_type: int, rows: bytes) -> bytes:
    """A PNG written by hand (for formats Pillow cannot write, e.g. 16-bit RGB)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows))
            + _chunk(b"IEND", b""))  # fmt: skip


def png_rgb16(width: int = 40, height: int = 30) -> bytes:
    row = b"\x00" + b"\x80\x00\x40\x00\xff\xff" * width  # filter byte + 16-bit R, G, B
    return raw_png(width, height, 16, 2, row * height)


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""
    return raw_png(width, height, 8, 0, b"\x00" * 64)


def gif_bomb() -> bytes:
    """A GIF whose logical screen and frame claim 65535 x 65535 pixels."""
    data = bytearray(encode(Image.new("P", (8, 8)), "GIF"))
    data[6:10] = struct.pack("<HH", 65535, 65535)
    i = data.index(b",")  # image descriptor
    data[i + 5 : i + 9] = struct.pack("<HH", 65535, 65535)
    return bytes(data)


def exif_rotated_jpeg(width: int, height: int, orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(noise(width, height), "JPEG", exif=exif.tobytes())


def animated(fmt: str = "GIF", frames: int = 3, size: tuple[int, int] = (48, 32)) -> bytes:
    images = [Image.new("RGB", size, (80 * i, 40, 200 - 60 * i)) for i in range(frames)]
    return encode(images[0], fmt, save_all=True, append_images=images[1:], duration=50, loop=0)


def palette_with_transparency() -> bytes:
    img = noise(40, 30).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(img, "PNG", transparency=0)


def multipart(fields: list[tuple[str, bytes, str]], boundary: str = "b0undary") -> bytes:
    """(name, data, content type) parts -> a multipart/form-data body with `boundary`."""
    out = bytearray()
    for name, data, ctype in fields:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                f"filename=\"{name}.bin\"\r\nContent-Type: {ctype}\r\n\r\n").encode()  # fmt: skip
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def _zrows(rows: int, row: bytes) -> bytes:
    """zlib stream of `rows` copies of `row`, compressed chunk by chunk (no full-size copy)."""
    z = zlib.compressobj(9)
    block = row * max(1, (1 << 20) // len(row))
    per = len(block) // len(row)
    out = [z.compress(block) for _ in range(rows // per)]
    out.append(z.compress(row * (rows % per)))
    return b"".join(out) + z.flush()


def png_deep(width: int, height: int, color_type: int = 0) -> bytes:
    """A flat 16-bit PNG (0: gray, 6: RGBA) of width x height: kilobytes on the wire."""
    samples = {0: 1, 2: 3, 6: 4}[color_type]
    ihdr = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    idat = _zrows(height, b"\x00" + b"\x12\x34" * samples * width)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))  # fmt: skip


def float_tiff(width: int, height: int, value: float = 0.25) -> bytes:
    """A deflate-compressed 32-bit float TIFF (mode F) filled with `value` (NaN, inf too)."""
    return encode(Image.new("F", (width, height), value), "TIFF",
                  compression="tiff_adobe_deflate")  # fmt: skip


POSTSCRIPT = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n"
              b"newpath 0 0 moveto 64 64 lineto stroke showpage\n")  # fmt: skip


def outside_allow_list() -> dict[str, bytes]:
    """Images in formats Pillow decodes but the service must not: name -> bytes."""
    out = {"EPS": POSTSCRIPT}
    for fmt in ("JPEG2000", "TGA", "PCX", "SGI", "ICO", "PPM", "DDS", "XBM"):
        mode = "1" if fmt == "XBM" else "RGB"
        out[fmt] = encode(Image.new(mode, (64, 64)), fmt)
    return out


def jpeg_scan_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each scan of a JPEG written by Pillow: its SOS marker to the next
    marker (no restart markers, no garbage)."""
    spans, pos = [], 2
    while data[pos + 1] != 0xD9:
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if data[pos + 1] != 0xDA:
            pos += 2 + length
            continue
        end = pos + 2 + length
        while data[end] != 0xFF or data[end + 1] == 0:
            end = data.index(b"\xff", end + (data[end] == 0xFF) * 2)
        spans.append((pos, end))
        pos = end
    return spans


def progressive_scan_bomb(size: int = 6000, repeats: int = 1000, mode: str = "L") -> bytes:
    """A flat `size` x `size` progressive JPEG whose last (refinement) scan is repeated
    `repeats` times: libjpeg decodes every repeat over every block of the image (a
    6000 px grey one with 1,000 repeats is ~200 KB and ~25 s of CPU)."""
    data = encode(Image.new(mode, (size, size), 128), "JPEG", progressive=True, quality=75)
    start, end = jpeg_scan_spans(data)[-1]
    return data[:end] + data[start:end] * repeats + data[end:]
