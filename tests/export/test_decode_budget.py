"""export.decode_budget: JPEG scans counted as libjpeg walks them, the decode budget, and
deadlines as cancellation points of the decoder."""

from __future__ import annotations

import time

import pytest
from PIL import Image

from bench.attacks.images import encode, jpeg_scan_spans, noise, progressive_scan_bomb
from export.decode_budget import (
    JPEG_COMPONENT_SCANS_PER_PIXEL,
    MAX_JPEG_MARKERS,
    MAX_JPEG_SCANS,
    check_jpeg_work,
    jpeg_component_scans,
)
from export.errors import DeadlinePassedError, ImageTooLargeError
from export.preprocess import decode_image


def _jpeg(mode: str = "RGB", **kw: object) -> bytes:
    return encode(noise(96, 64, "L" if mode == "L" else "RGB"), "JPEG", quality=80, **kw)


@pytest.mark.parametrize(
    ("kw", "mode", "expected"),
    [({}, "RGB", (1, 3)),  # baseline, interleaved
     ({"progressive": True}, "RGB", (10, 14)),  # libjpeg's default script
     ({"progressive": True}, "L", (6, 6)),
     ({"restart_marker_blocks": 1}, "RGB", (1, 3)),  # RSTn inside the scan data
     ({"progressive": True, "exif": b"Exif\x00\x00" + b"\xff\xda\x00\x08" * 50}, "RGB",
      (10, 14))],  # SOS-like bytes inside an APP1 segment are skipped with the segment
    ids=["baseline", "progressive", "progressive-grey", "restart-markers", "exif"],
)  # fmt: skip
def test_scans_of_ordinary_files(kw: dict[str, object], mode: str, expected: tuple) -> None:
    assert jpeg_component_scans(_jpeg(mode, **kw)) == expected


def test_an_ordinary_progressive_photo_fits_the_budget_at_the_pixel_limit() -> None:
    _, component_scans = jpeg_component_scans(_jpeg("RGB", progressive=True))
    assert component_scans <= JPEG_COMPONENT_SCANS_PER_PIXEL
    check_jpeg_work(_jpeg("RGB", progressive=True), 8000, 5000, 40_000_000)


def test_repeated_scans_are_counted_and_refused() -> None:
    bomb = progressive_scan_bomb(64, 300)
    assert jpeg_component_scans(bomb) == (306, 306)
    with pytest.raises(ImageTooLargeError, match="306 scans"):
        check_jpeg_work(bomb, 64, 64, 40_000_000)
    big = progressive_scan_bomb(1000, 20)  # 26 scans of 1 MP: within MAX_JPEG_SCANS
    check_jpeg_work(big, 1000, 1000, 40_000_000)
    with pytest.raises(ImageTooLargeError, match="decode budget"):
        check_jpeg_work(big, 1000, 1000, 1_000_000)  # 26 > 16 component scans per pixel


def test_padding_between_scans_does_not_hide_them() -> None:
    """A COM segment holding an EOI, and garbage bytes libjpeg skips, between repeated scans:
    the walk still sees every scan (libjpeg decodes them all)."""
    data = encode(Image.new("L", (64, 64), 128), "JPEG", progressive=True)
    start, end = jpeg_scan_spans(data)[-1]
    com = b"\xff\xfe\x00\x06\xff\xd9\xff\xd9"
    padded = data[:end] + (com + b"\x12\x34" + data[start:end]) * 40 + data[end:]
    assert jpeg_component_scans(padded)[0] == 6 + 40
    decode_image(padded, draft_size=None)  # libjpeg accepts it: the count is what it decodes


def test_marker_floods_are_refused() -> None:
    data = _jpeg()
    flood = data[:2] + b"\xff\xfe\x00\x02" * (MAX_JPEG_MARKERS + 1) + data[2:]
    with pytest.raises(ImageTooLargeError, match="markers"):
        jpeg_component_scans(flood)
    assert MAX_JPEG_SCANS >= 100


def test_decode_refuses_a_scan_bomb_before_decoding() -> None:
    bomb = progressive_scan_bomb(6000, 1000)
    t0 = time.process_time()
    with pytest.raises(ImageTooLargeError, match="1006 scans"):
        decode_image(bomb, draft_size=384)
    assert time.process_time() - t0 < 0.5  # ~25 s if decoded


def test_a_passed_deadline_stops_the_decoder() -> None:
    data = progressive_scan_bomb(6000, 10)  # allowed: 16 scans of 36 MP, ~0.35 s to decode
    t0 = time.process_time()
    decode_image(data, draft_size=384)
    full = time.process_time() - t0
    with pytest.raises(DeadlinePassedError):
        decode_image(data, draft_size=384, deadline=time.monotonic())  # at the header read
    t0 = time.process_time()
    with pytest.raises(DeadlinePassedError):  # passes while the first 64 KiB decode
        decode_image(data, draft_size=384, deadline=time.monotonic() + 0.02)
    assert time.process_time() - t0 < 0.8 * full, full
