"""Native-resolution crops (training/data/native_crop.py, crop_scale "native"): boxes follow the
crop, the min_visible rule holds, the scale stays about 1:1 on large photos, windows find the
objects, and crop_scale "fit" is today's pipeline unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.training.data.test_transforms import (
    PAD,
    assert_boxes_on_white,
    check,
    items,
    sizes,
    white_box_item,
)
from tests.training.data_helpers import write_image
from training.config import CROP_SCALES, TrainConfig
from training.data.color import apply_hsv, draw_hsv
from training.data.dataset import DetectionDataset
from training.data.loaders import augment_config
from training.data.mosaic import mixup, mosaic
from training.data.native_crop import (
    CROP_SCALES as NATIVE_CROP_SCALES,
)
from training.data.native_crop import (
    crop_at,
    native_crop,
    native_tile,
    window_start,
)
from training.data.pipeline import AugmentConfig, train_view
from training.data.sample import Sample
from training.data.transforms import (
    Item,
    filter_boxes,
    random_hflip,
    random_scale_letterbox,
)

BLACK = (0, 0, 0)


def index_image(w: int, h: int) -> np.ndarray:
    """HxWx3 uint8 (w, h <= 1024) whose pixels say where they are: `pixel_xy` reads them."""
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs // 4, ys // 4, 4 * (xs % 4) + ys % 4], axis=-1).astype(np.uint8)


def pixel_xy(pixel: np.ndarray) -> tuple[int, int]:
    r, g, b = (int(v) for v in pixel)
    return 4 * r + b // 4, 4 * g + b % 4


# A 1000x800 photo; the window of 384 px starts at (300, 200) at 1:1 (canvas offset -300, -200).
PHOTO_BOXES = np.asarray(
    [
        [350, 250, 400, 330],  # inside: -> (50, 50, 100, 130)
        [250, 300, 350, 340],  # left half outside: -> (0, 100, 50, 140), 50% kept
        [650, 500, 700, 600],  # -> (350, 300, 400, 400) clipped to (350, 300, 384, 384): 57%
        [660, 560, 760, 660],  # -> (360, 360, 384, 384): 576 of 10000 px = 6% < 25%: dropped
        [0, 0, 100, 100],  # wholly outside: dropped
    ],
    dtype=np.float32,
)
PHOTO_LABELS = np.arange(5, dtype=np.int64)


def test_crop_at_maps_clips_and_drops_boxes_by_hand() -> None:
    image = index_image(1000, 800)
    canvas, boxes, labels = crop_at(
        image, PHOTO_BOXES, PHOTO_LABELS, 384, 1000, 800, -300, -200, BLACK
    )
    np.testing.assert_array_equal(canvas, image[200:584, 300:684])  # 1:1: the pixels as stored
    np.testing.assert_allclose(boxes, [[50, 50, 100, 130], [0, 100, 50, 140], [350, 300, 384, 384]])
    assert labels.tolist() == [0, 1, 2]
    # at half scale (500x400) from (100, 50): the first box -> (175, 125, 200, 165) - (100, 50)
    _, boxes, labels = crop_at(image, PHOTO_BOXES, PHOTO_LABELS, 384, 500, 400, -100, -50, BLACK)
    np.testing.assert_allclose(boxes[0], [75, 75, 100, 115])
    assert labels[0] == 0


def test_crop_at_respects_min_visible() -> None:
    """The third box keeps 34 x 84 = 2856 of its 5000 px (57%) and the second 50%."""
    args = (index_image(1000, 800), PHOTO_BOXES, PHOTO_LABELS, 384, 1000, 800, -300, -200, BLACK)
    assert crop_at(*args, min_visible=0.5)[2].tolist() == [0, 1, 2]
    assert crop_at(*args, min_visible=0.55)[2].tolist() == [0, 2]
    assert crop_at(*args, min_visible=0.6)[2].tolist() == [0]
    assert crop_at(*args, min_visible=0.05)[2].tolist() == [0, 1, 2, 3]
    assert crop_at(*args, min_size=40.0)[2].tolist() == [0, 1]  # the clipped box is 34 px wide


def test_window_start_spans_holds_the_centre_and_stays_inside() -> None:
    rng = np.random.default_rng(0)
    assert window_start(300, 384, rng) == 0 and window_start(384, 384, rng, 10.0) == 0
    assert rng.random() == np.random.default_rng(0).random()  # a spanning window drew nothing
    starts = [window_start(1280, 384, rng) for _ in range(400)]
    assert min(starts) >= 0 and max(starts) <= 1280 - 384 and np.ptp(starts) > 700
    for centre in (5.0, 640.0, 1275.0):
        starts = [window_start(1280, 384, rng, centre) for _ in range(200)]
        assert all(0 <= s <= 1280 - 384 and s - 1 < centre <= s + 384 for s in starts)
    placed = [640 - window_start(1280, 384, rng, 640.0) for _ in range(400)]
    assert min(placed) < 40 and max(placed) > 344  # anywhere in the window, not the middle only


def test_native_crop_keeps_objects_near_their_photo_size() -> None:
    """A 1280 px photo at a 384 px input: the 40 px box stays 20..60 px (scale 0.5..1.5 of the
    photo) where the fit scale would make it 6..18 px."""
    item = white_box_item(1280, 1280, (700, 300, 740, 340), 3)
    sides = []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        image, boxes, labels = native_crop(*item, 384, rng, (0.5, 1.5), BLACK, object_bias=1.0)
        assert labels.tolist() == [3]  # the window is placed around it
        assert_boxes_on_white(image, boxes)
        sides.extend((boxes[:, 2:] - boxes[:, :2]).ravel().tolist())
    assert min(sides) >= 20 - 1 and max(sides) <= 60 + 1 and np.ptp(sides) > 15


def test_native_crop_never_shrinks_below_the_fit() -> None:
    """A 300x200 photo is smaller than the 384 px input: the scale is at least the fit (1.28),
    so the image is whole on the canvas and the 30 px box at least 38 px."""
    item = white_box_item(300, 200, (100, 50, 130, 80), 1)
    for seed in range(20):
        image, boxes, _ = native_crop(*item, 384, np.random.default_rng(seed), (0.3, 2.0), BLACK)
        assert_boxes_on_white(image, boxes)
        assert (boxes[:, 2:] - boxes[:, :2]).min() >= 30 * 1.28 - 1


def test_native_crop_without_bias_often_misses_a_lone_small_box() -> None:
    """The bias matters: a random window of a 1280 px photo rarely holds its one small box."""
    item = white_box_item(1280, 1280, (1200, 1200, 1230, 1230), 0)
    kept = [
        len(
            native_crop(*item, 384, np.random.default_rng(s), (1.0, 1.0), BLACK, object_bias=0.0)[1]
        )
        for s in range(40)
    ]
    assert sum(kept) < 20


def test_native_tile_is_a_window_at_one_to_one() -> None:
    image = index_image(1000, 800)
    rng = np.random.default_rng(3)
    tile, boxes, labels = native_tile(image, PHOTO_BOXES, PHOTO_LABELS, 384, rng, object_bias=0)
    assert tile.shape == (384, 384, 3) and tile.flags.c_contiguous
    x0, y0 = pixel_xy(tile[0, 0])  # the window's start in the photo
    np.testing.assert_array_equal(tile, image[y0 : y0 + 384, x0 : x0 + 384])  # 1:1
    shifted = PHOTO_BOXES - np.asarray([x0, y0, x0, y0], dtype=np.float32)
    expected = filter_boxes(shifted, PHOTO_LABELS, 384, 384, 0.0, 0.25)
    np.testing.assert_allclose(boxes, expected[0])
    np.testing.assert_array_equal(labels, expected[1])
    small = index_image(300, 200)  # within the canvas: whole, no draw
    rng = np.random.default_rng(0)
    out = native_tile(small, PHOTO_BOXES[:1] / 4, PHOTO_LABELS[:1], 384, rng)
    assert out[0] is small and rng.random() == np.random.default_rng(0).random()


SETTINGS = settings(max_examples=40, deadline=None)


@SETTINGS
@given(items(max_side=300), sizes, st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_native_crop_valid(item: Item, size: int, seed: int, bias: float) -> None:
    rng = np.random.default_rng(seed)
    check(native_crop(*item, size, rng, (0.5, 1.5), PAD, object_bias=bias), size, 2.0)
    tile, boxes, labels = native_tile(*item, size, rng)
    ih, iw = item[0].shape[:2]
    h, w = tile.shape[:2]
    assert (h, w) == ((ih, iw) if max(iw, ih) <= size else (min(ih, size), min(iw, size)))
    assert len(boxes) == len(labels)
    if len(boxes):
        assert boxes[:, 0::2].min() >= 0 and boxes[:, 2].max() <= w and boxes[:, 3].max() <= h


def native_cfg(**changes: float) -> AugmentConfig:
    base = dict(
        hsv_h=0.0,
        hsv_s=0.0,
        hsv_v=0.0,
        mixup_prob=0.0,
        mosaic_prob=1.0,
        scale_min=0.5,
        scale_max=1.5,
    )
    base.update(changes)
    return AugmentConfig(crop_scale="native", **base)  # type: ignore[arg-type]


@pytest.mark.parametrize("mosaic_prob", [0.0, 1.0])
def test_native_pipeline_boxes_follow_the_pixels_near_one_to_one(mosaic_prob: float) -> None:
    """Single views and Mosaic of 1280 px photos: the 40 px boxes stay 20..60 px (Mosaic's zoom
    g ~ U(0.5, 1.5) of a 1:1 window)."""
    pool = [white_box_item(1280, 960, (600 + 40 * k, 400, 640 + 40 * k, 440), k) for k in range(3)]
    cfg = native_cfg(mosaic_prob=mosaic_prob)
    sides = []
    for seed in range(12):
        image, boxes, _ = train_view(
            pool.__getitem__, seed % 3, 3, 384, cfg, np.random.default_rng(seed), BLACK
        )
        assert_boxes_on_white(image, boxes)
        whole = boxes[
            (boxes[:, 0] > 0) & (boxes[:, 1] > 0) & (boxes[:, 2] < 384) & (boxes[:, 3] < 384)
        ]
        sides.extend((whole[:, 2:] - whole[:, :2]).ravel().tolist())
    assert sides and min(sides) >= 20 - 1 and max(sides) <= 60 + 1


def fit_reference(
    pool: list[Item], index: int, size: int, cfg: AugmentConfig, rng: np.random.Generator
) -> Item:
    """The training pipeline as it was before crop_scale, from its unchanged parts."""
    if cfg.mosaic_prob > 0 and rng.random() < cfg.mosaic_prob:
        partners = [int(j) for j in rng.integers(0, len(pool), size=3)]
        tiles = [pool[index]] + [pool[j] for j in partners]
        item = mosaic(
            tiles,
            size,
            rng,
            cfg.scale_range,
            cfg.mosaic_center,
            PAD,
            cfg.min_box_size,
            cfg.min_visible,
            cfg.aspect_jitter,
        )
    else:
        item = random_scale_letterbox(
            *pool[index],
            size,
            rng,
            cfg.scale_range,
            PAD,
            cfg.min_box_size,
            cfg.min_visible,
            cfg.aspect_jitter,
        )
    if cfg.mixup_prob > 0 and rng.random() < cfg.mixup_prob:
        other = random_scale_letterbox(
            *pool[int(rng.integers(0, len(pool)))],
            size,
            rng,
            cfg.scale_range,
            PAD,
            cfg.min_box_size,
            cfg.min_visible,
            cfg.aspect_jitter,
        )
        flipped, fboxes = random_hflip(other[0], other[1], rng, cfg.flip_prob)
        item = mixup(item, (np.ascontiguousarray(flipped), fboxes, other[2]), rng, cfg.mixup_beta)
    hsv = draw_hsv(rng, cfg.hsv_h, cfg.hsv_s, cfg.hsv_v)
    image, boxes = random_hflip(item[0], item[1], rng, cfg.flip_prob)
    boxes, labels = filter_boxes(boxes, item[2], size, size, cfg.min_box_size, 0.0)
    return apply_hsv(image, hsv), boxes, labels


def test_fit_is_todays_pipeline_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    pool = []
    for k in range(5):
        w, h = int(rng.integers(60, 700)), int(rng.integers(60, 700))
        pool.append(white_box_item(w, h, (w // 4, h // 4, w // 2, h // 2 + 3), k))
    assert AugmentConfig().crop_scale == "fit" and TrainConfig().crop_scale == "fit"
    for cfg in (
        AugmentConfig(mosaic_prob=0.5, mixup_prob=0.5, aspect_jitter=0.3),
        AugmentConfig(crop_scale="fit", scale_min=0.3, scale_max=2.0),
    ):
        for i in range(5):
            for seed in range(4):
                got = train_view(pool.__getitem__, i, 5, 96, cfg, np.random.default_rng(seed), PAD)
                want = fit_reference(pool, i, 96, cfg, np.random.default_rng(seed))
                for a, b in zip(got, want, strict=True):
                    np.testing.assert_array_equal(a, b)


def test_config_plumbing_and_choices() -> None:
    assert CROP_SCALES == NATIVE_CROP_SCALES
    native = augment_config(TrainConfig(crop_scale="native"))
    assert native is not None and native.crop_scale == "native"
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentConfig(crop_scale="tile")
    with pytest.raises(ValueError, match="crop_scale"):
        TrainConfig(crop_scale="tile").validate()


def test_native_dataset_decodes_full_size(tmp_path: Path) -> None:
    """crop_scale native crops the photo's own pixels: no pre-shrink to size x scale_max."""
    path = tmp_path / "big.png"
    write_image(path, 1000, 800)
    box = np.asarray([[100, 100, 140, 150]], dtype=np.float32)
    sample = Sample(
        "big", path, 1000, 800, box, np.zeros(1, dtype=np.int64), np.zeros(1, dtype=bool)
    )
    fit = DetectionDataset([sample], 128, augment=AugmentConfig(scale_max=1.5))
    native = DetectionDataset([sample], 128, augment=AugmentConfig(crop_scale="native"))
    assert fit.raw_item(0)[0].shape[:2] == (154, 192)  # longer side ceil(128 x 1.5)
    image, boxes, _ = native.raw_item(0)
    assert image.shape[:2] == (800, 1000)
    np.testing.assert_array_equal(boxes, box)
    assert native[0][0].shape == (3, 128, 128)
