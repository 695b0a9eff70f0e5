"""DETECTOR_BACKEND=auto's choice (export.runtime_choice): the candidates a file's
runtime_validation record allows, the choice from (fake) timings, forcing, and a real choice
between ONNX Runtime and OpenVINO on a small exported file."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from export import runtime_choice as rc
from export.runtime_record import METADATA_KEY, ConfigResult, RuntimeRecord

TINY_INPUT = 128


def make_record(**valid: bool) -> RuntimeRecord:
    """A record where each named configuration is valid or not (names use _ for -)."""
    configs = {"onnxruntime": ConfigResult(0.5, 0.0, 0.0, 0.0, True)}
    for key, ok in valid.items():
        delta = -0.001 if ok else -0.02
        configs[key.replace("_", "-")] = ConfigResult(0.5 + delta, delta, delta - 0.002,
                                                      delta + 0.002, ok)  # fmt: skip
    return RuntimeRecord(reference="onnxruntime", tolerance=0.005, confidence=0.95,
                         data="coco-val-small", split="val", images=500, cpu="test cpu",
                         date="2026-12-07T00:00:00Z", configs=configs)  # fmt: skip


def with_record(src: Path, dst: Path, text: str | None) -> Path:
    """A copy of `src` with METADATA_KEY set to `text` (None: as it is)."""
    onnx = pytest.importorskip("onnx")
    shutil.copy(src, dst)
    if text is None:
        return dst
    model = onnx.load(str(dst))
    props = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, text
    onnx.save(model, str(dst))
    return dst


class FakeDetector:
    def __init__(self, config: str) -> None:
        self.config = config
        self.metadata = type("M", (), {"input_size": TINY_INPUT})()

    def detect_image(self, image: Any, cfg: Any) -> None:
        return None


def fake_run(
    record_text: str | None, timings: dict[str, float], backend: str = "auto",
    installed: bool = True, fail: tuple[str, ...] = (),
) -> tuple[Any, rc.RuntimeChoice, list[str]]:  # fmt: skip
    """choose_runtime with fake loads (the record comes from `file_strings`) and timings."""
    loaded: list[str] = []

    def load(config: str, opts: rc.LoadOptions) -> Any:
        loaded.append(config)
        if config in fail:
            raise RuntimeError(f"{config} cannot")
        return FakeDetector(config)

    def timer(dets: dict[str, Any], budget: float, workers: int, sizes: Any) -> dict[str, float]:
        assert sizes == ((128, 96),)
        return {name: timings[name] for name in dets}

    strings = {} if record_text is None else {METADATA_KEY: record_text}
    mp = pytest.MonkeyPatch()
    mp.setattr(rc, "file_strings", lambda det: strings)
    try:
        det, choice = rc.choose_runtime("x.onnx", backend, load=load, timer=timer,
                                        installed_openvino=installed)  # fmt: skip
    finally:
        mp.undo()
    return det, choice, loaded


VALID_BOTH = make_record(openvino_f32=True, openvino_bf16=True).to_json()
TIMES = {"onnxruntime": 30.0, "openvino-f32": 28.0, "openvino-bf16": 24.0}


def test_the_fastest_valid_configuration_wins() -> None:
    det, choice, loaded = fake_run(VALID_BOTH, TIMES)
    assert det.config == choice.config == "openvino-bf16" and choice.chosen_by == "auto"
    assert (choice.backend, choice.precision) == ("openvino", "bf16")
    assert choice.timings_ms == TIMES and choice.skipped == {}
    assert loaded == ["onnxruntime", "openvino-bf16", "openvino-f32"]
    assert choice.validation is not None and choice.validation["split"] == "val"
    assert choice.validation["deltas"]["openvino-bf16"]["delta"] == pytest.approx(-0.001)


def test_the_reference_is_kept_within_the_margin() -> None:
    near = {"onnxruntime": 30.0, "openvino-f32": 29.6, "openvino-bf16": 29.5}  # 1.7% faster
    _, choice, _ = fake_run(VALID_BOTH, near)
    assert choice.config == "onnxruntime" and "within 2%" in choice.reason
    assert rc.choose({"onnxruntime": 30.0, "openvino-bf16": 29.0})[0] == "openvino-bf16"
    assert rc.choose({"onnxruntime": 30.0, "openvino-bf16": 30.0})[0] == "onnxruntime"
    assert rc.choose({"onnxruntime": 20.0, "openvino-bf16": 30.0}) == ("onnxruntime", "fastest")
    with pytest.raises(ValueError):
        rc.choose({})


def test_only_valid_configurations_are_timed() -> None:
    record = make_record(openvino_f32=True, openvino_bf16=False).to_json()
    _, choice, loaded = fake_run(record, TIMES)
    assert loaded == ["onnxruntime", "openvino-f32"] and choice.config == "openvino-f32"
    assert set(choice.timings_ms) == {"onnxruntime", "openvino-f32"}
    assert choice.skipped["openvino-bf16"].startswith("not validated: mAP@0.5 -0.0200")


def test_a_file_without_a_record_is_served_on_the_reference_with_the_reason() -> None:
    det, choice, loaded = fake_run(None, TIMES)
    assert loaded == ["onnxruntime"] and det.config == choice.config == "onnxruntime"
    assert choice.chosen_by == "auto" and choice.timings_ms == {} and choice.validation is None
    assert choice.reason == "the file has no runtime_validation record"
    assert choice.skipped == dict.fromkeys(("openvino-f32", "openvino-bf16"), choice.reason)


@pytest.mark.parametrize("text", ["{not json", '{"version": 99}', '{"version": 1}', "[]"])
def test_a_malformed_record_is_advice_ignored(text: str) -> None:
    _, choice, loaded = fake_run(text, TIMES)
    assert loaded == ["onnxruntime"] and choice.config == "onnxruntime"
    assert choice.reason.startswith("the file's runtime_validation record is unreadable")


def test_openvino_not_installed_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    _, choice, loaded = fake_run(VALID_BOTH, TIMES, installed=False)
    assert loaded == ["onnxruntime"] and choice.config == "onnxruntime"
    assert choice.skipped == dict.fromkeys(("openvino-bf16", "openvino-f32"),
                                           "openvino is not installed")  # fmt: skip
    monkeypatch.setattr(rc, "openvino_installed", lambda: False)
    assert rc.openvino_candidate({METADATA_KEY: VALID_BOTH}) is None
    monkeypatch.setattr(rc, "openvino_installed", lambda: True)
    assert rc.openvino_candidate({METADATA_KEY: VALID_BOTH}) == "bf16"
    assert rc.openvino_candidate({}) is None


def test_a_candidate_that_fails_to_load_is_skipped() -> None:
    _, choice, _ = fake_run(VALID_BOTH, TIMES, fail=("openvino-bf16",))
    assert choice.config == "openvino-f32"
    assert choice.skipped["openvino-bf16"] == "failed to load: RuntimeError: openvino-bf16 cannot"
    _, choice, _ = fake_run(VALID_BOTH, TIMES, fail=("openvino-bf16", "openvino-f32"))
    assert choice.config == "onnxruntime" and choice.timings_ms == {}
    with pytest.raises(RuntimeError):
        fake_run(VALID_BOTH, TIMES, fail=("onnxruntime",))


@pytest.mark.parametrize(("backend", "config"),
                         [("onnxruntime", "onnxruntime"), ("openvino", "openvino-bf16")])
def test_a_forced_backend_is_loaded_alone(backend: str, config: str) -> None:
    _, choice, loaded = fake_run(VALID_BOTH, {}, backend=backend)
    assert loaded == [config] and choice.config == config and choice.chosen_by == "setting"
    assert choice.reason == f"DETECTOR_BACKEND={backend}" and choice.timings_ms == {}
    with pytest.raises(ValueError, match="unknown backend"):
        fake_run(VALID_BOTH, {}, backend="tensorrt")


def test_a_real_choice_between_two_installed_runtimes(
    tiny_onnx_path: Path, tmp_path: Path
) -> None:
    pytest.importorskip("openvino")
    record = make_record(openvino_f32=True, openvino_bf16=False).to_json()
    path = with_record(tiny_onnx_path, tmp_path / "m.onnx", record)
    det, choice = rc.choose_runtime(path, "auto", rc.LoadOptions(threads=1), workers=2,
                                    trial_s=0.3)  # fmt: skip
    assert set(choice.timings_ms) == {"onnxruntime", "openvino-f32"}
    assert all(ms > 0 for ms in choice.timings_ms.values())
    assert det.backend == choice.backend and choice.config in choice.timings_ms
    assert choice.validation is not None and choice.validation["valid"] == [
        "onnxruntime", "openvino-f32"]  # fmt: skip
    assert choice.trial_ms > 0


def test_the_trial_runs_as_many_calls_at_once_as_the_service_would() -> None:
    """With workers=2, a candidate that asks for 3 pipelines is timed with 3 threads at once,
    `workers` passes each (6 calls: they even out over its 2 engines); one that does not ask,
    with 2 threads. Each round also times one call alone."""

    class Counting(FakeDetector):
        def __init__(self, config: str, extra: int) -> None:
            super().__init__(config)
            self.extra, self.calls, self.active, self.peak = extra, 0, 0, 0
            self.lock = threading.Lock()

        def pipelines(self, workers: int) -> int:
            return workers + self.extra

        def detect_image(self, image: Any, cfg: Any) -> None:
            with self.lock:
                self.calls += 1
                self.active += 1
                self.peak = max(self.peak, self.active)
            threading.Event().wait(0.01)  # long enough for the threads to overlap
            with self.lock:
                self.active -= 1

    queued, plain = Counting("openvino-bf16", 1), Counting("onnxruntime", 0)
    timings = rc.measure({"q": queued, "p": plain}, 0.0, 2, [(64, 48)])  # type: ignore[dict-item]
    assert set(timings) == {"q", "p"} and all(ms > 0 for ms in timings.values())
    rounds = rc.MIN_ROUNDS
    assert queued.calls == rounds * (1 + 3 * 2) and queued.peak == 3
    assert plain.calls == rounds * (1 + 2 * 2) and plain.peak == 2
