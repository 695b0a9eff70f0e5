"""Datasets for training: loaders (VOC, COCO), transforms and the torch Dataset."""

from training.data.coco import load_coco
from training.data.dataset import DetectionDataset, collate
from training.data.errors import DatasetError
from training.data.normalize import normalize_batch, normalize_image
from training.data.pipeline import AugmentConfig, train_view
from training.data.report import LoadReport
from training.data.sample import Sample
from training.data.voc import load_voc

__all__ = [
    "AugmentConfig",
    "DatasetError",
    "DetectionDataset",
    "LoadReport",
    "Sample",
    "collate",
    "load_coco",
    "load_voc",
    "normalize_batch",
    "normalize_image",
    "train_view",
]
