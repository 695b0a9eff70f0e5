"""`python -m training.capture`: the service's capture folder -> a YOLO dataset that the
project's loader and `python -m training.check` read."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.capture import SPLITS, main, split_of
from training.capture_scan import ScanReport, scan_model
from training.check import main as check_main
from training.data.source import load_data

CLASSES = ("cat", "dog")


def png(seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def write_capture(root: Path, data: bytes, model: str = "default", day: str = "2026-12-01",
                  reason: str = "sample", labels: str = "0 0.5 0.5 0.25 0.5\n",
                  classes: tuple[str, ...] = CLASSES, sidecar: bool = True, ext: str = "png",
                  size: tuple[int, int] = (64, 48)) -> str:  # fmt: skip
    """One capture as the service writes it; returns the image's sha256."""
    sha = hashlib.sha256(data).hexdigest()
    folder = root / model / day
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{sha[:16]}.{ext}").write_bytes(data)
    (folder / f"{sha[:16]}.txt").write_text(labels)
    if sidecar:
        (folder / f"{sha[:16]}.json").write_text(json.dumps({
            "schema": 1, "model": {"name": model, "version": "1.0"}, "route": "/detect",
            "time": f"{day}T10:00:00Z", "reason": reason,
            "image": {"width": size[0], "height": size[1], "format": ext, "sha256": sha,
                      "bytes": len(data)},
            "thresholds": {"score": 0.3}, "classes": list(classes), "detections": [],
        }))  # fmt: skip
    return sha


def test_split_is_stable_and_follows_the_percentages() -> None:
    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(2000)]
    splits = [split_of(s, 10, 20) for s in shas]
    assert splits == [split_of(s, 10, 20) for s in shas]
    share = {k: splits.count(k) / len(splits) for k in SPLITS}
    assert abs(share["test"] - 0.2) < 0.03 and abs(share["val"] - 0.1) < 0.03
    assert split_of("0" * 64, 10, 10) == "test" and split_of("f" * 64, 0, 0) == "train"


def test_scan_skips_temp_incomplete_corrupt_and_duplicate_captures(tmp_path: Path) -> None:
    a = write_capture(tmp_path, png(0), day="2026-12-01")
    write_capture(tmp_path, png(0), day="2026-12-02")  # the same bytes again: a duplicate
    write_capture(tmp_path, png(1), sidecar=False)  # still being written
    (tmp_path / "default" / "2026-12-01" / ".abc.png.tmp").write_bytes(b"partial")
    bad = write_capture(tmp_path, png(2), reason="unsure")
    (tmp_path / "default" / "2026-12-01" / f"{bad[:16]}.png").write_bytes(png(3))  # corrupt
    c = write_capture(tmp_path, png(4), reason="empty", labels="")
    report = ScanReport()
    captures = scan_model(tmp_path / "default", report=report)
    assert sorted(x.sha256 for x in captures) == sorted([a, c])
    assert report.duplicates == 1 and report.incomplete == 1 and len(report.invalid) == 1
    assert [x.reason for x in scan_model(tmp_path / "default", ("empty",))] == ["empty"]


def test_dataset_is_read_by_the_loader_and_the_check(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    caps, out = tmp_path / "captures", tmp_path / "dataset"
    shas = [write_capture(caps, png(i), labels=f"{i % 2} 0.5 0.5 0.25 0.5\n") for i in range(12)]
    write_capture(caps, png(0), day="2026-12-03")  # a duplicate
    write_capture(caps, png(99), model="other")
    assert main([str(caps), "--output", str(out)]) == 2  # two models: --model is needed
    assert "--model" in capsys.readouterr().err
    assert main([str(caps), "--output", str(out), "--model", "default",
                 "--val", "25", "--test", "25"]) == 0  # fmt: skip
    assert "correct them" in capsys.readouterr().out
    total = 0
    for split in SPLITS:
        samples, names = load_data(out / "data.yaml", split)
        assert names == CLASSES
        total += len(samples)
        for s in samples:
            sha = next(x for x in shas if x.startswith(Path(s.image_path).stem))
            assert split_of(sha, 25, 25) == split
            assert s.labels.tolist() == [shas.index(sha) % 2]
            assert s.boxes.tolist() == [[24.0, 12.0, 40.0, 36.0]]  # 0.5 0.5 0.25 0.5 of 64x48
    assert total == 12
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["images"]) == 12 and manifest["names"] == list(CLASSES)
    assert (out / "classes.txt").read_text() == "cat\ndog\n"
    assert "pre-labels" in (out / "README.md").read_text()
    assert check_main(["--data", str(out / "data.yaml"), "--output",
                       str(tmp_path / "check.png")]) == 0  # fmt: skip
    assert "images" in capsys.readouterr().out


def test_a_second_run_adds_new_images_and_keeps_corrected_labels(tmp_path: Path) -> None:
    caps, out = tmp_path / "captures", tmp_path / "dataset"
    sha = write_capture(caps, png(0))
    assert main([str(caps), "--output", str(out), "--val", "0", "--test", "0"]) == 0
    label = out / "labels" / "train" / f"{sha[:16]}.txt"
    label.write_text("1 0.2 0.2 0.1 0.1\n")  # corrected by hand
    new = write_capture(caps, png(1), day="2026-12-05")
    assert main([str(caps / "default"), "--output", str(out), "--val", "0", "--test", "0"]) == 0
    assert label.read_text() == "1 0.2 0.2 0.1 0.1\n"
    assert (out / "labels" / "train" / f"{new[:16]}.txt").read_text() == "0 0.5 0.5 0.25 0.5\n"
    assert len(json.loads((out / "manifest.json").read_text())["images"]) == 2


def test_reason_filter_and_other_class_lists(tmp_path: Path) -> None:
    caps, out = tmp_path / "captures", tmp_path / "dataset"
    write_capture(caps, png(0), reason="unsure")
    write_capture(caps, png(1), reason="sample")
    write_capture(caps, png(2), reason="unsure", classes=("a", "b"), day="2026-11-30")
    assert main([str(caps), "--output", str(out), "--reason", "unsure",
                 "--val", "0", "--test", "0"]) == 0  # fmt: skip
    samples, names = load_data(out / "data.yaml", "train")
    assert names == CLASSES and len(samples) == 1  # the other class list is left out


def test_rotated_and_unreadable_formats_are_stored_upright_as_png(tmp_path: Path) -> None:
    caps, out = tmp_path / "captures", tmp_path / "dataset"
    stored = Image.new("RGB", (64, 48), (200, 10, 10))
    stored.paste((10, 200, 10), (0, 0, 16, 48))  # a green band on the stored image's left
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: 48 x 64, the band on top
    buf = io.BytesIO()
    stored.save(buf, "JPEG", exif=exif, quality=95)
    rotated = write_capture(caps, buf.getvalue(), ext="jpg", size=(48, 64))
    gif = io.BytesIO()
    Image.new("RGB", (64, 48), (0, 0, 255)).save(gif, "GIF")
    animated = write_capture(caps, gif.getvalue(), ext="gif")
    wrong = write_capture(caps, png(5), size=(10, 10))  # not the sidecar's size: skipped
    write_capture(caps, b"not an image", ext="bin")
    assert main([str(caps), "--output", str(out), "--val", "0", "--test", "0"]) == 0
    with Image.open(out / "images" / "train" / f"{rotated[:16]}.png") as img:
        assert img.size == (48, 64) and img.getpixel((24, 4))[1] > 150  # green on top
    assert (out / "images" / "train" / f"{animated[:16]}.png").is_file()
    assert not list((out / "images" / "train").glob(f"{wrong[:16]}.*"))
    manifest = json.loads((out / "manifest.json").read_text())["images"]
    assert sorted(e["converted"] for e in manifest) == [True, True]
    samples, _ = load_data(out / "data.yaml", "train")
    assert len(samples) == 2
