"""HSV jitter on the device: against the exact NumPy HSV reference and the loader's Pillow
lookup table, golden conversions, per-image gains, memory format, and the loader's side
(draws and geometry of the host pipeline, gains collated into the batch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.data_helpers import write_image
from training.data import AugmentConfig, DetectionDataset, Sample, collate
from training.data.color import IDENTITY_HSV, _hsv_to_rgb, _rgb_to_hsv, apply_hsv, draw_hsv
from training.data.hsv_device import hsv_jitter_batch, hsv_to_rgb, rgb_to_hsv

GAINS = [
    [0.0, 1.0, 1.0],  # identity
    [0.3, 1.4, 0.7],  # saturation clipped
    [-0.02, 0.5, 1.3],  # value clipped, hue wraps below 0
    [0.95, 1.7, 0.6],  # hue wraps above 1
    [0.015, 0.3, 1.4],  # draw_hsv's extremes
]


def sample_images() -> np.ndarray:
    """(5, 3, 32, 32) uint8: noise with greys, black, white and the primaries painted in."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (len(GAINS), 3, 32, 32), dtype=np.uint8)
    images[:, :, 0, :8] = 128  # grey
    images[:, :, 1, :8] = 0  # black
    images[:, :, 2, :8] = 255  # white
    for c in range(3):  # pure red, green, blue
        images[:, :, 3 + c, :8] = 0
        images[:, c, 3 + c, :8] = 255
    return images


def numpy_reference(image: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 -> the exact HSV transform in float64 (training.data.color's
    conversions, evaluated per pixel instead of on the lookup grid), rounded."""
    px = image.reshape(3, -1).T / 255.0
    h, s, v = _rgb_to_hsv(px)
    rgb = _hsv_to_rgb(h + gains[0], np.clip(s * gains[1], 0, 1), np.clip(v * gains[2], 0, 1))
    return np.round(rgb * 255.0).T.reshape(image.shape)


def test_matches_the_exact_reference_to_one_level() -> None:
    images, gains = sample_images(), np.asarray(GAINS)
    out = hsv_jitter_batch(torch.from_numpy(images), torch.from_numpy(gains)).numpy()
    for i in range(len(GAINS)):
        diff = np.abs(out[i].astype(np.int64) - numpy_reference(images[i], gains[i]))
        assert diff.max() <= 1  # float32 vs float64 at a .5 rounding boundary
        assert (diff > 0).mean() < 0.02


def test_is_close_to_the_loader_lookup_table() -> None:
    """The loader interpolates a 17^3 table: within a few levels of the exact transform."""
    images, gains = sample_images(), np.asarray(GAINS)
    out = hsv_jitter_batch(torch.from_numpy(images), torch.from_numpy(gains)).numpy()
    for i in range(len(GAINS)):
        lut = apply_hsv(images[i].transpose(1, 2, 0), gains[i]).transpose(2, 0, 1)
        diff = np.abs(out[i].astype(np.int64) - lut)
        assert diff.mean() < 1.0 and diff.max() <= 8


def test_identity_gains_keep_the_image() -> None:
    images = torch.from_numpy(sample_images())
    gains = torch.from_numpy(np.tile(IDENTITY_HSV, (len(images), 1)))
    assert torch.equal(hsv_jitter_batch(images, gains), images)


def test_each_image_gets_its_own_gains() -> None:
    images, gains = torch.from_numpy(sample_images()), torch.tensor(GAINS)
    batch = hsv_jitter_batch(images, gains)
    for i in range(len(GAINS)):
        assert torch.equal(batch[i : i + 1], hsv_jitter_batch(images[i : i + 1], gains[i : i + 1]))


def test_golden_conversions() -> None:
    rgb = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5], [0, 0, 0], [1, 1, 0]])
    h, s, v = rgb_to_hsv(rgb.T.reshape(1, 3, 1, 6).float())
    torch.testing.assert_close(h.flatten(), torch.tensor([0, 1 / 3, 2 / 3, 0, 0, 1 / 6]))
    torch.testing.assert_close(s.flatten(), torch.tensor([1.0, 1, 1, 0, 0, 1]))
    torch.testing.assert_close(v.flatten(), torch.tensor([1, 1, 1, 0.5, 0, 1]))
    back = hsv_to_rgb(h, s, v).reshape(3, 6).T
    torch.testing.assert_close(back, rgb.float())
    # Hue is taken modulo 1: -0.1 and 0.9 are the same colour.
    one = torch.ones(1, 1, 1)
    torch.testing.assert_close(hsv_to_rgb(-0.1 * one, one, one), hsv_to_rgb(0.9 * one, one, one))


def test_keeps_channels_last_and_its_values() -> None:
    images, gains = torch.from_numpy(sample_images()), torch.tensor(GAINS)
    cl = images.contiguous(memory_format=torch.channels_last)
    out = hsv_jitter_batch(cl, gains)
    assert out.is_contiguous(memory_format=torch.channels_last) and out.dtype == torch.uint8
    assert torch.equal(out, hsv_jitter_batch(images, gains))


def test_empty_batch_and_bad_inputs() -> None:
    empty = torch.zeros((0, 3, 8, 8), dtype=torch.uint8)
    assert hsv_jitter_batch(empty, torch.zeros((0, 3))).shape == (0, 3, 8, 8)
    images = torch.zeros((2, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):
        hsv_jitter_batch(images.float(), torch.zeros((2, 3)))
    with pytest.raises(ValueError, match="gains"):
        hsv_jitter_batch(images, torch.zeros((3, 3)))


def test_draw_hsv_ranges_and_the_identity() -> None:
    rng = np.random.default_rng(1)
    draws = np.stack([draw_hsv(rng, 0.015, 0.7, 0.4) for _ in range(500)])
    lo, hi = draws.min(0), draws.max(0)
    assert np.all(lo >= [-0.015, 0.3, 0.6]) and np.all(hi <= [0.015, 1.7, 1.4])
    assert np.all(hi - lo > [0.025, 1.3, 0.7])  # spans its range
    state = rng.bit_generator.state
    assert np.array_equal(draw_hsv(rng, 0, 0, 0), IDENTITY_HSV)
    assert rng.bit_generator.state == state  # nothing drawn


def _samples(root: Path) -> list[Sample]:
    out = []
    for k, (w, h) in enumerate([(150, 100), (60, 90), (120, 120), (200, 80)]):
        write_image(root / f"{k}.png", w, h, seed=k)
        boxes = np.asarray([[2, 3, w // 2, h // 2], [w / 3, h / 4, w, h]], dtype=np.float32)
        out.append(Sample(str(k), root / f"{k}.png", w, h, boxes, np.asarray([k, 1]),
                          np.zeros(2, dtype=bool)))  # fmt: skip
    return out


def test_loader_items_carry_the_host_pipelines_draws(tmp_path: Path) -> None:
    """Deferred items: the host path's boxes and labels, and its image once the loader's
    lookup table applies the gains: the same draws and geometry, bit for bit."""
    samples = _samples(tmp_path)
    aug = AugmentConfig(mosaic_prob=0.5, mixup_prob=0.5)
    host = DetectionDataset(samples, 96, augment=aug, normalize_on_device=True, seed=5)
    deferred = DetectionDataset(
        samples, 96, augment=aug, normalize_on_device=True, seed=5, hsv_on_device=True
    )
    items = [deferred[i] for i in range(len(samples))]
    for i, (image, boxes, labels, gains) in enumerate(items):
        ref_image, ref_boxes, ref_labels = host[i]
        assert torch.equal(boxes, ref_boxes) and torch.equal(labels, ref_labels)
        assert gains.shape == (3,) and gains.dtype == torch.float64
        assert not torch.equal(gains, torch.from_numpy(IDENTITY_HSV))
        by_table = apply_hsv(image.permute(1, 2, 0).numpy(), gains.numpy()).transpose(2, 0, 1)
        np.testing.assert_array_equal(by_table, ref_image.numpy())
        coloured = hsv_jitter_batch(image[None], gains[None])[0].numpy().astype(np.int64)
        assert np.abs(coloured - numpy_reference(image.numpy(), gains.numpy())).max() <= 1
    batch = collate(items)
    assert len(batch) == 4 and batch[3].shape == (len(samples), 3)
    assert len(collate([host[0], host[1]])) == 3


def test_deferred_hsv_needs_uint8_training_items(tmp_path: Path) -> None:
    samples = _samples(tmp_path)
    with pytest.raises(ValueError, match="hsv_on_device"):
        DetectionDataset(samples, 64, augment=AugmentConfig(), hsv_on_device=True)
    with pytest.raises(ValueError, match="hsv_on_device"):
        DetectionDataset(samples, 64, normalize_on_device=True, hsv_on_device=True)
