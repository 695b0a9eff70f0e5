"""`python -m export`: checkpoint or preset -> fp32 ONNX (+ optional INT8), with parity reports."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:  # torch is imported only once the arguments are known to be valid
    from model.fcos import FCOS

EXIT_USAGE = 2  # bad arguments, missing or unreadable inputs
EXIT_PARITY = 3  # the fp32 ONNX file does not reproduce PyTorch


class CliError(Exception):
    """A user-facing error: printed as `error: ...`, exit status EXIT_USAGE."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export", description="Export an FCOS model to ONNX (fp32, optional INT8)."
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="training checkpoint (model.checkpoint)")
    src.add_argument("--preset", help="build a preset instead (with --random-init)")
    p.add_argument("--random-init", action="store_true", help="required with --preset")
    p.add_argument("--output", type=Path, required=True, help="fp32 ONNX file to write")
    p.add_argument("--classes", help="comma-separated class names (--preset only)")
    p.add_argument("--input-size", type=int, help="override the input size in the metadata")
    p.add_argument("--seed", type=int, default=0, help="torch seed for --random-init")
    p.add_argument("--version", default="0.1.0", help="model version written to metadata")
    p.add_argument("--name", help="model name in metadata (default fcos-<preset>)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--dynamo", action="store_true", help="use the torch.export-based exporter")
    p.add_argument("--parity-image", type=Path, help="image for parity (default: synthetic)")
    p.add_argument("--parity-sizes", help="comma-separated input sizes (default: N and ~0.6N)")
    p.add_argument("--no-parity", action="store_true", help="skip the parity reports")
    p.add_argument("--int8", action="store_true", help="also write a static INT8 (QDQ) model")
    p.add_argument("--calibration-data", type=Path, help="directory of calibration images")
    p.add_argument("--calibration-images", type=int, default=64, help="first N (sorted) images")
    p.add_argument(
        "--calibration-method", choices=("minmax", "entropy", "percentile"), default="minmax"
    )
    p.add_argument("--int8-output", type=Path, help="default: <output stem>.int8.onnx")
    p.add_argument(
        "--int8-keep-fp32", default="stem,predictions",
        help="comma-separated conv groups left in fp32 (stem, predictions) or 'none'",
    )  # fmt: skip
    p.add_argument(
        "--no-graph-opt", action="store_true",
        help="export the plain graph (no MaxPool/ReLU swap, no GroupNorm affine fusion)",
    )  # fmt: skip
    return p


def _check_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if a.preset is not None and not a.random_init:
        p.error("--preset needs --random-init (use --checkpoint for trained weights)")
    if a.checkpoint is not None and (a.random_init or a.classes):
        p.error("--random-init and --classes apply to --preset only")
    if a.int8 and a.calibration_data is None:
        p.error("--int8 needs --calibration-data DIR")
    if not a.int8 and (a.calibration_data is not None or a.int8_output is not None):
        p.error("--calibration-data / --int8-output need --int8")
    if a.input_size is not None and a.input_size < 32:
        p.error("--input-size must be >= 32")


def _load_model(a: argparse.Namespace) -> FCOS:
    from model.checkpoint import load_model
    from model.config import get_preset
    from model.fcos import FCOS

    if a.checkpoint is not None:
        if not a.checkpoint.is_file():
            raise CliError(f"checkpoint not found: {a.checkpoint}")
        try:
            model, _ = load_model(a.checkpoint)
        except Exception as exc:  # torch.load / state-dict errors: all mean "bad checkpoint"
            raise CliError(f"cannot load checkpoint {a.checkpoint}: {exc}") from exc
    else:
        import torch

        overrides: dict[str, object] = {}
        if a.classes:
            names = tuple(c.strip() for c in a.classes.split(",") if c.strip())
            if not names or len(set(names)) != len(names):
                raise CliError(f"--classes needs distinct, non-empty names: {a.classes!r}")
            overrides["class_names"] = names
        try:
            cfg = get_preset(a.preset, **overrides)
        except KeyError as exc:
            raise CliError(str(exc.args[0])) from exc
        torch.manual_seed(a.seed)
        model = FCOS(cfg)
    if a.input_size is not None:
        model.cfg = model.cfg.replace(input_size=a.input_size)
    return model.float().eval()


def _parity_sizes(a: argparse.Namespace, input_size: int) -> list[int]:
    if a.parity_sizes:
        try:
            sizes = [int(s) for s in a.parity_sizes.split(",")]
        except ValueError as exc:
            raise CliError(f"--parity-sizes must be integers: {a.parity_sizes!r}") from exc
        if not sizes or min(sizes) < 32:
            raise CliError("--parity-sizes must be integers >= 32")
        return sizes
    return [input_size, max(32, input_size * 5 // 8 // 32 * 32)]


def _parity_image(a: argparse.Namespace) -> Image.Image:
    from export.exporter.parity import synthetic_image
    from export.preprocess import load_image

    if a.parity_image is None:
        print("parity image: none given, using a synthetic deterministic 640x480 test card")
        return synthetic_image()
    if not a.parity_image.is_file():
        raise CliError(f"parity image not found: {a.parity_image}")
    try:
        image = load_image(a.parity_image.read_bytes(), max_pixels=None)
    except Exception as exc:
        raise CliError(f"cannot read parity image {a.parity_image}: {exc}") from exc
    print(f"parity image: {a.parity_image} ({image.width}x{image.height})")
    return image


def run(a: argparse.Namespace) -> int:
    if a.output.is_dir():
        raise CliError(f"--output is a directory: {a.output}")
    if a.int8_output is not None and a.int8_output.resolve() == a.output.resolve():
        raise CliError("--int8-output must differ from --output")
    if a.int8:
        from export.exporter.quantize import (
            calibration_files,  # no torch in export.exporter.quantize
        )

        try:
            calibration_files(a.calibration_data, a.calibration_images)
        except (FileNotFoundError, ValueError) as exc:
            raise CliError(str(exc)) from exc
    image = None if a.no_parity else _parity_image(a)
    model = _load_model(a)
    sizes = _parity_sizes(a, model.cfg.input_size)
    from export.exporter.onnx_export import export_onnx  # torch-heavy imports after argument checks

    t0 = time.perf_counter()
    out = export_onnx(model, a.output, a.version, a.opset, a.name, dynamo=a.dynamo,
                      optimize=not a.no_graph_opt)  # fmt: skip
    size_mb = out.stat().st_size / 1e6
    print(f"wrote {out} ({size_mb:.2f} MB, fp32, {time.perf_counter() - t0:.1f} s)")
    status = 0
    if image is not None:
        from export.exporter.parity import parity_report

        report = parity_report(model, out, image, sizes)
        print(report)
        if not report.ok:
            print(
                "error: the ONNX file does not reproduce PyTorch within tolerance", file=sys.stderr
            )
            status = EXIT_PARITY
    if a.int8:
        from export.exporter.quantize import quantize_int8

        int8_out = a.int8_output or out.with_name(f"{out.stem}.int8.onnx")
        try:
            keep = [] if a.int8_keep_fp32 == "none" else a.int8_keep_fp32.split(",")
            quantize_int8(out, int8_out, a.calibration_data, a.calibration_images,
                          a.calibration_method, keep_fp32=keep)  # fmt: skip
        except (FileNotFoundError, ValueError) as exc:
            raise CliError(str(exc)) from exc
        print(f"wrote {int8_out} ({int8_out.stat().st_size / 1e6:.2f} MB, int8 QDQ)")
        if image is not None:
            from export.exporter.parity import INT8_TOLERANCE, onnx_parity_report

            print("INT8 vs fp32 (informational, loose tolerances; does not affect exit status)")
            print(onnx_parity_report(out, int8_out, image, sizes, INT8_TOLERANCE))
    served = int8_out if a.int8 else out
    # A hint only: the step lives in training/ (it scores a labelled split), which export must
    # not import. Without its record a file is served on ONNX Runtime alone.
    print(f"next: python -m training.runtimes --model {served} --data DATA --split val --write "
          "(validates OpenVINO configurations on labelled data; records them in the file)")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    try:
        return run(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
