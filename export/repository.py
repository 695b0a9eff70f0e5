"""Which model files the service serves, and under which names: the model repository.

Two layouts, side by side in one folder (DETECTOR_MODEL_DIR):

    models/
      default.onnx            -> model "default" (its version: the file's metadata version)
      birds.onnx              -> model "birds"
      cars/                   -> model "cars", Triton's layout: numbered version folders,
        1/model.onnx             the highest number is served unless DETECTOR_MODEL_VERSIONS
        2/model.onnx             pins another ("cars:1")

Without DETECTOR_MODEL_DIR, DETECTOR_MODEL_PATH is a one-model repository named by its file
stem (`models/default.onnx` -> "default"). A name must be a plain token (letters, digits,
`.`, `_`, `-`; at most 64): it appears in URLs and as a Prometheus label value. Hidden files
(`.birds.onnx.tmp`: copy there, then rename into place) and other names are skipped with a log
line. A file and a folder of the same name: the file is served, the folder is reported.

Only the layout is read here (names, paths and each file's identity); loading is the engine's.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("export.repository")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
VERSION = re.compile(r"^[0-9]{1,9}$")  # Triton's version folders: positive integers
SUFFIX = ".onnx"
VERSIONED_FILE = "model.onnx"


@dataclass(frozen=True)
class ModelSource:
    """One servable model: its name, file, version folder (None: a flat file) and identity."""

    name: str
    path: Path
    version: str | None = None
    # (device, inode, size, mtime ns): a different value means the file changed; None when the
    # file cannot be read now (the load reports why)
    identity: tuple[int, int, int, int] | None = None


def file_identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def single_source(path: Path) -> ModelSource:
    """DETECTOR_MODEL_PATH as a one-model repository (the file may be missing: it is reported
    when it fails to load, and the service stays alive and not ready). Its name is the file
    stem made a valid name (`my model.onnx` -> `my-model`)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).stem).strip("-._")[:64] or "default"
    return ModelSource(name, Path(path), None, file_identity(Path(path)))


def scan_folder(folder: Path, pinned: dict[str, str] | None = None) -> dict[str, ModelSource]:
    """The models in `folder`, by name (sorted). OSError when the folder cannot be listed."""
    pinned = pinned or {}
    found: dict[str, ModelSource] = {}
    folders: dict[str, Path] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if entry.is_dir():
            folders[entry.name] = path
        elif entry.name.endswith(SUFFIX) and _named(entry.name[: -len(SUFFIX)], path):
            name = entry.name[: -len(SUFFIX)]
            found[name] = ModelSource(name, path, None, file_identity(path))
    for name, path in folders.items():
        if name in found:
            log.warning("model folder %s ignored: %s%s is served under that name",
                        path, name, SUFFIX)  # fmt: skip
            continue
        source = _versioned(name, path, pinned.get(name))
        if source is not None and _named(name, path):
            found[name] = source
    return dict(sorted(found.items()))


def _named(name: str, path: Path) -> bool:
    if NAME.match(name):
        return True
    log.warning("model file %s skipped: a model name is 1-64 letters, digits, '.', '_' or '-'",
                path)  # fmt: skip
    return False


def _versioned(name: str, folder: Path, pinned: str | None) -> ModelSource | None:
    """Triton's layout: `folder/<version>/model.onnx`, the highest version (or the pinned one);
    None when the folder holds no version (any other folder: pictures, plots...)."""
    try:
        versions = sorted(
            (e.name for e in os.scandir(folder) if e.is_dir() and VERSION.match(e.name)), key=int
        )
    except OSError:
        return None
    versions = [v for v in versions if (folder / v / VERSIONED_FILE).exists()]
    if not versions:
        return None
    if pinned is not None and pinned not in versions:
        log.warning("model %s: pinned version %s not found (have %s); serving %s",
                    name, pinned, ", ".join(versions), versions[-1])  # fmt: skip
        pinned = None
    version = pinned or versions[-1]
    path = folder / version / VERSIONED_FILE
    return ModelSource(name, path, version, file_identity(path))


def parse_pins(text: str) -> dict[str, str]:
    """DETECTOR_MODEL_VERSIONS "cars:1,birds:3" -> {"cars": "1", "birds": "3"}; ValueError."""
    pins: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, version = item.partition(":")
        name, version = name.strip(), version.strip()
        if not sep or not NAME.match(name) or not VERSION.match(version):
            raise ValueError(f"model version pin {item!r}: expected NAME:VERSION, e.g. cars:2")
        pins[name] = version
    return pins
