"""`python -m export`: preset and checkpoint sources, INT8 output, errors with exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from export.metadata import ModelMetadata
from export.runtime import make_session

if TYPE_CHECKING:
    from model.fcos import FCOS

REPO = Path(__file__).resolve().parents[2]


def _meta(path: Path) -> ModelMetadata:
    return ModelMetadata.from_strings(
        make_session(path, threads=1).get_modelmeta().custom_metadata_map
    )


@pytest.mark.slow  # a subprocess that imports torch, exports and checks parity
def test_module_smoke_preset_random_init(tmp_path: Path) -> None:
    out = tmp_path / "out" / "tiny.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "export", "--preset", "tiny", "--random-init", "--output",
         str(out), "--classes", "a,b", "--parity-sizes", "64,96"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "synthetic" in proc.stdout and "overall: ok" in proc.stdout
    meta = _meta(out)
    assert (meta.preset, meta.class_names, meta.precision) == ("tiny", ("a", "b"), "fp32")


def test_checkpoint_and_int8(perturbed_tiny: FCOS, calibration_dir: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from export.exporter.cli import main
    from model.checkpoint import save_weights_only

    ckpt = tmp_path / "model.pt"
    save_weights_only(perturbed_tiny, ckpt, half=False)
    out = tmp_path / "m.onnx"
    rc = main(["--checkpoint", str(ckpt), "--output", str(out), "--version", "2.0.0",
               "--parity-image", str(calibration_dir / "img_01.png"), "--parity-sizes", "128",
               "--int8", "--calibration-data", str(calibration_dir),
               "--calibration-images", "2"])  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "img_01.png (120x160)" in printed and "INT8 vs fp32" in printed
    assert _meta(out).version == "2.0.0"
    int8 = tmp_path / "m.int8.onnx"
    assert _meta(int8).precision == "int8" and _meta(int8).class_names == ("cat", "dog", "person")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "missing.pt"], "checkpoint not found"),
        (["--preset", "nope", "--random-init"], "unknown preset"),
        (["--preset", "tiny", "--random-init", "--parity-image", "missing.png"], "not found"),
        (["--preset", "tiny", "--random-init", "--int8", "--calibration-data", "nodir"],
         "calibration directory not found"),
        (["--preset", "tiny", "--random-init", "--parity-sizes", "64,x"], "--parity-sizes"),
    ],
)  # fmt: skip
def test_errors_exit_2_with_a_message(args: list[str], message: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from export.exporter.cli import main

    assert main([*args, "--output", str(tmp_path / "x.onnx")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_bad_checkpoint_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from export.exporter.cli import main

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["--checkpoint", str(bad), "--output", str(tmp_path / "x.onnx")]) == 2
    assert "cannot load checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["--preset", "tiny"],  # no --random-init
        ["--preset", "tiny", "--random-init", "--int8"],  # no calibration data
        ["--checkpoint", "x.pt", "--classes", "a"],
    ],
)
def test_usage_errors(args: list[str], tmp_path: Path) -> None:
    from export.exporter.cli import main

    with pytest.raises(SystemExit) as exc:
        main([*args, "--output", str(tmp_path / "x.onnx")])
    assert exc.value.code == 2


def test_output_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from export.exporter.cli import main

    assert main(["--preset", "tiny", "--random-init", "--output", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
