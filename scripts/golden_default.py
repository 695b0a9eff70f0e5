"""Write the golden values of the bundled default model (models/default.onnx) that
tests/models/test_default_model.py checks: its top detections on a fixed synthetic input and
every class's peak probability, with the SHA-256 of the model file they belong to. After
replacing the default model, run it from the repository root and review the diff:

    python -m scripts.golden_default   # writes tests/models/golden_default.json

No torch here: this is the service's own path (export.runtime + NumPy post-processing).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from export.postprocess import Detections, PostprocessConfig, sigmoid
from export.preprocess import preprocess
from export.runtime import OnnxDetector

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "default.onnx"
GOLDEN = REPO / "tests" / "models" / "golden_default.json"
# The fixed input's top detections (candidate threshold 0.01 so that even a weak model's
# strongest guesses are pinned) are stored; so is the peak probability of every class.
GOLDEN_CFG = PostprocessConfig(candidate_threshold=0.01, max_detections=10)


def fixed_input() -> np.ndarray:
    """A deterministic 500x375 RGB uint8 image: smooth colour fields and a few blocks (not a
    dataset image; its detections are whatever the model makes of it, pinned as golden)."""
    rng = np.random.default_rng(20261121)
    h, w = 375, 500
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w * 200 + 30, y / h * 180 + 40, (x + y) / (w + h) * 150 + 60], axis=-1)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 80)), int(rng.integers(0, h - 80))
        bw, bh = int(rng.integers(40, 200)), int(rng.integers(40, 200))
        img[y0 : y0 + bh, x0 : x0 + bw] = rng.integers(0, 256, size=3)
    return np.clip(img, 0, 255).astype(np.uint8)


def detect(detector: OnnxDetector, image: np.ndarray, cfg: PostprocessConfig) -> Detections:
    return detector.detect_image(Image.fromarray(image, "RGB"), cfg).detections


def class_peaks(detector: OnnxDetector, image: np.ndarray) -> np.ndarray:
    """(C,) the highest class probability over all locations, per class (raw outputs)."""
    m = detector.metadata
    tensor, _ = preprocess(Image.fromarray(image, "RGB"), m.input_size, m.mean, m.std)
    cls, _, _ = detector.infer(tensor)
    return sigmoid(cls[0].max(axis=0))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_golden(model: Path = MODEL, out: Path = GOLDEN) -> None:
    detector = OnnxDetector(model, threads=1)
    image = fixed_input()
    dets = detect(detector, image, GOLDEN_CFG)
    payload = {
        "model_sha256": sha256(model),
        "class_peaks": [round(float(v), 4) for v in class_peaks(detector, image)],
        "detections": [
            {
                "class_id": int(c),
                "score": round(float(s), 4),
                "box": [round(float(v), 2) for v in b],
            }
            for b, s, c in zip(dets.boxes, dets.scores, dets.class_ids, strict=True)
        ],
    }
    out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {len(dets)} detections to {out}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=MODEL, help="default: %(default)s")
    p.add_argument("--out", type=Path, default=GOLDEN, help="default: %(default)s")
    args = p.parse_args(argv)
    write_golden(args.model, args.out)


if __name__ == "__main__":
    main()
