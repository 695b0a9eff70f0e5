"""`fcos SUBCOMMAND [ARGS...]`: one command for the whole product, as Ultralytics' `yolo` or
`tritonserver` are. Each subcommand runs a module exactly as `python -m MODULE ARGS...` would
(those forms keep working), so its flags and `--help` are the module's own. The serving install
has no torch: `serve`, `predict` and `bench` work there; `train`, `export`, `evaluate`,
`compare`, `runtimes`, `check`, `capture` and `promote` need the `train` / `export` extras.
"""

from __future__ import annotations

import argparse
import importlib.util
import runpy
import sys
from collections.abc import Sequence

# subcommand -> (module run as __main__, what it does)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("service", "serve the detector API (POST /detect, /v2, /metrics, the demo page)"),
    "train": ("training", "train or fine-tune a model on a dataset (--data)"),
    "export": ("export", "export a checkpoint to ONNX (parity check, INT8)"),
    "evaluate": ("training.evaluate", "mAP of a model on a dataset split, with intervals"),
    "compare": ("training.compare", "paired comparison of models on one split"),
    "runtimes": ("training.runtimes", "validate runtime configurations; record them in the file"),
    "predict": ("export.predict", "detect objects in image files or folders (no server)"),
    "check": ("training.check", "check a dataset before training"),
    "capture": ("training.capture", "the service's captured images -> a YOLO dataset to label"),
    "promote": ("training.promote", "replace a served model behind a gate; --rollback"),
    "bench": ("bench", "the serving benchmark"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fcos",
        description="FCOS object detection: train, export, evaluate and serve.",
        epilog="`fcos COMMAND --help` shows a command's own flags. Each command is also "
        "`python -m MODULE`:\n" + "\n".join(
            f"  fcos {name:<9} = python -m {module}" for name, (module, _) in COMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, text) in COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        build_parser().parse_args(args)  # --help, or an error naming the valid commands
        return 2
    name, rest = args[0], args[1:]
    module = COMMANDS[name][0]
    if importlib.util.find_spec(module.split(".")[0]) is None:
        print(f"fcos {name}: module {module} is not installed", file=sys.stderr)
        return 2
    old_argv = sys.argv
    sys.argv = [f"fcos {name}", *rest]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = old_argv
    return 0
