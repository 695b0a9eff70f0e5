"""Which runtime configurations keep an exported model's accuracy: evaluate the file under each
one on a labelled split, pair it with the reference image by image, and record the verdict in
the file (the `runtime_validation` metadata, export/runtime_record.py).

    python -m training.runtimes --model models/default.onnx \\
        --data ../shared/data/voc2012-640 --split val              # the table only
    python -m training.runtimes --model models/default.onnx \\
        --data ../shared/data/voc2012-640 --split val --write      # and the record, in place
    python -m training.runtimes --model m.onnx --data d.yaml --split val --output m.checked.onnx

Each configuration ("onnxruntime", "openvino-f32", "openvino-bf16": a runtime and OpenVINO's
precision hint) runs exactly like `python -m training.evaluate --backend ... --ov-precision ...`
(the service's pre- and post-processing); one that is not installed is skipped, with the reason.
Every configuration is compared with the reference (ONNX Runtime) on the same bootstrap draws of
the images (`training.metrics.bootstrap.paired_bootstrap`, as `python -m training.compare`). A
configuration is *valid* (`--rule point`, the default) when its difference from the reference,
(config - reference) mAP@0.5 on the same images, is above -tolerance; the interval is recorded
beside it. `--rule interval` asks more: the interval's lower end above -tolerance (it costs less
than the tolerance with the stated confidence: non-inferiority). Why the point rule by default:
two runtimes round INT8 arithmetic differently, so on the 471 val photos even OpenVINO f32, which
scores +0.0004, has a paired interval of -0.0075..+0.0072, wider than the 0.005 tolerance; the
interval rule would refuse every configuration but the reference until a split has about four
times as many images (models/MODEL_CARD.md, "Runtime configurations").

`--write` stores the record in the file's ONNX metadata (`runtime_validation`), `--output` in a
copy: the graph and the other metadata keys are untouched, the file is replaced atomically. The
service's DETECTOR_BACKEND=auto then chooses among the valid configurations. The record states
the split, its size, the tolerance, the confidence and the processor: bf16 depends on it (a CPU
without bf16 runs OpenVINO's bf16 hint as f32, which the configuration's note then says).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from export.backends import openvino_installed
from export.cpu_info import cpu_name
from export.postprocess import PostprocessConfig
from export.runtime_record import (
    CONFIGS,
    DEFAULT_TOLERANCE,
    METADATA_KEY,
    REFERENCE,
    RULES,
    ConfigResult,
    RuntimeRecord,
    split_config,
)
from training.evaluation.compare import Side, side_records
from training.evaluation.data import add_data_args, load_split
from training.evaluation.detectors import load_onnx_or_checkpoint
from training.evaluation.report import json_safe
from training.metrics.bootstrap import PairedResult, paired_bootstrap
from training.metrics.voc import VocRecords, voc_result

if TYPE_CHECKING:
    import onnx

    from training.data.sample import Sample

BF16_FALLBACK_NOTE = "bf16 not supported by this CPU: ran f32"
RULE_TEXT = {"point": "difference", "interval": "interval's low end"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m training.runtimes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_args(p)
    p.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"comma-separated configurations to evaluate ({', '.join(CONFIGS)}); "
        f"the reference, {REFERENCE}, is always evaluated",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="mAP@0.5 a configuration may cost against the reference",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=2000,
        metavar="N",
        help="paired draws of the images with replacement",
    )
    p.add_argument(
        "--confidence",
        type=float,
        default=0.95,
        help="the intervals' confidence (two-sided)",
    )
    p.add_argument(
        "--rule",
        choices=RULES,
        default="point",
        help="valid when the difference (point) or the interval's lower end (interval) is "
        "above -tolerance",
    )
    p.add_argument("--seed", type=int, default=0, help="the draws' random seed")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0 = all cores)")
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--write",
        action="store_true",
        help="store the record in --model's metadata (atomically, graph untouched)",
    )
    out.add_argument(
        "--output",
        default=None,
        metavar="NEW.onnx",
        help="write a copy of --model with the record to this file",
    )
    p.add_argument("--json", default=None, help="write the record and the intervals here")
    args = p.parse_args(argv)
    args.configs = parse_configs(args.configs, p)
    if Path(args.model).suffix.lower() != ".onnx":
        p.error("--model must be an exported .onnx file")
    if args.bootstrap < 1:
        p.error("--bootstrap must be at least 1")
    if not 0 < args.confidence < 1:
        p.error("--confidence must be between 0 and 1")
    if not args.tolerance >= 0:
        p.error("--tolerance must be >= 0")
    return args


def parse_configs(text: str, p: argparse.ArgumentParser | None = None) -> tuple[str, ...]:
    """The configurations named in `text`, the reference first, then the others in CONFIGS
    order ("openvino-bf16,onnxruntime" -> ("onnxruntime", "openvino-bf16")); an unknown name
    is an argparse error (ValueError without `p`)."""
    names = {n.strip() for n in text.split(",") if n.strip()}
    unknown = sorted(names - set(CONFIGS))
    if unknown:
        message = f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}"
        if p is not None:
            p.error(message)
        raise ValueError(message)
    return (REFERENCE, *(n for n in CONFIGS if n in names and n != REFERENCE))


def unavailable(config: str) -> str | None:
    """Why `config` cannot run here (None: it can)."""
    backend, _ = split_config(config)
    if backend == "openvino" and not openvino_installed():
        return "openvino is not installed (pip install 'fcos-detector[openvino]')"
    return None


def config_note(config: str) -> str:
    """What the table and the record should say about how `config` ran on this machine."""
    backend, precision = split_config(config)
    if backend == "openvino" and precision == "bf16":
        import openvino

        caps = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if "BF16" not in caps:
            return BF16_FALLBACK_NOTE
    return ""


def config_records(
    model: str | Path,
    config: str,
    samples: Sequence[Sample],
    dataset_classes: Sequence[str],
    threads: int | None = None,
) -> VocRecords:
    """The file run under `config` on `samples`, scored as `training.compare` scores a side."""
    backend, precision = split_config(config)
    detector = load_onnx_or_checkpoint(model, backend, threads, precision or "bf16")  # type: ignore[arg-type]
    return side_records(detector, Side(PostprocessConfig().nms_iou), dataset_classes, samples)


def is_valid(delta: float, low: float, tolerance: float, rule: str = "point") -> bool:
    """`rule` "point": (config - reference) above -tolerance; "interval" (non-inferiority): the
    interval's lower end above -tolerance. A nan (no draw scorable) is not valid."""
    value = low if rule == "interval" else delta
    return math.isfinite(value) and value > -tolerance


def config_result(
    paired: PairedResult, tolerance: float, note: str = "", rule: str = "point"
) -> ConfigResult:
    """`paired`: the configuration (A) against the reference (B) on the same draws."""
    d = paired.diff
    return ConfigResult(map50=paired.a.value, delta=d.value, low=d.low, high=d.high,
                        valid=is_valid(d.value, d.low, tolerance, rule), note=note)  # fmt: skip


def reference_result(records: VocRecords) -> ConfigResult:
    """The reference against itself: difference 0, valid by definition."""
    return ConfigResult(map50=voc_result(records).map, delta=0.0, low=0.0, high=0.0, valid=True)


def validate(
    model: str | Path,
    samples: Sequence[Sample],
    dataset_classes: Sequence[str],
    configs: Sequence[str] = CONFIGS,
    *,
    data_name: str,
    split: str,
    tolerance: float = DEFAULT_TOLERANCE,
    bootstrap: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    threads: int | None = None,
    rule: str = "point",
    log: Any = print,
) -> tuple[RuntimeRecord, dict[str, PairedResult], dict[str, str]]:
    """Evaluate `model` under each installed configuration (the reference always) and pair each
    with the reference. Returns (record, each configuration's PairedResult against the
    reference, {skipped configuration: why})."""
    records: dict[str, VocRecords] = {}
    skipped: dict[str, str] = {}
    for config in (REFERENCE, *(c for c in configs if c != REFERENCE)):
        reason = unavailable(config)
        if reason is not None:
            skipped[config] = reason
            log(f"{config}: skipped ({reason})")
            continue
        log(f"{config}: evaluating {len(samples)} images ...")
        records[config] = config_records(model, config, samples, dataset_classes, threads)
    ref = records[REFERENCE]
    results = {REFERENCE: reference_result(ref)}
    paired: dict[str, PairedResult] = {}
    for config, rec in records.items():
        if config == REFERENCE:
            continue
        paired[config] = paired_bootstrap(rec, ref, bootstrap, seed, confidence)
        results[config] = config_result(paired[config], tolerance, config_note(config), rule)
    record = RuntimeRecord(
        reference=REFERENCE, tolerance=tolerance, confidence=confidence, data=data_name,
        split=split, images=len(samples), cpu=cpu_name(),
        date=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        configs=results, rule=rule,
    )  # fmt: skip
    return record, paired, skipped


def format_table(record: RuntimeRecord, skipped: dict[str, str] | None = None) -> str:
    level = f"{record.confidence:.0%}"
    head = (f"{'config':<15} {'mAP@0.5':>8} {'delta':>8}  {level + ' interval':<19} "
            f"{'valid':<5}  note")  # fmt: skip
    lines = [
        f"VOC mAP@0.5 on {record.data} {record.split} ({record.images} images), paired against "
        f"{record.reference}; valid: {RULE_TEXT[record.rule]} > -{record.tolerance:g} "
        f"({record.cpu})",
        head,
    ]
    for name, r in record.configs.items():
        interval = "reference" if name == record.reference else f"{r.low:+.4f} .. {r.high:+.4f}"
        lines.append(f"{name:<15} {r.map50:>8.4f} {r.delta:>+8.4f}  {interval:<19} "
                     f"{'yes' if r.valid else 'NO':<5}  {r.note}")  # fmt: skip
    for name, reason in (skipped or {}).items():
        lines.append(f"{name:<15} {'-':>8} {'-':>8}  {'-':<19} {'-':<5}  skipped: {reason}")
    lines.append(f"valid configurations: {', '.join(record.valid_configs())}")
    return "\n".join(lines)


def set_record(proto: onnx.ModelProto, record: RuntimeRecord) -> None:
    """Put `record` into `proto.metadata_props` under METADATA_KEY (replacing an older one in
    its place; every other key kept, in order)."""
    text = record.to_json()
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            entry.value = text
            return
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, text


def write_record(
    model: str | Path, record: RuntimeRecord, output: str | Path | None = None
) -> Path:
    """Store `record` in the ONNX file `model` (in place, or in a copy at `output`): only the
    metadata changes; the new file is written beside its destination and renamed over it, so a
    reader never sees half a file. Returns the path written."""
    import onnx

    source = Path(model)
    target = Path(output) if output is not None else source
    proto = onnx.load(str(source), load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        raise ValueError(f"{source} keeps its weights in external data files: not supported")
    set_record(proto, record)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(proto.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, source.stat().st_mode & 0o777)  # mkstemp makes it 0600
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    threads = args.threads or None
    try:
        # The file's own classes, read once on the reference (always installed).
        names = load_onnx_or_checkpoint(args.model, threads=threads).metadata.class_names
        dataset_classes, _, samples = load_split(args, names)
        data_path = Path(args.data or args.data_root).resolve()
        data_name = data_path.name if data_path.is_dir() else data_path.parent.name
        record, paired, skipped = validate(
            args.model, samples, dataset_classes, args.configs, data_name=data_name,
            split=args.split, tolerance=args.tolerance, bootstrap=args.bootstrap,
            confidence=args.confidence, seed=args.seed, threads=threads, rule=args.rule,
        )  # fmt: skip
    except (ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(record, skipped))
    if args.write or args.output:
        written = write_record(args.model, record, args.output)
        print(f"wrote the {METADATA_KEY} record into {written}")
    if args.json:
        payload = {
            "record": dataclasses.asdict(record),
            "skipped": skipped,
            "paired": {k: dataclasses.asdict(v) for k, v in paired.items()},
            "model": str(args.model),
            "bootstrap": args.bootstrap,
            "seed": args.seed,
        }
        Path(args.json).write_text(json.dumps(json_safe(payload), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
