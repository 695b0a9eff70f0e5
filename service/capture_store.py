"""The capture folder on disk: atomic writes of a capture's files and the disk budget.

Used by the capture writer thread only (not thread-safe). The folder is read once (`scan`:
its size and its captures, oldest first); from then on the size is kept up to date as files
are written and removed, never by rescanning. When a new capture would take the folder over
DETECTOR_CAPTURE_MAX_BYTES, the oldest captures (all files of each) are removed first;
one larger than the whole budget is refused (CaptureTooLargeError). One service process per
capture folder: another writer's files are only seen at the next start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service.capture_layout import LABELS_SUFFIX, SIDECAR_SUFFIX, CaptureFiles

log = logging.getLogger("service.capture")

TEMP_PREFIX, TEMP_SUFFIX = ".", ".tmp"
STALE_TEMP_S = 3600.0  # a temporary file this old at startup is left over from a crash


class CaptureTooLargeError(Exception):
    """One capture is larger than the whole disk budget."""


@dataclass
class _Stored:
    model: str
    paths: list[Path]  # deletion order: the sidecar first, then the labels, then the image
    size: int


def _deletion_order(path: Path) -> int:
    return {SIDECAR_SUFFIX: 0, LABELS_SUFFIX: 1}.get(path.suffix, 2)


class CaptureStore:
    def __init__(self, root: Path, max_bytes: int, wall: Callable[[], float] = time.time) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.wall = wall
        self.used_bytes = 0
        self._index: OrderedDict[tuple[str, str], _Stored] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._index)

    def scan(self) -> None:
        """Read the folder once (created if missing): its captures, oldest first, and their
        size. Temporary files left over from a crash (an hour old) are removed."""
        self.root.mkdir(parents=True, exist_ok=True)
        found: dict[tuple[str, str], tuple[float, _Stored]] = {}
        for model in _subdirs(self.root):
            for day in _subdirs(Path(model.path)):
                folder = f"{model.name}/{day.name}"
                for entry in os.scandir(day.path):
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        st = entry.stat(follow_symlinks=False)
                        if entry.name.startswith(TEMP_PREFIX):
                            if (entry.name.endswith(TEMP_SUFFIX)
                                    and self.wall() - st.st_mtime > STALE_TEMP_S):  # fmt: skip
                                os.unlink(entry.path)
                            continue
                    except OSError:
                        continue  # removed meanwhile, or not ours to read
                    key = (folder, entry.name.split(".", 1)[0])
                    mtime, stored = found.get(key, (0.0, _Stored(model.name, [], 0)))
                    stored.paths.append(Path(entry.path))
                    stored.size += st.st_size
                    found[key] = (max(mtime, st.st_mtime), stored)
        self._index.clear()
        for key, (_, stored) in sorted(found.items(), key=lambda kv: kv[1][0]):
            stored.paths.sort(key=_deletion_order)
            self._index[key] = stored
        self.used_bytes = sum(s.size for s in self._index.values())

    def write(self, files: CaptureFiles, model: str) -> list[str]:
        """Store one capture (replacing the same stem's files), first removing the oldest
        captures to stay within the budget; returns the models of the captures removed.
        OSError: nothing of this capture is left half-written (its old files may be gone)."""
        key = (files.folder, files.stem)
        previous = self._index.get(key)
        replaced = previous.size if previous is not None else 0
        if files.size > self.max_bytes:
            raise CaptureTooLargeError(
                f"a capture of {files.size} bytes is larger than DETECTOR_CAPTURE_MAX_BYTES"
            )
        evicted = []
        while self.used_bytes - replaced + files.size > self.max_bytes:
            oldest = next((k for k in self._index if k != key), None)
            if oldest is None:
                break
            evicted.append(self._evict(oldest))
        folder = self.root / files.folder
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / name for name in files.names]
        if previous is not None:
            self._index.pop(key)
            self.used_bytes -= replaced
        try:
            for path, content in zip(paths, (files.image, files.labels, files.sidecar),
                                     strict=True):  # fmt: skip
                _write_atomic(path, content)
        except OSError:
            for path in paths:  # whatever was renamed into place: no partial capture stays
                _unlink(path)
            raise
        self._index[key] = _Stored(model, sorted(paths, key=_deletion_order), files.size)
        self.used_bytes += files.size
        return evicted

    def _evict(self, key: tuple[str, str]) -> str:
        stored = self._index.pop(key)
        for path in stored.paths:  # the sidecar first: a reader then skips the rest
            _unlink(path)
        self.used_bytes -= stored.size
        with contextlib.suppress(OSError):
            stored.paths[0].parent.rmdir()  # the day's folder, once empty
        return stored.model


def _subdirs(path: Path) -> list[os.DirEntry[str]]:
    try:
        return [e for e in os.scandir(path)
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]  # fmt: skip
    except OSError:
        return []


def _write_atomic(path: Path, content: bytes) -> None:
    """Write under a hidden temporary name, then rename into place."""
    temp = path.with_name(f"{TEMP_PREFIX}{path.name}{TEMP_SUFFIX}")
    try:
        with open(temp, "wb") as f:
            f.write(content)
        os.replace(temp, path)
    except OSError:
        _unlink(temp)
        raise


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove a capture file", extra={"path": str(path),
                                                              "error": str(exc)})  # fmt: skip
