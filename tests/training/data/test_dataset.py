"""DetectionDataset: shapes and dtypes, eval output == export preprocess, determinism (also
across DataLoader workers), cache equivalence, on-device normalisation, collate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from export.preprocess import preprocess
from model.config import IMAGENET_MEAN, IMAGENET_STD
from tests.training.data_helpers import VOC_ROOT, assert_valid_boxes, write_image
from training.data import (
    AugmentConfig,
    DatasetError,
    DetectionDataset,
    Sample,
    collate,
    load_voc,
    normalize_batch,
)

SIZES = [(150, 100), (60, 90), (64, 64), (200, 40), (33, 77)]


def make_samples(root: Path) -> list[Sample]:
    samples = []
    for k, (w, h) in enumerate(SIZES):
        path = root / f"{k}.png"
        write_image(path, w, h, seed=k)
        boxes = np.asarray([[2, 3, w // 2, h // 2], [w / 3, h / 4, w, h]], dtype=np.float32)
        samples.append(Sample(str(k), path, w, h, boxes, np.asarray([k, 7]),
                              np.asarray([False, k == 1])))  # fmt: skip
    return samples


@pytest.fixture
def samples(tmp_path: Path) -> list[Sample]:
    return make_samples(tmp_path)


def check_item(item: tuple[torch.Tensor, torch.Tensor, torch.Tensor], size: int,
               dtype: torch.dtype = torch.float32) -> None:  # fmt: skip
    image, boxes, labels = item
    assert image.shape == (3, size, size) and image.dtype == dtype and image.is_contiguous()
    assert_valid_boxes(boxes.numpy(), labels.numpy(), size, size)


@pytest.mark.parametrize("augment", [None, AugmentConfig(mosaic_prob=0.5, mixup_prob=0.5)])
@pytest.mark.parametrize("on_device", [False, True])
def test_shapes_and_dtypes(samples: list[Sample], augment: AugmentConfig | None,
                           on_device: bool) -> None:  # fmt: skip
    ds = DetectionDataset(samples, 64, augment=augment, normalize_on_device=on_device)
    assert len(ds) == len(samples)
    for i in range(len(ds)):
        check_item(ds[i], 64, torch.uint8 if on_device else torch.float32)
    images, boxes, labels = collate([ds[0], ds[1], ds[2]])
    assert images.shape == (3, 3, 64, 64) and len(boxes) == len(labels) == 3


@pytest.mark.parametrize("size", [64, 96, 160])
def test_eval_equals_export_preprocess(samples: list[Sample], size: int) -> None:
    ds = DetectionDataset(samples, size, IMAGENET_MEAN, IMAGENET_STD, augment=None)
    cached = DetectionDataset(samples, size, IMAGENET_MEAN, IMAGENET_STD, cache=True)
    for i, s in enumerate(samples):
        ref, lb = preprocess(Image.open(s.image_path).convert("RGB"), size)
        _, _, ph, pw = ref.shape
        for d in (ds, cached):
            image, boxes, labels = d[i]
            out = image.numpy()
            np.testing.assert_array_equal(out[:, :ph, :pw], ref[0])
            assert not out[:, ph:, :].any() and not out[:, :, pw:].any()
            np.testing.assert_allclose(lb.to_original(boxes.numpy()), s.boxes[~s.difficult],
                                       atol=1e-3)  # fmt: skip
            assert labels.tolist() == s.labels[~s.difficult].tolist()
            assert d.eval_letterbox(i).scale_x == lb.scale_x


@pytest.mark.skipif(not VOC_ROOT.is_dir(), reason=f"VOC data not found at {VOC_ROOT}")
def test_real_voc_eval_equals_export_preprocess() -> None:
    samples = load_voc(VOC_ROOT, "val")[:3]
    ds = DetectionDataset(samples, 512)
    for i, s in enumerate(samples):
        ref, _ = preprocess(Image.open(s.image_path).convert("RGB"), 512)
        np.testing.assert_array_equal(ds[i][0].numpy(), ref[0])


def test_normalize_batch_matches_cpu_path(samples: list[Sample]) -> None:
    aug = AugmentConfig(mosaic_prob=0.5, mixup_prob=0.5)
    f32 = DetectionDataset(samples, 64, augment=aug, seed=3)
    u8 = DetectionDataset(samples, 64, augment=aug, seed=3, normalize_on_device=True)
    images_u8, boxes_u8, _ = collate([u8[i] for i in range(len(u8))])
    images_f32, boxes_f32, _ = collate([f32[i] for i in range(len(f32))])
    norm = normalize_batch(images_u8, IMAGENET_MEAN, IMAGENET_STD)
    assert norm.dtype == torch.float32
    torch.testing.assert_close(norm, images_f32, rtol=0, atol=0)
    for a, b in zip(boxes_u8, boxes_f32, strict=True):
        torch.testing.assert_close(a, b)
    # The uint8 padding is the mean colour: it normalises to ~0.
    pad = torch.tensor([round(m * 255) for m in IMAGENET_MEAN], dtype=torch.uint8)
    pad_norm = normalize_batch(pad.view(1, 3, 1, 1), IMAGENET_MEAN, IMAGENET_STD)
    assert pad_norm.abs().max() < 0.01


def _all(ds: DetectionDataset) -> list[tuple[torch.Tensor, ...]]:
    return [ds[i] for i in range(len(ds))]


def _same(a: list[tuple[torch.Tensor, ...]], b: list[tuple[torch.Tensor, ...]]) -> bool:
    return all(torch.equal(x, y) for ia, ib in zip(a, b, strict=True)
               for x, y in zip(ia, ib, strict=True))  # fmt: skip


def test_determinism_epochs_and_switches(samples: list[Sample]) -> None:
    aug = AugmentConfig(mosaic_prob=1.0, mixup_prob=1.0)
    ds = DetectionDataset(samples, 64, augment=aug, seed=5)
    first = _all(ds)
    assert _same(first, _all(DetectionDataset(samples, 64, augment=aug, seed=5)))
    assert not _same(first, _all(DetectionDataset(samples, 64, augment=aug, seed=6)))
    ds.set_epoch(1)
    assert not _same(first, _all(ds))
    ds.set_epoch(0)
    assert _same(first, _all(ds))
    # Switching strong augmentation off == probability 0 (same random stream otherwise).
    ds.set_mosaic(False)
    ds.set_mixup(False)
    plain = DetectionDataset(samples, 64, augment=AugmentConfig(mosaic_prob=0, mixup_prob=0),
                             seed=5)  # fmt: skip
    assert _same(_all(ds), _all(plain))


def test_cache_gives_the_same_items(samples: list[Sample]) -> None:
    aug = AugmentConfig(mosaic_prob=0.5, mixup_prob=0.3)
    a = DetectionDataset(samples, 64, augment=aug, seed=1)
    b = DetectionDataset(samples, 64, augment=aug, seed=1, cache=True, cache_workers=2)
    assert b._images is not None and max(max(i.shape[:2]) for i in b._images) <= 96
    assert _same(_all(a), _all(b))


def test_dataloader_workers_reproduce_single_process(samples: list[Sample]) -> None:
    aug = AugmentConfig(mosaic_prob=0.5, mixup_prob=0.5)
    ds = DetectionDataset(samples, 64, augment=aug, seed=2, cache=True)
    ds.set_epoch(3)
    expected = _all(ds)
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    got = []
    for images, boxes, labels in loader:
        got += list(zip(images, boxes, labels, strict=True))
    assert _same(expected, got)


def test_difficult_objects(samples: list[Sample]) -> None:
    keep = DetectionDataset(samples, 64, drop_difficult=False)
    drop = DetectionDataset(samples, 64)
    assert len(keep[1][2]) == 2 and drop[1][2].tolist() == [1]


def test_image_size_mismatch_is_an_error(samples: list[Sample]) -> None:
    s = samples[0]
    wrong = Sample(s.image_id, s.image_path, s.width + 1, s.height, s.boxes, s.labels,
                   s.difficult)  # fmt: skip
    with pytest.raises(DatasetError, match=r"0\.png"):
        DetectionDataset([wrong], 64)[0]
