"""training.plots: per-run plots and the --compare overlay of several runs' val mAP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from training import plots


def _write_run(run: Path, maps: list[float | None]) -> Path:
    """A log.jsonl with one epoch record per entry; None = an epoch without validation."""
    run.mkdir(parents=True)
    lines = []
    for epoch, m in enumerate(maps, start=1):
        rec: dict[str, object] = {"type": "epoch", "epoch": epoch, "total": 1.0, "lr": 1e-3}
        if m is not None:
            rec["val"] = {"map50": m, "map50_95": m / 2}
        lines.append(json.dumps(rec))
    (run / "log.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_compare_overlays_runs(tmp_path: Path) -> None:
    a = _write_run(tmp_path / "a", [None, 0.1, None, 0.2])
    b = _write_run(tmp_path / "b", [0.05, 0.15, 0.25, 0.3])
    assert [r["epoch"] for r in plots._val_records(plots.read_log(a))] == [2, 4]
    out = tmp_path / "figs" / "cmp.png"
    assert plots.main(["--compare", str(a), str(b), "--output", str(out), "--labels", "x,y"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 1000
    with pytest.raises(ValueError, match="labels"):
        plots.compare_runs([a, b], out, ["only one"])


def test_compare_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _write_run(tmp_path / "a", [0.1])
    no_val = _write_run(tmp_path / "no_val", [None, None])
    out = tmp_path / "cmp.png"
    assert plots.main(["--compare", str(a), str(no_val), "--output", str(out)]) == 2
    assert "no validation records" in capsys.readouterr().err and not out.exists()
    assert plots.main(["--compare", str(a), str(tmp_path / "missing"), "--output", str(out)]) == 2
    assert "no log.jsonl" in capsys.readouterr().err
    for argv in (["--compare", str(a)], [], [str(a), "--compare", str(a), "--output", str(out)]):
        with pytest.raises(SystemExit):
            plots.main(argv)


def test_losses_plot_draws_every_loss_term_per_iteration_and_per_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    losses = {"total": 1.0, "cls": 0.4, "box": 0.3, "ctr": 0.3}
    records = [
        {"type": "iter", "epoch": 1, "iter": i, "iters_per_epoch": 2, "lr": 1e-3, **losses}
        for i in (1, 2)
    ] + [{"type": "epoch", "epoch": 1, "lr": 1e-3, **losses}]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    labels: dict[str, list[str]] = {}
    save = plots._save

    def spy(fig: Any, path: Path) -> Path:
        labels[path.name] = [line.get_label() for line in fig.axes[0].get_lines()]
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", spy)
    plots.make_plots(run)
    keys = ["total", "cls", "box", "ctr"]
    kinds = ("(iter)", "(epoch mean)")
    assert labels["losses.png"] == [f"{k} {kind}" for k in keys for kind in kinds]
