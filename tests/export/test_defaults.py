"""export.defaults is the one source of the operating defaults: the service, `fcos predict`,
error analysis and the demo page (via GET /model) all read it, and the candidate cut the
docs describe (t squared) is what post-processing does."""

from __future__ import annotations

import pytest

from export import defaults
from export.postprocess import candidate_config


def test_the_service_predict_and_error_analysis_read_the_defaults() -> None:
    from export import predict
    from service.settings import Settings
    from training.evaluation.error_analysis import parse_args

    s = Settings()
    assert (s.score_threshold, s.max_detections, s.nms_iou, s.max_pixels) == (
        defaults.SCORE_THRESHOLD, defaults.MAX_DETECTIONS, defaults.NMS_IOU, defaults.MAX_PIXELS)
    args = predict.parse_args(["--model", "m.onnx", "x.jpg"])
    assert (args.score_threshold, args.max_detections, args.nms_iou, args.max_pixels) == (
        defaults.SCORE_THRESHOLD, defaults.MAX_DETECTIONS, defaults.NMS_IOU, defaults.MAX_PIXELS)
    ea = parse_args(["--model", "m.onnx", "--data", "d"])
    assert ea.score_threshold == defaults.SCORE_THRESHOLD


@pytest.mark.parametrize("t", [0.05, 0.1, 0.22, 0.4, 0.9])
def test_the_candidate_cut_is_always_t_squared(t: float) -> None:
    """service/settings.py and docs/API.md say so; an older text said 0.05 above t ~ 0.22."""
    cfg = candidate_config(t, 100, 0.5)
    assert cfg.candidate_threshold == pytest.approx(t * t) and cfg.score_threshold == t
