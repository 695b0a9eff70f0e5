"""`DETECTOR_BACKEND=auto`: serve a model file on the fastest runtime configuration that is both
installed and validated for it, measured at load time. NumPy + stdlib (+ the runtimes), no torch.

Candidates: the reference configuration (ONNX Runtime, which every file is trusted on), plus the
configurations the file's `runtime_validation` record (export.runtime_record) declares valid
whose runtime is installed. A file without a readable record is served on the reference alone,
with the reason. `onnxruntime` / `openvino` force one configuration (no trial).

The trial: every candidate is loaded with the service's thread layout and warmed up on one
warm-up shape (the 4:3 photo's letterbox), then timed on it in interleaved rounds (so drift of
a shared machine hits every candidate alike) within a total budget (`trial_s`): per round and
candidate, one call alone (a 1-client request) and, with several workers, the service's
pipelines for that candidate (`ImageDetector.pipelines`) running at once (the saturated
service). A candidate's figure is the median over rounds of ms per image (the mean of the lone
and the concurrent figure). The fastest is served unless the reference is within
`REFERENCE_MARGIN` of it; the others are dropped.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from export.backends import load_detector, openvino_installed
from export.model_check import warmup_sizes
from export.postprocess import PostprocessConfig
from export.preprocess import preprocess
from export.runtime import ImageDetector, OnnxDetector, Spinning
from export.runtime_record import CONFIGS, REFERENCE, RuntimeRecord, read_record, split_config

DEFAULT_TRIAL_S = 3.0  # the whole trial (all candidates), on top of their loads and warm-ups
# The reference is kept unless another configuration is more than 2% faster: a few-second
# trial on a machine serving other work varies by about that much between runs, and the
# reference is what the exporter's parity check and the model card's accuracy figures come
# from, so a gain inside the noise is not worth leaving it.
REFERENCE_MARGIN = 0.02
MIN_ROUNDS = 2  # rounds timed at least, even past the budget (one round can be an outlier)

# (config, threads, spinning, shared_threads) -> a loaded detector on that configuration
Load = Callable[[str, "LoadOptions"], ImageDetector]
# (candidates, budget_s, workers, sizes) -> ms per image of each candidate
Measure = Callable[[dict[str, ImageDetector], float, int, Sequence[tuple[int, int]]],
                   dict[str, float]]  # fmt: skip


@dataclass(frozen=True)
class LoadOptions:
    threads: int | None = None
    spinning: Spinning = True
    shared_threads: int | None = None


@dataclass(frozen=True)
class RuntimeChoice:
    """How a model's runtime configuration was chosen, for the log, /models and the metric."""

    config: str  # e.g. "onnxruntime", "openvino-bf16"
    chosen_by: str  # "auto" (measured, or the only candidate) | "setting" (DETECTOR_BACKEND)
    reason: str
    timings_ms: dict[str, float] = field(default_factory=dict)  # ms per image, candidates
    skipped: dict[str, str] = field(default_factory=dict)  # configuration -> why not a candidate
    validation: dict[str, Any] | None = None  # the record's summary (None: no record)
    trial_ms: float = 0.0  # the whole choice: every candidate's load, warm-up and timing

    @property
    def backend(self) -> str:
        return split_config(self.config)[0]

    @property
    def precision(self) -> str:
        """The precision of the floating-point layers: OpenVINO's hint, f32 on ONNX Runtime."""
        return split_config(self.config)[1] or "f32"

    def summary(self) -> dict[str, Any]:
        return {
            "config": self.config, "backend": self.backend, "precision": self.precision,
            "chosen_by": self.chosen_by, "reason": self.reason, "timings_ms": self.timings_ms,
            "skipped": self.skipped, "validation": self.validation,
        }  # fmt: skip


def record_summary(record: RuntimeRecord) -> dict[str, Any]:
    """What a client needs to judge the record: where it was measured and what each
    configuration cost against the reference (mAP@0.5 delta and its interval)."""
    return {
        "reference": record.reference, "tolerance": record.tolerance,
        "confidence": record.confidence, "data": record.data, "split": record.split,
        "images": record.images, "cpu": record.cpu, "date": record.date,
        "valid": list(record.valid_configs()),
        "deltas": {n: {"delta": r.delta, "low": r.low, "high": r.high, "valid": r.valid}
                   for n, r in sorted(record.configs.items())},
    }  # fmt: skip


def candidates(
    record: RuntimeRecord | None, why_none: str, installed_openvino: bool
) -> tuple[list[str], dict[str, str]]:
    """(the configurations to time, the reference first; {configuration: why it is not})."""
    chosen = [REFERENCE]
    skipped: dict[str, str] = {}
    others = [c for c in CONFIGS if c != REFERENCE]
    if record is None:
        return chosen, dict.fromkeys(others, why_none)
    valid = record.valid_configs()
    for name in sorted(set(others) | set(record.configs) - {REFERENCE}):
        result = record.configs.get(name)
        if name not in CONFIGS:
            skipped[name] = "unknown configuration"
        elif name not in valid:
            skipped[name] = (
                "not in the file's runtime_validation record" if result is None else
                f"not validated: mAP@0.5 {result.delta:+.4f} [{result.low:+.4f}, "
                f"{result.high:+.4f}] against {record.reference}, tolerance {record.tolerance:g}"
            )  # fmt: skip
        elif split_config(name)[0] == "openvino" and not installed_openvino:
            skipped[name] = "openvino is not installed"
        else:
            chosen.append(name)
    return chosen, skipped


def openvino_candidate(strings: dict[str, str]) -> str | None:
    """The precision of the first OpenVINO configuration `auto` would time for a file with
    these metadata strings (None: none would be), for the model check's child."""
    record, why = read_record(strings)
    names, _ = candidates(record, why, openvino_installed())
    return next((split_config(n)[1] or "bf16" for n in names if n.startswith("openvino")), None)


def choose(timings_ms: dict[str, float], margin: float = REFERENCE_MARGIN) -> tuple[str, str]:
    """(the configuration to serve, why) from each candidate's ms per image."""
    if not timings_ms:
        raise ValueError("no candidate was timed")
    fastest = min(timings_ms, key=lambda n: (timings_ms[n], n != REFERENCE))
    best = timings_ms[fastest]
    ref = timings_ms.get(REFERENCE)
    if fastest == REFERENCE:
        return REFERENCE, "fastest"
    if ref is not None and ref <= best * (1 + margin):
        return REFERENCE, (f"within {margin:.0%} of the fastest ({fastest}, "
                           f"{best:.1f} vs {ref:.1f} ms): the reference is kept")  # fmt: skip
    return fastest, "fastest"


def load_config(path: str | Path, config: str, opts: LoadOptions) -> ImageDetector:
    """A detector for `path` on one configuration ("onnxruntime", "openvino-bf16", ...)."""
    backend, precision = split_config(config)
    if backend == "auto":
        raise ValueError(f"unknown configuration {config!r}")
    return load_detector(path, backend, opts.threads, opts.spinning, precision or "bf16",  # type: ignore[arg-type]
                         opts.shared_threads)  # fmt: skip


def file_strings(detector: ImageDetector) -> dict[str, str]:
    """The metadata strings of the file a detector was loaded from."""
    if isinstance(detector, OnnxDetector):
        return dict(detector.session.get_modelmeta().custom_metadata_map)
    from export.openvino_runtime import OpenVinoDetector, metadata_strings

    if isinstance(detector, OpenVinoDetector):
        return metadata_strings(detector._model, detector.path)
    return {}


def _images(sizes: Sequence[tuple[int, int]]) -> list[Image.Image]:
    return [Image.new("RGB", size, (114, 114, 114)) for size in sizes]


def _pass(detector: ImageDetector, images: list[Image.Image]) -> None:
    for image in images:
        detector.detect_image(image, PostprocessConfig())


def warm_up(detector: ImageDetector, sizes: Sequence[tuple[int, int]], workers: int = 1) -> None:
    """A pass over `sizes`; with several workers, the engine of concurrent calls prepared too
    (OpenVINO compiles it on first use otherwise, ~1 s inside the first concurrent request of
    each shape, or inside a timing). A detector without `prepare_shared` gets the pass only."""
    images = _images(sizes)
    _pass(detector, images)
    prepare = getattr(detector, "prepare_shared", None)
    if workers > 1 and prepare is not None:
        m = detector.metadata
        for image in images:
            tensor, _ = preprocess(image, m.input_size, m.mean, m.std)
            prepare(tensor.shape)


def _concurrent_pass(
    detector: ImageDetector, images: list[Image.Image], threads: int, passes: int = 1
) -> float:
    """Seconds for `threads` threads to run `passes` passes each, started together."""
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            for _ in range(passes):
                _pass(detector, images)
        except BaseException as exc:  # re-raised on the calling thread
            errors.append(exc)

    runners = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for t in runners:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in runners:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


def measure(
    detectors: dict[str, ImageDetector], budget_s: float, workers: int,
    sizes: Sequence[tuple[int, int]],
) -> dict[str, float]:  # fmt: skip
    """Each candidate's median ms per image over interleaved rounds (see the module doc)."""
    images = _images(sizes)
    rounds: dict[str, list[float]] = {name: [] for name in detectors}
    t_end = time.perf_counter() + budget_s
    while True:
        for name, detector in detectors.items():
            t0 = time.perf_counter()
            _pass(detector, images)
            alone = (time.perf_counter() - t0) / len(images)
            if workers > 1:
                # The service's pipelines, `workers` passes each: n x workers calls even out
                # over `workers` engines, so one more pipeline than engines is not charged for
                # the last engine's idle tail, only credited with its overlap.
                n = detector.pipelines(workers)
                calls = n * workers * len(images)
                loaded = _concurrent_pass(detector, images, n, workers) / calls
                rounds[name].append((alone + loaded) / 2)
            else:
                rounds[name].append(alone)
        done = min(len(r) for r in rounds.values())
        if done >= MIN_ROUNDS and time.perf_counter() >= t_end:
            break
    return {name: round(1000 * statistics.median(r), 2) for name, r in rounds.items()}


def _release_freed_memory() -> None:
    """Hand the losers' freed heap back to the system (glibc keeps it otherwise: ~100 MiB
    of RSS for two OpenVINO candidates of the bundled model)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def choose_runtime(
    path: str | Path,
    backend: str = "auto",
    opts: LoadOptions = LoadOptions(),
    precision: str = "bf16",
    workers: int = 1,
    trial_s: float = DEFAULT_TRIAL_S,
    load: Load | None = None,
    timer: Measure = measure,
    installed_openvino: bool | None = None,
) -> tuple[ImageDetector, RuntimeChoice]:
    """The detector to serve `path` with and how it was chosen (see the module doc).

    `backend`: "auto" (measure), "onnxruntime" or "openvino" (at `precision`: forced). `load`
    and `timer` are injectable (tests: fake timings). A candidate other than the reference that
    fails to load is skipped with the error; the reference failing fails the load.
    """
    loader: Load = load or (lambda config, o: load_config(path, config, o))
    if backend not in ("auto", "onnxruntime", "openvino"):
        raise ValueError(f"unknown backend {backend!r}; choose one of auto, onnxruntime, openvino")
    if backend != "auto":
        config = backend if backend == "onnxruntime" else f"openvino-{precision}"
        detector = loader(config, opts)
        record, why = read_record(file_strings(detector))
        return detector, RuntimeChoice(
            config, "setting", f"DETECTOR_BACKEND={backend}",
            validation=record_summary(record) if record else None)  # fmt: skip
    t0 = time.perf_counter()
    reference = loader(REFERENCE, opts)
    record, why = read_record(file_strings(reference))
    if installed_openvino is None:
        installed_openvino = openvino_installed()
    names, skipped = candidates(record, why, installed_openvino)
    validation = record_summary(record) if record else None
    if len(names) == 1:
        reason = why or "the only valid configuration installed"
        return reference, RuntimeChoice(REFERENCE, "auto", reason, skipped=skipped,
                                        validation=validation)  # fmt: skip
    # One shape, the 4:3 landscape photo's: an OpenVINO candidate compiles once per shape
    # (~1 s each here), and the winner is warmed up on the others afterwards.
    sizes = warmup_sizes(reference.metadata.input_size)[1:2]
    loaded: dict[str, ImageDetector] = {REFERENCE: reference}
    warm_up(reference, sizes, workers)
    for name in names[1:]:
        try:
            detector = loader(name, opts)
            warm_up(detector, sizes, workers)
        except Exception as exc:  # this configuration cannot serve the file: not a candidate
            skipped[name] = f"failed to load: {type(exc).__name__}: {str(exc)[:200]}"
            continue
        loaded[name] = detector
    if len(loaded) > 1:
        timings = timer(loaded, trial_s, workers, sizes)
        chosen, reason = choose(timings)
    else:
        timings, chosen, reason = {}, REFERENCE, "the other candidates failed to load"
    winner = loaded.pop(chosen)
    loaded.clear()  # the others' sessions and compiled models go
    gc.collect()
    _release_freed_memory()
    trial_ms = round(1000 * (time.perf_counter() - t0), 1)
    return winner, RuntimeChoice(chosen, "auto", reason, timings, skipped, validation, trial_ms)
