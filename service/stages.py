"""The one list of pipeline stages: JSON `timings_ms`, Server-Timing and the
`detector_stage_duration_seconds{stage}` histogram all use it, in this order."""

from __future__ import annotations

# read: receiving the body; queue: waiting for an inference worker; tiles: the tiles of tiled
# inference (tile=auto or N; preprocess, model and postprocess of every tile, and the merge);
# annotate: drawing the boxes (annotate=true only); total: arrival to response.
STAGES: tuple[str, ...] = (
    "read", "queue", "decode", "preprocess", "inference", "postprocess", "tiles", "annotate",
    "total",
)  # fmt: skip

# A request with several images (/detect/batch, /v2 infer): each image has its own
# IMAGE_STAGES; the request as a whole has REQUEST_STAGES.
IMAGE_STAGES: tuple[str, ...] = ("decode", "preprocess", "inference", "postprocess", "tiles")
REQUEST_STAGES: tuple[str, ...] = ("read", "queue", "total")
assert set(IMAGE_STAGES) | set(REQUEST_STAGES) <= set(STAGES)
