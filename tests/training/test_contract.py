"""The fine-tuning contract (configs/finetune.md), as written: fine-tune from a trained
model on a YOLO dataset under a time budget, export, evaluate the test split. The classes
come from the data alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from export.exporter.cli import main as export_main
from tests.training.synthetic import save_random_weights
from tests.training.yolo_helpers import roboflow_dataset
from training.cli import main as train_main
from training.evaluation import evaluate


@pytest.mark.slow
def test_the_three_commands(tmp_path: Path, single_thread: None) -> None:
    data = roboflow_dataset(tmp_path / "rf", names_yaml="{0: cat, 1: kite}")
    trained = tmp_path / "default.pt"  # stands in for models/default.pt: other classes
    save_random_weights(trained, seed=5, classes=("dog", "cat", "person"), half=True)
    run = tmp_path / "runs" / "mine"
    assert train_main(["--data", str(data), "--init-weights", str(trained),
                       "--time-budget-min", "0.1", "--output-dir", str(run)]) == 0  # fmt: skip
    plan = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert any(r["type"] == "plan" for r in plan)
    assert export_main(["--checkpoint", str(run / "weights_fp16.pt"),
                        "--output", str(run / "model.onnx")]) == 0  # fmt: skip
    out = tmp_path / "test.json"
    assert evaluate.main(["--model", str(run / "model.onnx"), "--data", str(data),
                          "--split", "test", "--json", str(out)]) == 0  # fmt: skip
    metrics = json.loads(out.read_text())
    assert set(metrics["per_class"]) == {"cat", "kite"} and metrics["num_images"] == 1
