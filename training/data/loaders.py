"""The trainer's data loaders: from a TrainConfig to samples, the training batches and
on-device normalisation.

Fast path: the dataset yields uint8 images (4x fewer bytes through pinned memory and the
host-to-device copy) and the batch is normalised on the device. Workers are persistent and one
iterator serves the whole run (training/data/stream.py); the epoch and the Mosaic/MixUp switches
travel *inside the sampled keys*, so every item stays a pure function of (seed, epoch, index).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from model.config import get_preset
from training.config import TrainConfig
from training.data import (
    AugmentConfig,
    DetectionDataset,
    LoadReport,
    Sample,
    collate,
    load_coco,
    load_voc,
)
from training.data.source import has_split, load_data
from training.data.stream import EpochBatches, EpochStream, Key
from training.engine.distributed import DistInfo


class EpochDataset(Dataset):
    """DetectionDataset addressed by EpochBatches keys (sets epoch/switches, then reads)."""

    def __init__(self, dataset: DetectionDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index, epoch, mosaic, mixup = key
        self.dataset.set_epoch(epoch)
        self.dataset.set_mosaic(mosaic)
        self.dataset.set_mixup(mixup)
        return self.dataset[index]


@dataclass
class DataBundle:
    class_names: tuple[str, ...]
    train_samples: list[Sample]
    val_samples: list[Sample]
    stream: EpochStream  # .epoch(n) -> that epoch's batches; len() = batches per epoch
    normalize: Callable[[torch.Tensor], torch.Tensor]
    hsv_on_device: bool = False  # batches carry (B, 3) HSV gains for the device to apply


def _voc_parts(data_root: str, spec: str) -> list[tuple[Path, str]]:
    """'VOC2007/trainval+VOC2012/trainval' -> [(root/VOC2007, 'trainval'), ...]."""
    parts = []
    for entry in (e.strip() for e in spec.split("+")):
        if not entry:
            continue
        sub, _, split = entry.rpartition("/")
        parts.append((Path(data_root) / sub if sub else Path(data_root), split))
    return parts


def load_samples(cfg: TrainConfig, train: bool) -> tuple[list[Sample], tuple[str, ...]]:
    names = cfg.class_names()
    if cfg.data:
        return _load_data(cfg, "train" if train else "val")
    if cfg.dataset_format == "coco":
        json_path = cfg.coco_train_json if train else cfg.coco_val_json
        image_dir = cfg.coco_train_images if train else cfg.coco_val_images
        if not json_path:
            return [], names or ()
        return load_coco(
            json_path, image_dir, names, skip_invalid=cfg.skip_invalid, drop_empty=train
        )
    assert names is not None
    samples: list[Sample] = []
    for root, split in _voc_parts(cfg.data_root, cfg.train_split if train else cfg.val_split):
        samples += load_voc(root, split, names, skip_invalid=cfg.skip_invalid, drop_empty=train)
    return samples, names


def _load_data(cfg: TrainConfig, split: str) -> tuple[list[Sample], tuple[str, ...]]:
    """--data: one split; the classes are the dataset's own unless --classes picks some.
    Training keeps background images (no objects): they teach the model what is not an object."""
    if split != "train" and not has_split(cfg.data, split):
        return [], ()
    report = LoadReport()
    samples, names = load_data(cfg.data, split, cfg.classes or None,
                               skip_invalid=cfg.skip_invalid, report=report)  # fmt: skip
    print(f"data {cfg.data} [{split}]: {report.images} images ({report.empty_images} background), "
          f"{report.objects} objects; dropped {report.skipped_objects} invalid boxes, "
          f"{report.skipped_images} unreadable images, {report.dropped_objects} objects of "
          f"other classes", flush=True)  # fmt: skip
    return samples, names


def augment_config(cfg: TrainConfig) -> AugmentConfig | None:
    if not cfg.augment:
        return None
    return AugmentConfig(
        scale_min=cfg.scale_min, scale_max=cfg.scale_max, aspect_jitter=cfg.aspect_jitter,
        flip_prob=cfg.flip_prob, hsv_h=cfg.hsv_h, hsv_s=cfg.hsv_s, hsv_v=cfg.hsv_v,
        mosaic_prob=cfg.mosaic_prob, mixup_prob=cfg.mixup_prob, mixup_beta=cfg.mixup_beta,
        min_box_size=cfg.min_box_size, crop_scale=cfg.crop_scale,
    )  # fmt: skip


def hsv_place_is_device(place: str, device: torch.device) -> bool:
    """--hsv-on `place` (auto | loader | device) on `device`: whether the device applies it."""
    return place == "device" or (place == "auto" and device.type == "cuda")


def hsv_on_device(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether the loader only draws the HSV jitter and the device applies it (--hsv-on)."""
    if not cfg.augment or max(cfg.hsv_h, cfg.hsv_s, cfg.hsv_v) <= 0:
        return False
    return hsv_place_is_device(cfg.hsv_on, device)


def device_normalizer(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 (B,3,H,W) -> float32 (x - 255 mean) / (255 std): training.data.normalize_batch's
    arithmetic, with the constants made once on the device (no per-step host copies)."""
    mean_t = (torch.tensor(mean, dtype=torch.float32) * 255.0).view(1, 3, 1, 1).to(device)
    scale_t = (torch.tensor(std, dtype=torch.float32) * 255.0).view(1, 3, 1, 1).to(device)

    def normalize(images: torch.Tensor) -> torch.Tensor:
        return (images.to(torch.float32) - mean_t) / scale_t

    return normalize


def build_data(
    cfg: TrainConfig, info: DistInfo, augment_on: Callable[[int], bool]
) -> DataBundle:
    """`augment_on(epoch)`: whether that epoch's items get Mosaic/MixUp (asked lazily)."""
    train_samples, names = load_samples(cfg, train=True)
    if not train_samples:
        raise ValueError(f"no training images (check --data {cfg.data or cfg.data_root})")
    val_samples: list[Sample] = []
    wants_val = cfg.data or (cfg.dataset_format == "voc" and cfg.val_split) or cfg.coco_val_json
    if wants_val and cfg.eval_interval > 0:  # --eval-interval 0: no validation
        val_samples, _ = load_samples(cfg, train=False)
        if cfg.max_val_images > 0:
            val_samples = val_samples[: cfg.max_val_images]
    preset = get_preset(cfg.preset)
    size = cfg.resolved_input_size()
    mean, std = tuple(preset.mean), tuple(preset.std)
    hsv_device = hsv_on_device(cfg, info.device)
    dataset = DetectionDataset(
        train_samples, size, mean, std, augment=augment_config(cfg), cache=cfg.cache_images,
        seed=cfg.seed, normalize_on_device=True, hsv_on_device=hsv_device,
    )  # fmt: skip
    inner = DistributedSampler(
        dataset,
        num_replicas=info.world_size,
        rank=info.rank,
        shuffle=True,
        seed=cfg.seed,
        drop_last=False,
    )
    batches = EpochBatches(inner, cfg.batch_size, augment_on)
    cuda = info.device.type == "cuda"
    workers = max(0, cfg.workers)
    loader = DataLoader(
        EpochDataset(dataset), batch_sampler=batches, num_workers=workers, collate_fn=collate,
        pin_memory=cuda, persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )  # fmt: skip
    return DataBundle(
        tuple(names),
        train_samples,
        val_samples,
        EpochStream(loader, batches),
        device_normalizer(mean, std, info.device),
        hsv_device,
    )
