"""Is model A better than model B on this split, or only on these images? A paired bootstrap.

    python -m training.compare --model A.onnx --against B.onnx \\
        --data-root ../shared/data/voc2012-640 --split val --bootstrap 2000
    python -m training.compare --model models/default.onnx --nms-iou 0.6 --against-nms-iou 0.5 \\
        --data-root ../shared/data/voc2012-640 --split val     # one model, two settings
    python -m training.compare --model a_seed0.onnx --also a_seed1.onnx \\
        --against b_seed0.onnx --against b_seed1.onnx --data d.yaml --split test   # two recipes
    python -m training.compare --model models/default.onnx --tile auto --against-tile off \\
        --data /tmp/mosaic-val --split val   # two tile modes (mosaics: training.tools.mosaic)

(`python -m training.evaluation.compare` is the same command.) Both run exactly like
`python -m training.evaluate` (the service's pre- and post-processing).
The images are then drawn with replacement, `--bootstrap` times, and both are scored on each
draw (`training.metrics.bootstrap.paired_bootstrap`). It prints each one's VOC mAP@0.5 with
its 95% interval, and the difference A - B with its own interval and the share of draws in
which A scores higher. An interval of the difference that holds 0 means that this split
cannot tell the two apart; a gap smaller than either model's own interval may still be real
when the paired interval excludes 0, because both are scored on the same hard images.

`--tile` / `--against-tile` run A and B with tiled inference (export/tiling.py, the service's
`tile`: off, auto or an N x N grid), so two tile modes of one model are paired on the same
images; `--tile-merge` / `--against-tile-merge` pair two ways of merging the tiles' boxes.

Two training recipes differ by more than their runs' luck only if several runs of each say so:
`--also` adds runs to A and a repeated `--against` gives B several; each side then scores the
mean mAP@0.5 of its runs, on the images as they are and on every draw.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from export.postprocess import PostprocessConfig
from export.predict import tile_arg
from export.tile_merge import DEFAULT_MERGE, MERGE_RULES
from export.tiling import DEFAULT_MAX_TILES, Tile
from training.evaluation.data import add_data_args, class_mapping, load_split
from training.evaluation.detectors import load_onnx_or_checkpoint
from training.evaluation.inference import run_detector
from training.evaluation.report import json_safe
from training.evaluation.scoring import metric_inputs
from training.metrics.bootstrap import Interval, PairedResult, paired_bootstrap
from training.metrics.voc import VocRecords, voc_records

if TYPE_CHECKING:
    from export.inferer import Inferer
    from training.data.sample import Sample


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--also", action="append", default=[], metavar="MODEL",
                   help="another run of A (e.g. another seed; repeatable): A = their mean")
    p.add_argument("--against", action="append", default=None, metavar="MODEL",
                   help="model B (.onnx or .pt; default: --model again, e.g. with other "
                        "settings); repeated: B = the mean of these runs")
    p.add_argument("--nms-iou", type=float, default=PostprocessConfig.nms_iou,
                   help="model A's class-wise NMS IoU")
    p.add_argument("--against-nms-iou", type=float, default=None,
                   help="model B's NMS IoU (default: --nms-iou)")
    p.add_argument("--tile", type=tile_arg, default="off", metavar="off|auto|N",
                   help="model A's tiled inference (export/tiling.py, the service's `tile`)")
    p.add_argument("--against-tile", type=tile_arg, default=None, metavar="off|auto|N",
                   help="model B's tile mode (default: --tile)")
    p.add_argument("--max-tiles", type=int, default=DEFAULT_MAX_TILES,
                   help="at most this many tiles per image, both sides")
    p.add_argument("--tile-merge", choices=MERGE_RULES, default=DEFAULT_MERGE,
                   help="model A's merge of tile and whole-image boxes (export.tiling.merge)")
    p.add_argument("--against-tile-merge", choices=MERGE_RULES, default=None,
                   help="model B's merge rule (default: --tile-merge)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="draws of the images with replacement")
    p.add_argument("--seed", type=int, default=0, help="the draws' random seed")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0 = all cores)")
    p.add_argument("--json", default=None, help="write the result to this JSON file")
    args = p.parse_args(argv)
    if args.bootstrap < 1:
        p.error("--bootstrap must be at least 1")
    return args


@dataclasses.dataclass(frozen=True)
class Side:
    """How one side of the comparison runs its models: NMS IoU, tile mode and merge rule."""

    nms_iou: float
    tile: Tile = "off"
    max_tiles: int = DEFAULT_MAX_TILES
    tile_merge: str = DEFAULT_MERGE

    def describe(self) -> str:
        tiling = "" if self.tile == "off" else f", tile {self.tile}, {self.tile_merge} merge"
        return f"NMS IoU {self.nms_iou}{tiling}"


def side_records(detector: Inferer, side: Side, dataset_classes: Sequence[str],
                 samples: Sequence[Sample]) -> VocRecords:
    """`detector` run on `samples` as `side` says, matched to the ground truth once (the
    records a paired bootstrap draws from)."""
    names = detector.metadata.class_names
    dets = run_detector(detector, samples, PostprocessConfig(nms_iou=side.nms_iou),
                        tile=side.tile, max_tiles=side.max_tiles, tile_merge=side.tile_merge)
    gts, preds = metric_inputs(samples, dets, class_mapping(names, dataset_classes))
    return voc_records(gts, preds, len(names))


def format_result(res: PairedResult, a: str, b: str) -> str:
    def row(label: str, name: str, i: Interval) -> str:
        return (f"{label}  {i.value:.4f}  95%: {i.low:.4f} - {i.high:.4f}  (draws: mean "
                f"{i.mean:.4f}, std {i.std:.4f})  {name}")

    return "\n".join([
        f"VOC mAP@0.5, {res.diff.draws} paired draws of the images (bias-corrected intervals)",
        row("A     ", a, res.a),
        row("B     ", b, res.b),
        f"A - B  {res.diff.value:+.4f}  95%: {res.diff.low:+.4f} - {res.diff.high:+.4f}  "
        f"(std {res.diff.std:.4f})  A higher in {res.a_wins:.1%} of the draws",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    paths_a = [args.model, *args.also]
    paths_b = args.against or [args.model]
    b_iou = args.nms_iou if args.against_nms_iou is None else args.against_nms_iou
    b_tile = args.tile if args.against_tile is None else args.against_tile
    b_merge = args.tile_merge if args.against_tile_merge is None else args.against_tile_merge
    side_a = Side(args.nms_iou, args.tile, args.max_tiles, args.tile_merge)
    side_b = Side(b_iou, b_tile, args.max_tiles, b_merge)
    try:
        detectors = {p: load_onnx_or_checkpoint(p, threads=args.threads or None)
                     for p in {*paths_a, *paths_b}}
        first = detectors[args.model]
        dataset_classes, _, samples = load_split(args, first.metadata.class_names)

        def records(paths: Sequence[str], side: Side) -> list[VocRecords]:
            return [side_records(detectors[p], side, dataset_classes, samples) for p in paths]

        res = paired_bootstrap(records(paths_a, side_a), records(paths_b, side_b),
                               args.bootstrap, args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name_a = _side_name(paths_a, side_a)
    name_b = _side_name(paths_b, side_b)
    print(format_result(res, name_a, name_b))
    if args.json:
        payload = {**dataclasses.asdict(res), "model": name_a, "against": name_b,
                   "runs": {"a": paths_a, "b": paths_b}, "split": args.split, "seed": args.seed,
                   "tile": {"a": side_a.tile, "b": side_b.tile}, "max_tiles": args.max_tiles,
                   "tile_merge": {"a": side_a.tile_merge, "b": side_b.tile_merge}}
        Path(args.json).write_text(json.dumps(json_safe(payload), indent=2) + "\n")
    return 0


def _side_name(paths: Sequence[str], side: Side) -> str:
    runs = paths[0] if len(paths) == 1 else f"mean of {len(paths)} runs: {', '.join(paths)}"
    return f"{runs} ({side.describe()})"


if __name__ == "__main__":
    raise SystemExit(main())
