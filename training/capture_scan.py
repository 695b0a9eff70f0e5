"""Reading the service's capture folder (DETECTOR_CAPTURE_DIR): which captures are complete.

    CAPTURE_DIR/<model name>/<YYYY-MM-DD>/<sha256[:16]>.<jpg|png|webp|...>  the image's bytes
    CAPTURE_DIR/<model name>/<YYYY-MM-DD>/<sha256[:16]>.txt   the model's boxes, YOLO lines
    CAPTURE_DIR/<model name>/<YYYY-MM-DD>/<sha256[:16]>.json  the sidecar (schema 1): model name
        and version, route, time, reason (unsure|sample|empty), image (width, height, format,
        sha256, bytes), thresholds, classes (in class-id order) and detections

A capture is complete when its sidecar is there (the service writes it last); files whose name
starts with "." are still being written. An image is kept once: the first capture (oldest day)
of each full sha256. Captures whose image bytes do not hash to the sidecar's sha256, or whose
sidecar is unreadable, are skipped and counted.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.capture_layout import REASONS, SCHEMA  # the writer's side of the format

DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Capture:
    """One complete capture: its image, pre-label and sidecar files and what the sidecar says."""

    image: Path
    labels: Path | None  # the model's boxes as YOLO lines (None: no .txt, read as no boxes)
    sidecar: Path
    sha256: str
    reason: str
    model: str
    version: str
    time: str
    classes: tuple[str, ...]
    size: tuple[int, int]  # (width, height) the service decoded, EXIF orientation applied


@dataclass
class ScanReport:
    """What a scan found besides the captures it returns."""

    incomplete: int = 0  # an image without its sidecar (or a sidecar without its image)
    duplicates: int = 0  # an image whose sha256 was captured before
    invalid: list[str] = field(default_factory=list)  # unreadable or inconsistent captures
    other_reasons: Counter[str] = field(default_factory=Counter)  # filtered out by --reason


def model_folders(root: Path) -> dict[str, Path]:
    """The per-model folders under the capture root (or `root` itself when it is one)."""
    if _is_model_folder(root):
        return {root.name: root}
    return {p.name: p for p in sorted(root.iterdir())
            if p.is_dir() and not p.name.startswith(".") and _is_model_folder(p)}  # fmt: skip


def _is_model_folder(path: Path) -> bool:
    return any(p.is_dir() and DAY.match(p.name) for p in path.iterdir())


def _read_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar's fields (ValueError when it is not a schema-1 capture sidecar)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable sidecar: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"not a schema-{SCHEMA} capture sidecar")
    image, model = data.get("image"), data.get("model")
    sha = image.get("sha256") if isinstance(image, dict) else None
    if not isinstance(sha, str) or not SHA256.match(sha):
        raise ValueError("no image.sha256")
    if not all(isinstance(image.get(k), int) and image[k] > 0 for k in ("width", "height")):
        raise ValueError("no image width and height")
    classes = data.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ValueError("no class list")
    if not isinstance(model, dict):
        raise ValueError("no model")
    return data


def _image_of(sidecar: Path) -> Path | None:
    """The capture's image: the sidecar's stem with an image suffix (not .txt/.json)."""
    for p in sorted(sidecar.parent.glob(sidecar.stem + ".*")):
        if p.suffix.lower() not in (".json", ".txt") and not p.name.startswith("."):
            return p
    return None


def scan_model(folder: Path, reasons: tuple[str, ...] = REASONS,
               report: ScanReport | None = None) -> list[Capture]:  # fmt: skip
    """The complete captures of one model folder, oldest day first, one per image sha256."""
    report = report if report is not None else ScanReport()
    seen: set[str] = set()
    out: list[Capture] = []
    for day in sorted(p for p in folder.iterdir() if p.is_dir() and DAY.match(p.name)):
        try:
            names = sorted(p.name for p in day.iterdir() if not p.name.startswith("."))
        except OSError:  # removed meanwhile (the service's disk budget evicts old days)
            continue
        stems_with_sidecar = {n[: -len(".json")] for n in names if n.endswith(".json")}
        report.incomplete += len({Path(n).stem for n in names} - stems_with_sidecar)
        for stem in sorted(stems_with_sidecar):
            sidecar = day / f"{stem}.json"
            capture = _capture(sidecar, report)
            if capture is None:
                continue
            if capture.reason not in reasons:
                report.other_reasons[capture.reason] += 1
            elif capture.sha256 in seen:
                report.duplicates += 1
            else:
                seen.add(capture.sha256)
                out.append(capture)
    return out


def _capture(sidecar: Path, report: ScanReport) -> Capture | None:
    image = _image_of(sidecar)
    if image is None:
        report.incomplete += 1
        return None
    try:
        data = _read_sidecar(sidecar)
        sha = data["image"]["sha256"]
        if hashlib.sha256(image.read_bytes()).hexdigest() != sha:
            raise ValueError("the image's bytes do not match its sha256")
    except (OSError, ValueError) as exc:
        report.invalid.append(f"{sidecar}: {exc}")
        return None
    labels = sidecar.with_suffix(".txt")
    model, info = data["model"], data["image"]
    return Capture(image, labels if labels.is_file() else None, sidecar, sha,
                   str(data.get("reason", "")), str(model.get("name", sidecar.parents[1].name)),
                   str(model.get("version", "")), str(data.get("time", "")),
                   tuple(data["classes"]),
                   (int(info.get("width", 0)), int(info.get("height", 0))))  # fmt: skip
