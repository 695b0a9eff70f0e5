"""A model repository's files as `python -m training.promote` changes them: atomic swaps, the
kept previous versions and the promotion log.

    MODELS/NAME.onnx                                  the served file (flat layout)
    MODELS/.history/NAME/<UTC time>-<version>.onnx    previous versions, newest last by name
    MODELS/.history/NAME/rolled-back/<UTC time>-<version>.onnx   files a rollback replaced
    MODELS/NAME/<N>/model.onnx                        Triton's layout: a promotion adds
                                                      version N + 1 (the older ones stay)
    MODELS/.history/NAME/rolled-back/<UTC time>-v<N>/ a version folder a rollback removed
    MODELS/promotions.jsonl                           one JSON object a line per decision

The service's scan (export/repository.py) skips hidden names and serves only `*.onnx` files and
numbered version folders, so none of these but NAME.onnx is ever served. A swap writes the new
bytes beside the served file under a hidden name and renames it over NAME.onnx: the service
sees the old file or the new one, never a missing or half-written one, and a rename gives the
file a new identity (inode), which its rescan (SIGHUP, POST /admin/reload) loads. A new version
folder is written under a hidden name and renamed into place the same way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from export.repository import VERSION, VERSIONED_FILE

HISTORY = ".history"
ROLLED_BACK = "rolled-back"
LOG = "promotions.jsonl"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def user() -> str:
    """Who runs the command (getpass; the uid where the account has no name)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def history_dir(model_dir: Path, name: str) -> Path:
    return model_dir / HISTORY / name


def _stamp(when: dt.datetime, version: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", version).strip("-.")[:40] or "unversioned"
    return f"{when.strftime('%Y%m%dT%H%M%S.%fZ')}-{safe}.onnx"


def _keep(path: Path, folder: Path, when: dt.datetime, version: str) -> Path:
    """Keep `path`'s current bytes as folder/<stamp>.onnx (a hard link where possible)."""
    folder.mkdir(parents=True, exist_ok=True)
    kept = folder / _stamp(when, version)
    try:
        os.link(path, kept)
    except OSError:  # another filesystem or no hard links: a copy
        tmp = folder / f".{kept.name}.tmp"
        shutil.copy2(path, tmp)
        os.replace(tmp, kept)
    return kept


def _replace_with_copy(src: Path, target: Path) -> None:
    """target's bytes become src's: copied beside target under a hidden name, then renamed."""
    tmp = target.with_name(f".{target.name}.promote-tmp")
    shutil.copyfile(src, tmp)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)


def install(candidate: Path, target: Path, name: str, version: str,
            when: dt.datetime) -> Path:  # fmt: skip
    """Keep target (version `version`) in the history, then swap candidate's bytes in; returns
    the kept file."""
    kept = _keep(target, history_dir(target.parent, name), when, version)
    _replace_with_copy(candidate, target)
    return kept


def previous_versions(model_dir: Path, name: str) -> list[Path]:
    """The kept previous versions of `name`, oldest first."""
    folder = history_dir(model_dir, name)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".onnx"
                  and not p.name.startswith("."))  # fmt: skip


def restore(target: Path, name: str, version: str, when: dt.datetime) -> tuple[Path, Path]:
    """Rollback: the newest kept version renamed over target; target's bytes (version
    `version`) kept under rolled-back/. Returns (the restored history file, the kept one).
    FileNotFoundError when no version is kept."""
    versions = previous_versions(target.parent, name)
    if not versions:
        raise FileNotFoundError(f"no previous version of {name} in "
                                f"{history_dir(target.parent, name)}")  # fmt: skip
    newest = versions[-1]
    kept = _keep(target, history_dir(target.parent, name) / ROLLED_BACK, when, version)
    os.replace(newest, target)
    return newest, kept


def versions(folder: Path) -> list[int]:
    """The numbered version folders holding a model.onnx (Triton's layout), ascending."""
    return sorted(
        int(p.name) for p in folder.iterdir()
        if p.is_dir() and VERSION.match(p.name) and (p / VERSIONED_FILE).is_file()
    )  # fmt: skip


def add_version(candidate: Path, folder: Path) -> Path:
    """Triton's layout: candidate's bytes as folder/<highest + 1>/model.onnx (written in a
    hidden folder, renamed into place); returns the new version folder."""
    new = folder / str(max(versions(folder), default=0) + 1)
    tmp = folder / f".{new.name}.promote-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    _replace_with_copy(candidate, tmp / VERSIONED_FILE)
    os.rename(tmp, new)  # fails rather than merge if the folder appeared meanwhile
    return new


def remove_version(folder: Path, name: str, when: dt.datetime) -> tuple[Path, Path]:
    """Triton's rollback: the highest version folder moved to the history's rolled-back/, so
    the one below serves; (the version now highest, where the removed one went).
    FileNotFoundError when fewer than two versions are there."""
    have = versions(folder)
    if len(have) < 2:
        raise FileNotFoundError(f"no previous version of {name} in {folder} (versions: "
                                f"{', '.join(map(str, have)) or 'none'})")  # fmt: skip
    target = history_dir(folder.parent, name) / ROLLED_BACK
    target.mkdir(parents=True, exist_ok=True)
    kept = target / f"{when.strftime('%Y%m%dT%H%M%S.%fZ')}-v{have[-1]}"
    os.rename(folder / str(have[-1]), kept)
    return folder / str(have[-2]), kept


def append_log(model_dir: Path, record: dict[str, Any]) -> Path:
    """One JSON line appended to MODELS/promotions.jsonl (flushed and fsynced)."""
    path = model_dir / LOG
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=False, allow_nan=False, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return path


def read_log(model_dir: Path) -> list[dict[str, Any]]:
    path = model_dir / LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@contextlib.contextmanager
def locked(model_dir: Path) -> Iterator[None]:
    """One promotion or rollback at a time per model folder: an flock on the folder itself (no
    lock file). BlockingIOError when another one holds it; FileNotFoundError: no such folder."""
    fd = os.open(model_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)  # releases the lock
