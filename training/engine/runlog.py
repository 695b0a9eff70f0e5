"""Run log: `<run>/log.jsonl`, one JSON object per line.

Records: {"type": "iter", "epoch", "iter", "lr", "img_s", <losses>} every `log_interval`
iterations and {"type": "epoch", "epoch", "lr", "img_s", "time_s", <mean losses>,
"val": {...} | null, "best_map50"} once per epoch; under DDP one {"type": "ddp_check",
"digests": [sha256 per rank], "in_sync"} at the end; {"type": "class_init", "epoch": 0,
"time_s", "summary"} before the first epoch with --init-classes similar. Epochs count from 1.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

LOG_FILENAME = "log.jsonl"


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, tuples lists, nested dicts cleaned."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def brief_metrics(val: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON-friendly scalars of an evaluation result (per-class APs kept)."""
    if val is None:
        return None
    out: dict[str, Any] = {}
    for key, value in val.items():
        if isinstance(value, int | float | str) or value is None:
            out[key] = value
        elif isinstance(value, dict):
            out[key] = {str(k): v for k, v in value.items() if isinstance(v, int | float)}
    return out


class RunLog:
    def __init__(self, run_dir: str | Path, enabled: bool = True) -> None:
        self.path = Path(run_dir) / LOG_FILENAME
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(_clean(record)) + "\n")

    def truncate_after(self, epoch: int) -> None:
        """On resume: drop records of epochs after `epoch` (they will be redone)."""
        if not self.enabled or not self.path.exists():
            return
        keep = [r for r in read_log(self.path) if int(r.get("epoch", 0)) <= epoch]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in keep))


def read_log(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        path = path / LOG_FILENAME
    records = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            records.append(json.loads(line))
    return records
