"""Tiled inference (export/tiling.py) and its use in ImageDetector.detect_bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export.postprocess import Detections, PostprocessConfig, postprocess
from export.preprocess import DEFAULT_MAX_PIXELS, decode_image, preprocess
from export.runtime import OnnxDetector
from export.tiling import parse_tile, plan_tiles, run_tiles, shift

# --- parse_tile ---


@pytest.mark.parametrize("value, expected", [("off", "off"), ("AUTO", "auto"), (" auto", "auto"),
                                             ("3", 3), (1, 1), (8, 8)])  # fmt: skip
def test_parse_tile_accepts(value, expected) -> None:
    assert parse_tile(value) == expected


@pytest.mark.parametrize("value", ["", "on", "0", "9", "-1", "2.5", 0, 9, True])
def test_parse_tile_rejects(value) -> None:
    with pytest.raises(ValueError, match="tile must be off, auto or a grid size 1-8"):
        parse_tile(value)


# --- plan_tiles (hand-computed) ---


def test_grid_2_with_the_default_overlap() -> None:
    # side = ceil(1280 / (1 + 0.8)) = 712; starts 0 and 1280 - 712 = 568 (overlap 144 = 20%).
    assert plan_tiles(1280, 1280, 384, 2) == [
        (0, 0, 712, 712), (568, 0, 1280, 712), (0, 568, 712, 1280), (568, 568, 1280, 1280),
    ]  # fmt: skip


def test_grid_without_overlap_is_a_partition() -> None:
    assert plan_tiles(1000, 600, 384, 2, overlap=0.0) == [
        (0, 0, 500, 300), (500, 0, 1000, 300), (0, 300, 500, 600), (500, 300, 1000, 600),
    ]  # fmt: skip


def test_auto_on_1280_is_2x2_coarse_then_3x3_fine_tiles() -> None:
    # coarse: target 1.85 x 384 = 710.4; n = round(1 + (1280 / 710.4 - 1) / 0.8) = round(2.002)
    # = 2; side ceil(1280 / 1.8) = 712, starts 0 and 568: the same windows as grid 2.
    # fine: target 1.28 x 384 = 491.52; n = round(1 + (1280 / 491.52 - 1) / 0.8) = round(3.005)
    # = 3; side ceil(1280 / 2.6) = 493, starts 0, round(787 / 2) = 394 (half-even), 787.
    windows = plan_tiles(1280, 1280, 384, "auto")
    coarse = [(x, y, x + 712, y + 712) for y in (0, 568) for x in (0, 568)]
    fine = [(x, y, x + 493, y + 493) for y in (0, 394, 787) for x in (0, 394, 787)]
    assert windows == coarse + fine
    assert windows[:4] == plan_tiles(1280, 1280, 384, 2)
    assert windows[4:] == plan_tiles(1280, 1280, 384, 3)


def test_auto_fine_level_only_whole_within_the_budget_and_never_a_copy() -> None:
    assert len(plan_tiles(1280, 1280, 384, "auto", max_tiles=13)) == 13
    assert plan_tiles(1280, 1280, 384, "auto", max_tiles=12) == plan_tiles(1280, 1280, 384, 2)
    # 1920 x 1080: coarse 3 x 2 (round(3.13), round(1.65)), fine 5 x 2 (round(4.63),
    # round(2.497)): 6 + 10 = 16 = the default cap.
    assert len(plan_tiles(1920, 1080, 384, "auto")) == 16
    # 995 px: both levels are 2 x 2 (fine round(2.28) = 2): the fine grid would repeat it.
    assert len(plan_tiles(995, 995, 384, "auto")) == 4
    # 1500 px: coarse 2 x 2, fine 4 x 4 (round(3.56)): 4 + 16 > 16, so coarse only.
    assert len(plan_tiles(1500, 1500, 384, "auto")) == 4


def test_auto_two_tiles_along_a_side_from_995px() -> None:
    # n = 2 once 1 + (L / 710.4 - 1) / 0.8 >= 1.5, i.e. L >= 1.4 x 710.4 = 994.56:
    # 994 -> round(1.4991) = 1 (no tiles), 995 -> round(1.5008) = 2 (side ceil(995 / 1.8) = 553).
    assert plan_tiles(994, 994, 384, "auto") == []
    assert plan_tiles(995, 995, 384, "auto") == [
        (0, 0, 553, 553), (442, 0, 995, 553), (0, 442, 553, 995), (442, 442, 995, 995),
    ]  # fmt: skip
    # 3 along a side once 1 + (L / 710.4 - 1) / 0.8 >= 2.5, i.e. L >= 2.2 x 710.4 = 1562.9
    # (the fine level, 4 x 4 there, does not fit in the 16 tiles left):
    assert len(plan_tiles(1563, 1563, 384, "auto")) == 9
    assert len(plan_tiles(1562, 1562, 384, "auto")) == 4


def test_auto_threshold_on_the_short_side() -> None:
    assert plan_tiles(1000, 576, 384, "auto") == []  # 576 = 1.5 x 384: not above
    # 577 wide: 1 column; 1000 high: n = round(1 + (1000 / 710.4 - 1) / 0.8) = 2, side 556
    assert plan_tiles(577, 1000, 384, "auto") == [(0, 0, 577, 556), (0, 444, 577, 1000)]
    assert plan_tiles(640, 640, 384, "auto") == []  # the val photos: above 1.5x, one tile
    assert plan_tiles(500, 375, 384, "auto") == []  # a VOC photo


def test_cap_reduces_the_grid() -> None:
    assert len(plan_tiles(4000, 4000, 384, 4, max_tiles=9)) == 9  # 4x4 -> 3x4 -> 3x3
    assert len(plan_tiles(4000, 4000, 384, 4, max_tiles=5)) == 4  # ... -> 2x3 -> 2x2
    assert len(plan_tiles(4000, 3000, 384, "auto")) <= 16
    assert plan_tiles(4000, 4000, 384, 4, max_tiles=1) == []


def test_no_tiles_for_off_grid_1_or_a_small_image() -> None:
    assert plan_tiles(1280, 1280, 384, "off") == []
    assert plan_tiles(1280, 1280, 384, 1) == []
    assert plan_tiles(300, 200, 384, 2) == []  # the whole-image pass sees every pixel
    assert plan_tiles(300, 200, 384, "auto") == []


def test_windows_cover_the_image_and_are_symmetric() -> None:
    for w, h, tile in [(1920, 1080, "auto"), (1001, 777, 3), (5000, 700, "auto")]:
        windows = plan_tiles(w, h, 384, tile)
        covered = np.zeros((h, w), bool)
        for x0, y0, x1, y1 in windows:
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            covered[y0:y1, x0:x1] = True
        assert covered.all()
        assert len(plan_tiles(h, w, 384, tile)) == len(windows)


# --- mapping back and merging ---


def test_shift_maps_tile_boxes_to_the_original() -> None:
    tile_dets = Detections(np.asarray([[1, 2, 30, 40]], np.float32), np.asarray([0.9], np.float32),
                           np.asarray([2]))  # fmt: skip
    d = shift(tile_dets, (100, 50, 400, 350))
    np.testing.assert_array_equal(d.boxes, [[101, 52, 130, 90]])
    assert d.class_ids.tolist() == [2] and d.scores.tolist() == pytest.approx([0.9])


def test_run_tiles_boxes_land_in_their_window(perturbed_onnx: Path) -> None:
    det = OnnxDetector(perturbed_onnx, threads=1)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    windows = plan_tiles(400, 300, det.metadata.input_size, 2)
    cfg = PostprocessConfig(candidate_threshold=0.01)
    for batch in (False, True):
        parts = run_tiles(image, windows, det.infer, det.metadata, cfg, batch=batch)
        assert [w for w, _ in parts] == windows
        for (x0, y0, x1, y1), d in parts:
            b = d.boxes
            assert ((b[:, 0] >= x0) & (b[:, 2] <= x1) & (b[:, 1] >= y0) & (b[:, 3] <= y1)).all()
        # The same as running the crop alone and shifting its boxes.
        tensor, lb = preprocess(image.crop(windows[3]), det.metadata.input_size)
        cls, box, ctr = det.infer(tensor)
        m = det.metadata
        alone = postprocess(cls[0], box[0], ctr[0], tensor.shape[2:], m.strides, lb, cfg)
        np.testing.assert_allclose(parts[3][1].boxes, shift(alone, windows[3]).boxes, atol=1e-3)


def test_run_tiles_batches_one_call_per_shape_and_keeps_the_order(perturbed_onnx: Path) -> None:
    det = OnnxDetector(perturbed_onnx, threads=1)
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 255, (700, 1000, 3), dtype=np.uint8))
    windows = [*plan_tiles(1000, 700, det.metadata.input_size, 2), (0, 0, 700, 700)]
    calls: list[int] = []

    def infer(tensor: np.ndarray):
        calls.append(tensor.shape[0])
        return det.infer(tensor)

    cfg = PostprocessConfig(candidate_threshold=0.01)
    batched = run_tiles(image, windows, infer, det.metadata, cfg, batch=True)
    assert sorted(calls) == [1, 4]  # the 2 x 2 grid in one call, the square tile in another
    calls.clear()
    single = run_tiles(image, windows, infer, det.metadata, cfg, batch=False)
    assert calls == [1] * 5
    assert [w for w, _ in batched] == [w for w, _ in single] == windows
    for (_, a), (_, b) in zip(batched, single, strict=True):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)


# --- ImageDetector.detect_bytes ---


def jpeg(width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def untiled_before(det: OnnxDetector, data: bytes, cfg: PostprocessConfig) -> Detections:
    """The pipeline as it was before tiling: draft decode, letterbox, one run, decode + NMS."""
    m = det.metadata
    image, original = decode_image(data, DEFAULT_MAX_PIXELS, m.input_size)
    tensor, lb = preprocess(image, m.input_size, m.mean, m.std)
    lb = lb.for_original_size(*original)
    cls, box, ctr = det.infer(tensor)
    return postprocess(cls[0], box[0], ctr[0], tensor.shape[2:], m.strides, lb, cfg)


@pytest.mark.parametrize("size", [(900, 700), (200, 150)])
def test_tile_off_and_auto_without_tiles_are_bit_identical_to_before(
    perturbed_onnx: Path, size: tuple[int, int]
) -> None:
    det = OnnxDetector(perturbed_onnx, threads=1)
    data = jpeg(*size)
    cfg = PostprocessConfig(candidate_threshold=0.01)
    before = untiled_before(det, data, cfg)
    assert len(before) > 0
    auto_tiles = plan_tiles(*size, det.metadata.input_size, "auto")
    modes = ["off"] if auto_tiles else ["off", "auto"]  # auto leaves 200x150 whole at 128 px
    for tile in modes:
        result = det.detect_bytes(data, cfg, tile=tile)
        assert result.tiles == 0 and "tiles" not in result.timings_s
        np.testing.assert_array_equal(result.detections.boxes, before.boxes)
        np.testing.assert_array_equal(result.detections.scores, before.scores)
        np.testing.assert_array_equal(result.detections.class_ids, before.class_ids)
    default = det.detect_bytes(data, cfg)
    np.testing.assert_array_equal(default.detections.boxes, before.boxes)


def test_tile_2_runs_four_tiles_with_boxes_inside_the_image(perturbed_onnx: Path) -> None:
    det = OnnxDetector(perturbed_onnx, threads=1)
    result = det.detect_bytes(jpeg(400, 300), PostprocessConfig(candidate_threshold=0.01),
                              tile=2)  # fmt: skip
    assert result.tiles == 4 and result.timings_s["tiles"] > 0
    assert (result.width, result.height) == (400, 300)
    b = result.detections.boxes
    assert len(b) > 0
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
    assert (b[:, 2] <= 400).all() and (b[:, 3] <= 300).all()
    assert (np.diff(result.detections.scores) <= 0).all()
    sequential = OnnxDetector(perturbed_onnx, threads=1)
    sequential.batch_tiles = False
    again = sequential.detect_bytes(jpeg(400, 300), PostprocessConfig(candidate_threshold=0.01),
                                    tile=2)  # fmt: skip
    np.testing.assert_allclose(again.detections.boxes, b, atol=1e-3)


def test_auto_tiles_a_large_image_and_caps_the_count(perturbed_onnx: Path) -> None:
    det = OnnxDetector(perturbed_onnx, threads=1)  # input size 128: 1000 px is ~8 tiles wide
    result = det.detect_bytes(jpeg(1000, 800), tile="auto", max_tiles=6)
    assert 2 <= result.tiles <= 6


def test_detect_bytes_rejects_a_bad_tile(perturbed_onnx: Path) -> None:
    det = OnnxDetector(perturbed_onnx, threads=1)
    with pytest.raises(ValueError, match="tile must be"):
        det.detect_bytes(jpeg(64, 64), tile="lots")


# --- the evaluation path (training/evaluation/inference.py run_detector, evaluate --tile) ---


def test_run_detector_tiles_like_detect_bytes(perturbed_onnx: Path, tmp_path: Path) -> None:
    from tests.training.data_helpers import make_voc_tree
    from training.data.voc import load_voc
    from training.evaluation.inference import run_detector

    root = make_voc_tree(tmp_path, {"big": (400, 300, [("cat", 1, 1, 50, 50, 0)]),
                                    "small": (120, 90, [("dog", 1, 1, 30, 30, 0)])},
                         split="val", ext=".jpg")  # fmt: skip
    samples = load_voc(root, "val", ("cat", "dog", "person"))
    det = OnnxDetector(perturbed_onnx, threads=1)
    cfg = PostprocessConfig(candidate_threshold=0.01)
    off = run_detector(det, samples, cfg)
    tiled = run_detector(det, samples, cfg, tile=2)
    for sample, got in zip(samples, tiled, strict=True):
        want = det.detect_bytes(Path(sample.image_path).read_bytes(), cfg, None, tile=2)
        np.testing.assert_allclose(got.boxes, want.detections.boxes, atol=1e-3)
        np.testing.assert_array_equal(got.class_ids, want.detections.class_ids)
    np.testing.assert_array_equal(tiled[1].boxes, off[1].boxes)  # 120 px <= 128: never tiled
    assert not np.array_equal(tiled[0].scores, off[0].scores)
