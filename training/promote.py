"""Replace a served model by a better one, behind a gate; or roll the last change back.

    python -m training.promote --candidate runs/ft/model.onnx --model default \\
        --model-dir models --data data/captured/data.yaml --split test \\
        --reload-url http://localhost:8000            # token: --admin-token or DETECTOR_ADMIN_TOKEN
    python -m training.promote --candidate NEW.onnx --model default --model-dir models --force \\
        --reload-pid 4242                               # no gate (still logged); SIGHUP
    python -m training.promote --rollback --model default --model-dir models --reload-url URL

The gate runs the candidate and the served MODELS/NAME.onnx on the same images, exactly as
`python -m training.compare` does (the service's pre- and post-processing, VOC mAP@0.5, the
paired bootstrap of training/metrics/bootstrap.py), and promotes only when the
`--confidence` interval (default 95%, the interval `training.compare` prints) of candidate -
current lies above 0. `--force` promotes anyway (the figures are still measured when --data is
given). The candidate must have the served model's classes, in the same order (a model with
other classes is another model: give it another name); a refusal changes no model file.

A promotion keeps the replaced file as MODELS/.history/NAME/<UTC time>-<version>.onnx and
renames the candidate's bytes over MODELS/NAME.onnx (training/model_history.py: atomic, the
scan never serves the hidden history). `--rollback` renames the newest kept version back (the
file it replaces is kept under .history/NAME/rolled-back/), so repeated rollbacks walk back
through the history. Every decision (promoted, forced, refused, rolled_back) is appended to
MODELS/promotions.jsonl: time, user, files and their sha256 and versions, the data, split and
images, both models' mAP@0.5 and the difference with their intervals, and the reload's answer.
Then the running service is asked to rescan (POST /admin/reload, or SIGHUP to --reload-pid).

Both layouts of the repository (export/repository.py): a flat MODELS/NAME.onnx (or
DETECTOR_MODEL_PATH's file: --model-dir is its folder, --model its stem) as above; Triton's
MODELS/NAME/<N>/model.onnx gains a folder N + 1 (the highest is served; the older versions stay
as they are), and `--rollback` moves the highest folder to .history/NAME/rolled-back/.

Exit status: 0 done, 1 refused (logged), 2 an error (nothing changed, nothing logged), 3 done
but the service's reload failed (it serves the new file after its next rescan).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from export.postprocess import PostprocessConfig
from export.repository import VERSIONED_FILE, ModelSource, parse_pins, scan_folder
from training import model_history as mh
from training.service_reload import reload_ok, request_reload

if TYPE_CHECKING:
    from export.inferer import Inferer
    from training.metrics.bootstrap import Interval, PairedResult

METRIC = "VOC mAP@0.5"


class RefusedError(Exception):
    """The promotion is refused (logged; exit status 1)."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.promote", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the served model's name (MODELS/NAME.onnx)")
    p.add_argument("--model-dir", default=os.environ.get("DETECTOR_MODEL_DIR"),
                   help="the service's model folder (default: $DETECTOR_MODEL_DIR)")
    p.add_argument("--candidate", help="the new .onnx file (python -m export ... --version V)")
    p.add_argument("--rollback", action="store_true",
                   help="put the newest kept previous version back instead")
    p.add_argument("--data", help="the gate's dataset (a YOLO data.yaml, COCO, VOC), labels "
                   "corrected by a human")  # fmt: skip
    p.add_argument("--split", default="test", help="the gate's split (default: test)")
    p.add_argument("--confidence", type=float, default=0.95,
                   help="the interval of the difference that must lie above 0 (default 0.95)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="paired draws")
    p.add_argument("--seed", type=int, default=0, help="the draws' random seed")
    p.add_argument("--nms-iou", type=float, default=PostprocessConfig.nms_iou,
                   help="both models' class-wise NMS IoU")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0 = all cores)")
    p.add_argument("--force", action="store_true", help="promote whatever the gate says")
    p.add_argument("--reload-url", help="the service's base URL: POST /admin/reload afterwards")
    p.add_argument("--admin-token", default=os.environ.get("DETECTOR_ADMIN_TOKEN"),
                   help="its bearer token (default: $DETECTOR_ADMIN_TOKEN)")
    p.add_argument("--reload-pid", type=int, help="send SIGHUP to this service process instead")
    args = p.parse_args(argv)
    if not args.model_dir:
        p.error("--model-dir (or DETECTOR_MODEL_DIR) is required")
    if args.rollback == bool(args.candidate):
        p.error("give --candidate NEW.onnx, or --rollback")
    if args.candidate and not args.data and not args.force:
        p.error("--data is required for the gate (or --force to promote without one)")
    if not 0.5 <= args.confidence < 1 or args.bootstrap < 1:
        p.error("--confidence is in [0.5, 1) and --bootstrap at least 1")
    return args


def served(model_dir: Path, name: str) -> ModelSource:
    """The model `name` as the service's scan finds it (ValueError when there is none). The
    version pins of DETECTOR_MODEL_VERSIONS in this environment are honoured, as the service
    does; a pin on `name` is reported, since a new version folder would not be served."""
    pins = parse_pins(os.environ.get("DETECTOR_MODEL_VERSIONS", ""))
    sources = scan_folder(model_dir, pins)
    if name not in sources:
        raise ValueError(f"no model {name!r} in {model_dir} (models: "
                         f"{', '.join(sources) or 'none'})")  # fmt: skip
    if name in pins:
        print(f"warning: DETECTOR_MODEL_VERSIONS pins {name} to version {pins[name]}: the "
              "service serves that one whatever is added or removed", file=sys.stderr)
    return sources[name]


def gate(
    candidate: Inferer, current: Inferer, args: argparse.Namespace
) -> tuple[PairedResult, int]:
    """Both models on the same images, paired bootstrap at args.confidence; (result, images)."""
    from training.evaluation.compare import Side, side_records
    from training.evaluation.data import load_split
    from training.metrics.bootstrap import paired_bootstrap

    data = argparse.Namespace(data=args.data, data_root=None, classes=None, split=args.split,
                              limit=0, skip_invalid=True)  # fmt: skip
    dataset_classes, _, samples = load_split(data, candidate.metadata.class_names)
    side = Side(args.nms_iou)
    a = side_records(candidate, side, dataset_classes, samples)
    b = side_records(current, side, dataset_classes, samples)
    return paired_bootstrap(a, b, args.bootstrap, args.seed, level=args.confidence), len(samples)


def passed(res: PairedResult) -> bool:
    return math.isfinite(res.diff.low) and res.diff.low > 0


def _interval(i: Interval) -> dict[str, float | None]:
    return {k: (v if math.isfinite(v) else None)
            for k, v in (("value", i.value), ("low", i.low), ("high", i.high))}  # fmt: skip


def gate_record(res: PairedResult, images: int, args: argparse.Namespace) -> dict[str, Any]:
    return {"data": str(Path(args.data).resolve()), "split": args.split, "images": images,
            "metric": METRIC, "confidence": args.confidence, "bootstrap": args.bootstrap,
            "seed": args.seed, "candidate": _interval(res.a), "current": _interval(res.b),
            "delta": _interval(res.diff),
            "candidate_wins": res.a_wins if math.isfinite(res.a_wins) else None,
            "passed": passed(res)}  # fmt: skip


def format_gate(res: PairedResult, images: int, level: float) -> str:
    pct = f"{level:.0%}"

    def row(label: str, i: Interval, sign: str = "") -> str:
        return f"{label} {i.value:{sign}.4f}  {pct}: {i.low:{sign}.4f} - {i.high:{sign}.4f}"

    return "\n".join([f"{METRIC} on {images} images, {res.diff.draws} paired draws",
                      row("candidate ", res.a), row("current   ", res.b),
                      row("difference", res.diff, "+") + f"  (candidate higher in "
                      f"{res.a_wins:.1%} of the draws)"])  # fmt: skip


def _file(path: Path, version: str) -> dict[str, str]:
    return {"path": str(path.resolve()), "sha256": mh.sha256_of(path), "version": version}


def load(path: Path, threads: int | None) -> Inferer:
    """The .onnx file on the service's runtime (ValueError when it does not load)."""
    from training.evaluation.detectors import load_onnx_or_checkpoint

    try:
        return load_onnx_or_checkpoint(path, threads=threads)
    except Exception as exc:  # any runtime's failure to read the file
        raise ValueError(f"{path}: cannot load the model: {exc}") from exc


def promote(args: argparse.Namespace, model_dir: Path, record: dict[str, Any]) -> str:
    """Gate and swap; fills `record`; returns the decision (RefusedError when refused)."""
    source = served(model_dir, args.model)
    target = source.path
    candidate_path = Path(args.candidate)
    if candidate_path.suffix.lower() != ".onnx" or not candidate_path.is_file():
        raise ValueError(f"{candidate_path}: the candidate must be an exported .onnx file")
    threads = args.threads or None
    candidate, current = load(candidate_path, threads), load(target, threads)
    record["candidate"] = _file(candidate_path, candidate.metadata.version)
    record["current"] = _file(target, current.metadata.version)
    new_names, old_names = candidate.metadata.class_names, current.metadata.class_names
    if tuple(new_names) != tuple(old_names):
        raise RefusedError(f"the candidate's classes {list(new_names)} are not the served "
                           f"model's {list(old_names)} (other classes: another model name)")
    if record["candidate"]["sha256"] == record["current"]["sha256"]:
        raise RefusedError("the candidate is the served file (same sha256)")
    if args.data:
        res, images = gate(candidate, current, args)
        record["gate"] = gate_record(res, images, args)
        print(format_gate(res, images, args.confidence))
        if not passed(res) and not args.force:
            raise RefusedError(f"the {args.confidence:.0%} interval of the difference "
                               f"({res.diff.low:+.4f} - {res.diff.high:+.4f}) does not lie above 0")
    decision = "promoted" if record.get("gate", {}).get("passed") else "forced"
    if candidate.metadata.version == current.metadata.version:
        print(f"warning: the candidate's version {candidate.metadata.version!r} is the served "
              "one's: /models will not tell them apart (python -m export --version)",
              file=sys.stderr)  # fmt: skip
    if source.version is None:  # flat: swapped in, the old file kept in the history
        record["kept"] = str(mh.install(candidate_path, target, args.model,
                                        current.metadata.version, mh.utc_now()))  # fmt: skip
        record["installed"] = str(target)
    else:  # Triton's layout: a new version folder, the older ones stay where they are
        record["kept"] = str(target.parent)
        record["installed"] = str(mh.add_version(candidate_path, target.parent.parent)
                                  / VERSIONED_FILE)  # fmt: skip
    return decision


def rollback(args: argparse.Namespace, model_dir: Path, record: dict[str, Any]) -> str:
    source = served(model_dir, args.model)
    target = source.path
    record["current"] = _file(target, load(target, 1).metadata.version)
    if source.version is None:  # the newest kept file renamed over NAME.onnx
        restored, kept = mh.restore(target, args.model, record["current"]["version"],
                                    mh.utc_now())  # fmt: skip
        installed = target
    else:  # the highest version folder moved away: the one below serves
        installed, kept = mh.remove_version(target.parent.parent, args.model, mh.utc_now())
        installed = restored = installed / VERSIONED_FILE
    record["restored"] = {**_file(installed, load(installed, 1).metadata.version),
                          "from": str(restored)}  # fmt: skip
    record["kept"] = str(kept)
    record["installed"] = str(installed)
    return "rolled_back"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    model_dir = Path(args.model_dir)
    record: dict[str, Any] = {
        "time": mh.utc_now().isoformat(), "user": mh.user(),
        "action": "rollback" if args.rollback else "promote", "model": args.model,
        "model_dir": str(model_dir.resolve()),
    }  # fmt: skip
    try:
        with mh.locked(model_dir):
            try:
                decision = (rollback if args.rollback else promote)(args, model_dir, record)
            except RefusedError as exc:
                record.update(decision="refused", reason=str(exc))
                mh.append_log(model_dir, record)
                print(f"refused: {exc}; nothing changed (logged in {model_dir / mh.LOG})")
                return 1
            record["decision"] = decision
            record["reload"] = request_reload(args.reload_url, args.admin_token, args.reload_pid)
            mh.append_log(model_dir, record)
    except BlockingIOError:
        print(f"error: another promotion or rollback is running in {model_dir}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    replaced = "replaced file kept" if args.rollback else "previous version"
    print(f"{decision}: {record['installed']} ({replaced}: {record['kept']}; logged in "
          f"{model_dir / mh.LOG})")
    if record["reload"] is not None:
        print(f"reload: {record['reload']}")
    return 0 if reload_ok(record["reload"]) else 3


if __name__ == "__main__":
    raise SystemExit(main())
