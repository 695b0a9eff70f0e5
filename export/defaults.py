"""The operating defaults of every way to run a model: the service (service/settings.py),
`fcos predict`, error analysis and the demo page (which reads the service's value from
GET /model). One place, so that they cannot drift apart."""

from __future__ import annotations

from export.postprocess import PostprocessConfig
from export.preprocess import DEFAULT_MAX_PIXELS

# The bundled model's operating point on the final score (sqrt(class probability x
# centre-ness)): where its val error analysis balances missed objects against false boxes
# (models/MODEL_CARD.md). A model of your own may want another: DETECTOR_SCORE_THRESHOLD.
SCORE_THRESHOLD = 0.4
MAX_DETECTIONS = 100  # per image; VOC photos have at most a few dozen objects
NMS_IOU = PostprocessConfig.nms_iou  # the evaluation's class-wise NMS IoU
MAX_PIXELS = DEFAULT_MAX_PIXELS  # decoded width x height (export/preprocess.py says why)

__all__ = ["MAX_DETECTIONS", "MAX_PIXELS", "NMS_IOU", "SCORE_THRESHOLD"]
