"""What decoding one upload may cost: bounded by the image's size, not by what the file repeats,
and stoppable at a deadline.

A progressive JPEG is decoded scan by scan, and libjpeg walks every block of the image for
every scan, however few bytes the scan has: a 6000x6000 grey JPEG whose last 59-byte refinement
scan is repeated 1,000 times (200 KB) costs ~25 ms of CPU per repeated scan, ~25 s in all.
libjpeg accepts the repeats with a warning and the JPEG draft (reduced-size decode) does not
help, since every coefficient is still entropy-decoded at full resolution. `check_jpeg_work`
counts the scans before anything is decoded and refuses a file whose scans would cost more
than a normal photo at the pixel limit (ImageTooLargeError). The other formats' decoders
(PNG, GIF, WebP, BMP, TIFF) do work proportional to the decoded size, which DETECTOR_MAX_PIXELS
and the decoded-bytes limit already bound.

`DeadlineReader` makes every read of the decoder a cancellation point: Pillow feeds the decoder
in blocks of `ImageFile.decodermaxblock` (64 KiB), so a decode whose caller's deadline has
passed stops within one block's work (DeadlinePassedError) instead of running to the end on a
thread that cannot be cancelled.
"""

from __future__ import annotations

import io
import re
import time

from export.errors import DeadlinePassedError, ImageTooLargeError

# libjpeg's default progressive script has 10 scans covering 14 component-scans for colour
# (YCbCr) and 6 for grey; baseline colour is 1 scan of 3 components. 16 component-scans per
# pixel of the pixel limit lets a colour progressive photo at DETECTOR_MAX_PIXELS through, and
# bounds a hostile file near ~0.5 s of decode CPU on the 2-core target (bench: 0.7 ms per
# megapixel per grey refinement scan).
JPEG_COMPONENT_SCANS_PER_PIXEL = 16
# No encoder writes more scans than this (optimising encoders stay within a few dozen): a cap
# on the per-scan set-up cost of small images, which the pixel budget barely limits.
MAX_JPEG_SCANS = 256
# Markers a JPEG may have before its image data ends (APPn, DQT, DHT, SOF, SOS, COM...): real
# files have tens; the walk below is Python, so thousands of 4-byte segments must not be free.
MAX_JPEG_MARKERS = 4096

_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_STANDALONE = {0x01, _SOI, *range(0xD0, 0xD8)}  # TEM, SOI, RSTn: no length field
# 0xFF followed by a marker code: 0xFF00 is a stuffed data byte, 0xFFFF fill, 0xFFD0-D7 restart
# markers inside a scan's data: none of them ends the scan.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def jpeg_component_scans(data: bytes) -> tuple[int, int]:
    """(scans, component-scans) of a JPEG up to its first EOI, walking markers as libjpeg does:
    segments are skipped by their length, a scan's data up to the next marker that is neither a
    stuffed byte nor a restart marker. ImageTooLargeError past MAX_JPEG_MARKERS markers."""
    scans = component_scans = markers = 0
    pos = 2  # after SOI
    while True:
        found = _NEXT_MARKER.search(data, pos)
        if found is None:
            break
        code, pos = data[found.end() - 1], found.end()
        markers += 1
        if markers > MAX_JPEG_MARKERS:
            raise ImageTooLargeError(f"JPEG has more than {MAX_JPEG_MARKERS} markers")
        if code == _EOI:
            break
        if code in _STANDALONE:
            continue
        if pos + 2 > len(data):
            break
        length = int.from_bytes(data[pos : pos + 2], "big")
        if code == _SOS and pos + 2 < len(data):
            scans += 1
            component_scans += data[pos + 2]  # Ns: components in this scan
        pos += max(length, 2)
    return scans, component_scans


def check_jpeg_work(data: bytes, width: int, height: int, max_pixels: int | None) -> None:
    """ImageTooLargeError when the JPEG's scans would cost more than the budget above
    (`max_pixels` None: the scan count alone is checked)."""
    scans, component_scans = jpeg_component_scans(data)
    if scans > MAX_JPEG_SCANS:
        raise ImageTooLargeError(f"JPEG has {scans} scans; the limit is {MAX_JPEG_SCANS}")
    if max_pixels is not None:
        budget = JPEG_COMPONENT_SCANS_PER_PIXEL * max_pixels
        if component_scans * width * height > budget:
            raise ImageTooLargeError(
                f"JPEG is {width}x{height} with {scans} scans ({component_scans} component "
                f"scans): over the decode budget of {budget} pixel-component-scans "
                f"({JPEG_COMPONENT_SCANS_PER_PIXEL} x the pixel limit)"
            )


class DeadlineReader(io.BytesIO):
    """The upload as a file whose every read first checks `deadline` (time.monotonic())."""

    def __init__(self, data: bytes, deadline: float | None) -> None:
        super().__init__(data)
        self.deadline = deadline

    def read(self, size: int | None = -1) -> bytes:
        check_deadline(self.deadline)
        return super().read(size)


def check_deadline(deadline: float | None) -> None:
    """DeadlinePassedError once `deadline` (time.monotonic()) has passed."""
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlinePassedError("deadline passed; the work was stopped")
