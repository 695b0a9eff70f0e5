"""The bundled default model (models/default.onnx): loads, metadata, golden detections, and
(where ../shared/data is present) real detections on VOC val images.

No torch here: this is the service's own path (export.runtime + NumPy post-processing).

Golden values: `tests/models/golden_default.json`, written for the model file whose SHA-256
it records. After replacing the default model, regenerate them (and review the diff) with
`python -m scripts.golden_default`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export.boxes import box_iou
from export.metadata import ModelMetadata
from export.runtime import OnnxDetector
from model.config import IMAGENET_MEAN, IMAGENET_STD, VOC_CLASSES
from scripts.golden_default import (
    GOLDEN,
    GOLDEN_CFG,
    MODEL,
    REPO,
    class_peaks,
    detect,
    fixed_input,
    sha256,
)

VOC_ROOT = REPO.parent / "shared" / "data" / "voc2012-640"


def _cpu_has_vnni() -> bool:
    """Whether this CPU has VNNI: ONNX Runtime's u8s8 INT8 dot products are then exact int32
    sums. Without it (AVX2 only) they go through VPMADDUBSW, whose int16 pairs can saturate."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


# Tolerances for the golden check. Exact on the machine that wrote them (AVX-512 VNNI); the
# slack covers other CPUs' kernels (FMA order; INT8 saturation without VNNI). On an AVX2-only
# AMD EPYC the worst checked box moved 4.98 px (IoU 0.917 with the golden box), scores stayed
# within 0.01, and val mAP@0.5 was 0.3566 against 0.3576 (`python -m training.evaluate`).
SCORE_ATOL = 0.03
BOX_ATOL_PX = 3.0 if _cpu_has_vnni() else 6.0
# The VOC check: the first N val images in split order, a detection counts when its class is
# right and IoU >= 0.5 with a non-difficult labelled object. Thresholds sit below what the
# shipped model measured (see models/MODEL_CARD.md); a broken model or pipeline finds ~0.
VOC_IMAGES = 40
VOC_SCORE_THRESHOLD = 0.4  # the service's default
MIN_RECALL = 0.45
MIN_PRECISION = 0.26


@pytest.fixture(scope="module")
def detector() -> OnnxDetector:
    assert MODEL.is_file(), f"the bundled default model is missing: {MODEL}"
    return OnnxDetector(MODEL, threads=1)


def test_bundled_model_metadata(detector: OnnxDetector) -> None:
    m: ModelMetadata = detector.metadata
    assert m.class_names == VOC_CLASSES
    assert m.strides == (8, 16, 32, 64, 128)
    assert m.mean == pytest.approx(IMAGENET_MEAN) and m.std == pytest.approx(IMAGENET_STD)
    assert m.input_size % 32 == 0 and m.input_size >= 128
    outputs = {o.name: o.shape for o in detector.session.get_outputs()}
    assert outputs["cls_logits"][-1] == len(VOC_CLASSES)


def test_bundled_model_golden_detections(detector: OnnxDetector) -> None:
    golden = json.loads(GOLDEN.read_text())
    assert golden["model_sha256"] == sha256(MODEL), (
        "models/default.onnx changed: regenerate the golden values "
        "(python -m scripts.golden_default)"
    )
    image = fixed_input()
    peaks = class_peaks(detector, image)
    np.testing.assert_allclose(peaks, golden["class_peaks"], atol=SCORE_ATOL)
    dets = detect(detector, image, GOLDEN_CFG)
    expected = golden["detections"]
    assert len(expected) == GOLDEN_CFG.max_detections, "the golden input should fill the top-k"
    floor = min(d["score"] for d in expected) + SCORE_ATOL
    # Every expected detection clearly above the weakest kept one must be found again (same
    # class, box and score within tolerance); ones near the cut may swap on other kernels.
    for d in expected:
        if d["score"] < floor:
            continue
        same = np.flatnonzero(dets.class_ids == d["class_id"])
        name = VOC_CLASSES[d["class_id"]]
        assert same.size, f"no {name} detection (expected score {d['score']:.3f})"
        err = np.abs(dets.boxes[same] - np.asarray(d["box"], np.float32)).max(axis=1)
        best = same[int(np.argmin(err))]
        assert err.min() <= BOX_ATOL_PX, f"{name}: box off by {err.min():.2f} px"
        assert abs(float(dets.scores[best]) - d["score"]) <= SCORE_ATOL


@pytest.mark.skipif(not VOC_ROOT.is_dir(), reason=f"VOC data not found at {VOC_ROOT}")
def test_bundled_model_finds_voc_objects(detector: OnnxDetector) -> None:
    from training.data.voc import load_voc

    samples = load_voc(VOC_ROOT, "val")[:VOC_IMAGES]
    found = labelled = correct = predicted = 0
    for sample in samples:
        result = detector.detect_bytes(Path(sample.image_path).read_bytes())
        dets = result.detections
        keep = dets.scores >= VOC_SCORE_THRESHOLD
        boxes, classes = dets.boxes[keep], dets.class_ids[keep]
        gt = ~sample.difficult
        gt_boxes, gt_labels = sample.boxes[gt], sample.labels[gt]
        iou = box_iou(gt_boxes, boxes)  # (G, D)
        same_class = gt_labels[:, None] == classes[None, :]
        hit = (iou >= 0.5) & same_class
        found += int(hit.any(axis=1).sum())
        labelled += int(gt_boxes.shape[0])
        correct += int(hit.any(axis=0).sum())
        predicted += int(boxes.shape[0])
    recall = found / max(labelled, 1)
    precision = correct / max(predicted, 1)
    assert recall >= MIN_RECALL, f"found {found}/{labelled} labelled objects"
    assert precision >= MIN_PRECISION, f"{correct}/{predicted} detections were right"


def test_service_serves_the_bundled_model_by_default() -> None:
    """With no DETECTOR_MODEL_PATH the app loads models/default.onnx and answers /detect."""
    import io
    import warnings

    from service.app import create_app
    from service.settings import Settings
    from tests.service.conftest import wait_ready

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    settings = Settings(threads=1)
    assert settings.model_path == MODEL
    buf = io.BytesIO()
    Image.fromarray(fixed_input(), "RGB").save(buf, "PNG")
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        info = client.get("/model").json()
        assert info["classes"] == list(VOC_CLASSES)
        reply = client.post("/detect", files={"image": ("x.png", buf.getvalue(), "image/png")})
        assert reply.status_code == 200, reply.text
        assert {"detections", "timings_ms"} <= set(reply.json())
