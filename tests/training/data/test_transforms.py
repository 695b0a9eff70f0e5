"""Transforms: boxes stay valid (hypothesis), boxes follow the pixels, Mosaic/MixUp keep the
union of boxes, and everything is deterministic for a seed."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.training.data_helpers import assert_valid_boxes
from training.data.color import apply_hsv, draw_hsv
from training.data.mosaic import mixup, mosaic
from training.data.pipeline import AugmentConfig, train_view
from training.data.transforms import (
    Item,
    filter_boxes,
    hflip,
    jittered_size,
    letterbox,
    random_scale_letterbox,
)

PAD = (124, 116, 104)
SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def items(draw: st.DrawFn, max_side: int = 160) -> Item:
    """A random image (4..max_side px a side) with 0..8 valid boxes."""
    w = draw(st.integers(4, max_side))
    h = draw(st.integers(4, max_side))
    n = draw(st.integers(0, 8))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, w, size=(n, 2)), axis=1)
    y = np.sort(rng.uniform(0, h, size=(n, 2)), axis=1)
    x[:, 1] = np.maximum(x[:, 1], np.minimum(x[:, 0] + 0.5, w))
    y[:, 1] = np.maximum(y[:, 1], np.minimum(y[:, 0] + 0.5, h))
    boxes = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1).astype(np.float32)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    labels = rng.integers(0, 20, size=n).astype(np.int64)
    return image, boxes[keep], labels[keep]


sizes = st.sampled_from([32, 48, 64, 96])
seeds = st.integers(0, 2**32 - 1)
scales = st.tuples(st.floats(0.1, 1.0), st.floats(1.0, 2.5))


def check(item: Item, size: int, min_size: float = 0.0) -> None:
    image, boxes, labels = item
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    assert_valid_boxes(boxes, labels, size, size)
    if len(boxes):
        assert (boxes[:, 2:] - boxes[:, :2]).min() >= min_size


@SETTINGS
@given(items(), sizes, seeds, scales, st.floats(0.0, 4.0))
def test_random_scale_letterbox_valid(
    item: Item, size: int, seed: int, scale: tuple[float, float], min_size: float
) -> None:
    out = random_scale_letterbox(
        *item, size, np.random.default_rng(seed), scale, PAD, min_size=min_size
    )
    check(out, size, min_size)


@SETTINGS
@given(items(), sizes)
def test_letterbox_keeps_every_box(item: Item, size: int) -> None:
    out = letterbox(*item, size, PAD)
    check(out, size)
    h, w = item[0].shape[:2]
    assert len(out[1]) == len(item[1]) or max(w, h) > size  # only shrinking can lose a box


@SETTINGS
@given(items())
def test_hflip_valid_and_involutive(item: Item) -> None:
    image, boxes, labels = item
    flipped, fboxes = hflip(image, boxes)
    assert_valid_boxes(fboxes, labels, image.shape[1], image.shape[0])
    back, bboxes = hflip(flipped, fboxes)
    np.testing.assert_array_equal(back, image)
    np.testing.assert_allclose(bboxes, boxes, atol=1e-4)


@SETTINGS
@given(st.lists(items(), min_size=4, max_size=4), sizes, seeds, scales)
def test_mosaic_valid(tiles: list[Item], size: int, seed: int, scale: tuple[float, float]) -> None:
    check(mosaic(tiles, size, np.random.default_rng(seed), scale, pad_value=PAD), size, 2.0)


@SETTINGS
@given(items(), items(), sizes, seeds)
def test_mixup_valid(a: Item, b: Item, size: int, seed: int) -> None:
    a = letterbox(*a, size, PAD)
    b = letterbox(*b, size, PAD)
    check(mixup(a, b, np.random.default_rng(seed)), size)


@SETTINGS
@given(items(), st.floats(-10, 200), st.floats(0, 5), st.floats(0, 1))
def test_filter_boxes(item: Item, shift: float, min_size: float, min_visible: float) -> None:
    image, boxes, labels = item
    h, w = image.shape[:2]
    out, out_labels = filter_boxes(boxes + shift, labels, w, h, min_size, min_visible)
    assert_valid_boxes(out, out_labels, w, h)
    if len(out):
        assert (out[:, 2:] - out[:, :2]).min() >= min_size


@settings(max_examples=25, deadline=None)
@given(st.lists(items(), min_size=1, max_size=5), sizes, seeds,
       st.floats(0, 1), st.floats(0, 1))  # fmt: skip
def test_full_train_pipeline_valid(
    pool: list[Item], size: int, seed: int, mosaic_prob: float, mixup_prob: float
) -> None:
    cfg = AugmentConfig(mosaic_prob=mosaic_prob, mixup_prob=mixup_prob)
    out = train_view(pool.__getitem__, 0, len(pool), size, cfg, np.random.default_rng(seed), PAD)
    check(out, size, cfg.min_box_size)


def white_box_item(w: int, h: int, box: tuple[int, int, int, int], label: int) -> Item:
    image = np.zeros((h, w, 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image, np.asarray([box], dtype=np.float32), np.asarray([label], dtype=np.int64)


def assert_boxes_on_white(image: np.ndarray, boxes: np.ndarray) -> None:
    """Each box covers white pixels (its object), the border around it is mostly dark."""
    for x1, y1, x2, y2 in np.round(boxes).astype(int):
        inner = image[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1]
        assert inner.size and inner.mean() > 200
    mask = np.zeros(image.shape[:2], dtype=bool)
    for x1, y1, x2, y2 in np.round(boxes).astype(int):
        mask[max(y1 - 1, 0) : y2 + 1, max(x1 - 1, 0) : x2 + 1] = True
    assert image[~mask].mean() < 30


def test_boxes_follow_the_pixels() -> None:
    item = white_box_item(120, 80, (30, 20, 90, 60), 3)
    cfg = AugmentConfig(hsv_h=0, hsv_s=0, hsv_v=0, mixup_prob=0, mosaic_prob=1.0)
    pool = [item, white_box_item(60, 100, (5, 50, 40, 95), 1)]
    black = (0, 0, 0)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        image, boxes, _ = random_scale_letterbox(*item, 96, rng, (0.5, 1.5), black)
        assert_boxes_on_white(image, boxes)
        image, boxes, _ = train_view(pool.__getitem__, seed % 2, 2, 96, cfg, rng, black)
        assert_boxes_on_white(image, boxes)
    image, boxes, _ = letterbox(*item, 96, black)
    assert_boxes_on_white(image, boxes)
    np.testing.assert_allclose(boxes, [[24, 16, 72, 48]])


def test_jittered_size_bounds_and_no_draw_when_off() -> None:
    rng = np.random.default_rng(0)
    assert jittered_size(200, 100, 0.5, rng, 0.0) == (100, 50)
    assert rng.random() == np.random.default_rng(0).random()  # j = 0 drew nothing
    ratios, areas = [], []
    for _ in range(400):
        tw, th = jittered_size(400, 400, 1.0, rng, 0.3)
        ratios.append(tw / th)
        areas.append(tw * th / 400**2)
    assert 1 / 1.3 - 0.01 <= min(ratios) < 0.85 and 1.15 < max(ratios) <= 1.3 + 0.01
    np.testing.assert_allclose(areas, 1.0, atol=0.01)


def test_stretched_boxes_follow_the_pixels() -> None:
    """With aspect jitter, single views and Mosaic tiles stretch the boxes with the pixels."""
    item = white_box_item(120, 80, (30, 20, 90, 60), 3)
    pool = [item, white_box_item(60, 100, (5, 50, 40, 95), 1)]
    cfg = AugmentConfig(hsv_h=0, hsv_s=0, hsv_v=0, mixup_prob=0, mosaic_prob=1.0, aspect_jitter=0.5)
    black = (0, 0, 0)
    ratios = set()
    for seed in range(20):
        rng = np.random.default_rng(seed)
        image, boxes, _ = random_scale_letterbox(
            *item, 96, rng, (0.5, 1.5), black, aspect_jitter=0.5
        )
        assert_boxes_on_white(image, boxes)
        w, h = boxes[0, 2:] - boxes[0, :2]
        ratios.add(round(float(w / h), 2))
        image, boxes, _ = train_view(pool.__getitem__, seed % 2, 2, 96, cfg, rng, black)
        assert_boxes_on_white(image, boxes)
    assert len(ratios) > 5  # the 60x40 box (ratio 1.5) was stretched in many ways


def test_mosaic_is_the_union_of_its_tiles() -> None:
    """Centre fixed at the middle and zoom 0.5: the four 64 px tiles fill the 64 px canvas as
    32 px quadrants, so every box survives, scaled by 0.5 and shifted to its quadrant."""
    rng = np.random.default_rng(0)
    tiles = [white_box_item(64, 64, (4 * k, 8, 4 * k + 20, 40), k) for k in range(4)]
    image, boxes, labels = mosaic(tiles, 64, rng, (0.5, 0.5), (1.0, 1.0), PAD)
    assert labels.tolist() == [0, 1, 2, 3]
    offsets = [(0, 0), (32, 0), (0, 32), (32, 32)]
    expected = [
        [2 * k + ox, 4 + oy, 2 * k + 10 + ox, 20 + oy] for k, (ox, oy) in enumerate(offsets)
    ]
    np.testing.assert_allclose(boxes, expected)
    assert_boxes_on_white(image, boxes)


def test_mixup_is_the_union_of_both() -> None:
    rng = np.random.default_rng(1)
    a = letterbox(*white_box_item(64, 64, (0, 0, 20, 20), 1), 64, PAD)
    b = letterbox(*white_box_item(64, 64, (30, 30, 60, 50), 2), 64, PAD)
    image, boxes, labels = mixup(a, b, rng, 1.5)
    np.testing.assert_array_equal(boxes, np.concatenate([a[1], b[1]]))
    assert labels.tolist() == [1, 2]
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    lo, hi = sorted((int(image[10, 10, 0]), int(image[40, 40, 0])))
    assert lo > 0 and hi < 255  # both pictures are blended in


def hsv_jitter(image: np.ndarray, rng: np.random.Generator, *spread: float) -> np.ndarray:
    return apply_hsv(image, draw_hsv(rng, *spread))


def test_hsv_jitter_changes_colour_only() -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(32, 48, 3), dtype=np.uint8)
    out = hsv_jitter(image, np.random.default_rng(3), 0.1, 0.7, 0.4)
    assert out.shape == image.shape and out.dtype == np.uint8 and not np.array_equal(out, image)
    np.testing.assert_array_equal(hsv_jitter(image, np.random.default_rng(3), 0, 0, 0), image)
    gray = np.full((8, 8, 3), 128, dtype=np.uint8)  # no saturation: hue/sat change nothing
    assert np.ptp(hsv_jitter(gray, np.random.default_rng(5), 0.5, 0.9, 0.0).astype(int)) <= 1


def test_train_pipeline_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(7)
    pool = [
        white_box_item(int(rng.integers(40, 120)), int(rng.integers(40, 120)), (5, 5, 35, 30), k)
        for k in range(6)
    ]
    cfg = AugmentConfig(mosaic_prob=0.5, mixup_prob=0.5)
    runs = [
        [train_view(pool.__getitem__, i, 6, 64, cfg, np.random.default_rng(s), PAD)
         for i in range(6)]
        for s in (11, 11, 12)
    ]  # fmt: skip
    for a, b in zip(runs[0], runs[1], strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(a[0], c[0]) for a, c in zip(runs[0], runs[2], strict=True))
