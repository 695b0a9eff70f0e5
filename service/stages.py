"""The one list of pipeline stages: JSON `timings_ms`, Server-Timing and the
`detector_stage_duration_seconds{stage}` histogram all use it, in this order."""

from __future__ import annotations

# read: receiving the body; queue: waiting for the inference worker; annotate: drawing the
# boxes (annotate=true only); total: arrival to response.
STAGES: tuple[str, ...] = (
    "read", "queue", "decode", "preprocess", "inference", "postprocess", "annotate", "total",
)  # fmt: skip
