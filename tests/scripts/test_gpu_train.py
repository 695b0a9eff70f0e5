"""scripts/gpu/train.sh end to end on the CPU: tarball -> time-boxed fit -> fp16 shards in $OUT.

A GPU session has one 10-minute call for this script, so a flag it passes that the trainer no
longer takes would waste it: here it runs on a tiny synthetic VOC tree with every knob it has.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from tests.scripts.returned import load_returned
from tests.training.synthetic import make_voc

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # trains twice on a synthetic tree
def test_gpu_train_script_fits_and_returns_shards(tmp_path: Path) -> None:
    voc = make_voc(tmp_path / "voc", num_images=4, seed=3)
    shutil.copy(voc / "ImageSets/Main/train.txt", voc / "ImageSets/Main/val.txt")
    tarball = tmp_path / "voc.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(voc, arcname=".")
    out, run = tmp_path / "out", tmp_path / "run"
    env = {
        **os.environ, "OUT": str(out), "DATA": str(tmp_path / "data"), "RUN": str(run),
        "PY": sys.executable, "TARBALL": str(tarball), "INIT": "", "PRESET": "tiny",
        "SIZE": "64", "BATCH": "2", "WORKERS": "0", "EPOCHS": "3", "BUDGET_MIN": "30",
        "EVAL_EVERY": "1", "CKPT_EVERY": "2", "NO_AUG": "1", "OMP_NUM_THREADS": "1",
    }  # fmt: skip
    args = ["--classes", "red,green", "--device", "cpu", "--max-val-images", "2"]
    proc = subprocess.run(["bash", "scripts/gpu/train.sh", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    log = (out / "train.log").read_text()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "training exit 0" in log and "retrying plain" not in log, log
    assert "tiny 64px batch 2:" in log and "operations per step" in log, log  # the speed check
    assert "loader 64px batch 2, 0 workers" in log and "img/s" in log, log  # the loader check
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [1, 2, 3]
    (plan,) = [r for r in records if r["type"] == "plan"]
    assert plan["epochs"] == 3 and plan["budget_s"] == 30 * 60
    for name in ("best", "last"):
        load_returned(out, name, tmp_path)
    last = torch.load(run / "last.pt", weights_only=False)
    assert last["epoch"] == 3
