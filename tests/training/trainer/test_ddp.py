"""DDP: `torchrun --nproc_per_node 2 -m training` on CPU (gloo) keeps both ranks identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training.synthetic import make_voc, tiny_args

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_two_process_gloo_ranks_end_identical(tmp_path: Path) -> None:
    make_voc(tmp_path / "data" / "VOC", num_images=8, seed=7)
    out = tmp_path / "run"
    args = tiny_args(tmp_path / "data", out, "--epochs", "2", "--ema-decay", "0.9")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "training", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    checks = [r for r in records if r["type"] == "ddp_check"]
    assert len(checks) == 1 and len(checks[0]["digests"]) == 2
    assert checks[0]["in_sync"] and checks[0]["digests"][0] == checks[0]["digests"][1]
    # 8 images over 2 ranks, 2 per step: 2 steps per epoch, each of 4 images in total.
    iters = [r for r in records if r["type"] == "iter"]
    assert [r["iter"] for r in iters] == [1, 2, 1, 2]
    ckpt = torch.load(out / "final.pt", weights_only=False)
    assert len(ckpt["rng"]) == 2  # every rank's RNG state, for an exact resume
    assert ckpt["scheduler"]["iteration"] == 4
