"""`python -m training.runtimes`: the validity rule, and the record written into a real ONNX file
(the tiny model on the synthetic VOC tree) without touching its graph or its other metadata."""

from __future__ import annotations

import json
import math
import shutil
import sys
import types
from pathlib import Path

import onnx
import pytest

from export.backends import openvino_installed
from export.metadata import ModelMetadata
from export.runtime import OnnxDetector
from export.runtime_record import METADATA_KEY, REFERENCE, ConfigResult, RuntimeRecord, read_record
from training import runtimes
from training.metrics.bootstrap import Interval, PairedResult


def _interval(value: float, low: float, high: float) -> Interval:
    return Interval(value, low, high, value, 0.01, 100)


def _paired(delta: float, low: float, high: float, ref: float = 0.40) -> PairedResult:
    return PairedResult(_interval(ref + delta, 0.35, 0.45), _interval(ref, 0.35, 0.45),
                        _interval(delta, low, high), 0.5)  # fmt: skip


@pytest.mark.parametrize(
    ("delta", "valid"),
    [(-0.006, False), (-0.005, False), (-0.0049, True), (0.001, True), (math.nan, False)],
)
def test_the_point_rule_takes_the_difference(delta: float, valid: bool) -> None:
    assert runtimes.is_valid(delta, -0.02, 0.005) is valid
    result = runtimes.config_result(_paired(delta, -0.02, 0.004), 0.005, "note")
    assert result.valid is valid and result.note == "note"
    assert result.low == -0.02


@pytest.mark.parametrize(
    ("low", "valid"),
    [(-0.006, False), (-0.005, False), (-0.0049, True), (0.001, True), (math.nan, False)],
)
def test_the_interval_rule_is_non_inferiority_at_the_tolerance(low: float, valid: bool) -> None:
    assert runtimes.is_valid(0.0, low, 0.005, "interval") is valid
    result = runtimes.config_result(_paired(0.0, low, 0.004), 0.005, "note", "interval")
    assert result.valid is valid and result.note == "note"
    assert result.low == low or math.isnan(low)


def test_a_small_mean_loss_with_a_wide_interval_depends_on_the_rule() -> None:
    # delta +0.0004 but the interval reaches -0.0075 (OpenVINO f32 on val): the point rule
    # takes it, the interval rule says this split cannot vouch for it
    wide = _paired(0.0004, -0.0075, 0.0072)
    assert runtimes.config_result(wide, 0.005).valid
    result = runtimes.config_result(wide, 0.005, rule="interval")
    assert not result.valid and result.delta == 0.0004
    assert result.map50 == pytest.approx(0.4004)
    # a measurable loss whose whole interval stays within the tolerance is valid either way
    narrow = _paired(-0.003, -0.0045, -0.0015)
    assert runtimes.config_result(narrow, 0.005, rule="interval").valid
    assert runtimes.config_result(narrow, 0.005).valid
    # a loss past the tolerance is not, whatever its interval
    assert not runtimes.config_result(_paired(-0.006, -0.009, 0.001), 0.005).valid


def test_parse_configs_puts_the_reference_first() -> None:
    assert runtimes.parse_configs("openvino-bf16, openvino-f32") == (
        REFERENCE, "openvino-f32", "openvino-bf16")  # fmt: skip
    assert runtimes.parse_configs("onnxruntime") == (REFERENCE,)
    with pytest.raises(ValueError, match="unknown configuration"):
        runtimes.parse_configs("onnxruntime,tensorrt")


def test_bf16_note_on_a_cpu_without_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("openvino")

    class Core:
        def get_property(self, device: str, name: str) -> list[str]:
            assert (device, name) == ("CPU", "OPTIMIZATION_CAPABILITIES")
            return ["FP32", "INT8"]

    fake.Core = Core  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "openvino", fake)
    assert runtimes.config_note("openvino-bf16") == runtimes.BF16_FALLBACK_NOTE
    assert runtimes.config_note("openvino-f32") == ""
    assert runtimes.config_note(REFERENCE) == ""


def _record(**configs: ConfigResult) -> RuntimeRecord:
    return RuntimeRecord(
        reference=REFERENCE, tolerance=0.005, confidence=0.95, data="voc", split="val",
        images=3, cpu="test", date="2026-12-07T00:00:00+00:00",
        configs={REFERENCE: ConfigResult(0.5, 0.0, 0.0, 0.0, True), **configs},
    )  # fmt: skip


def _props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_write_record_keeps_the_graph_and_the_other_metadata(
    tiny_onnx_path: Path, tmp_path: Path
) -> None:
    model = tmp_path / "m.onnx"
    shutil.copyfile(tiny_onnx_path, model)
    model.chmod(0o644)
    before = onnx.load(str(model))
    first = _record(**{"openvino-f32": ConfigResult(0.5, 0.0, -0.01, 0.01, False)})
    assert runtimes.write_record(model, first) == model
    second = _record(**{"openvino-f32": ConfigResult(0.5, 0.0, -0.001, 0.001, True)})
    runtimes.write_record(model, second)  # replaces the first record in its place
    after = onnx.load(str(model))
    assert after.graph.SerializeToString() == before.graph.SerializeToString()
    assert after.opset_import == before.opset_import
    keys = [p.key for p in after.metadata_props]
    assert keys == [p.key for p in before.metadata_props] + [METADATA_KEY]
    props = _props(model)
    assert ModelMetadata.from_strings(props) == ModelMetadata.from_strings(
        {p.key: p.value for p in before.metadata_props})  # fmt: skip
    assert read_record(props) == (second, "")
    assert model.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temp file left
    # the service's runtime loads it; the unknown metadata key is ignored
    detector = OnnxDetector(model, threads=1)
    assert detector.metadata == ModelMetadata.from_strings(props)
    assert detector.session.get_modelmeta().custom_metadata_map[METADATA_KEY] == second.to_json()


def test_cli_evaluates_and_writes_a_copy(
    tiny_onnx_path: Path, voc_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, report = tmp_path / "checked.onnx", tmp_path / "record.json"
    rc = runtimes.main(["--model", str(tiny_onnx_path), "--data-root", str(voc_root),
                        "--configs", "onnxruntime,openvino-f32", "--bootstrap", "20",
                        "--threads", "1", "--output", str(out), "--json", str(report)])  # fmt: skip
    assert rc == 0
    assert METADATA_KEY not in _props(tiny_onnx_path)  # the source is untouched
    record, why = read_record(_props(out))
    assert why == "" and record is not None
    assert (record.data, record.split, record.images) == (voc_root.name, "val", 3)
    assert record.reference == REFERENCE and record.configs[REFERENCE].valid
    assert record.tolerance == 0.005 and record.confidence == 0.95 and record.cpu
    ran = ["openvino-f32"] if openvino_installed() else []
    assert list(record.configs) == [REFERENCE, *ran]
    data = json.loads(report.read_text())
    assert data["record"]["configs"].keys() == record.configs.keys()
    text = capsys.readouterr().out
    assert "valid configurations: onnxruntime" in text and f"into {out}" in text
    graph = onnx.load(str(tiny_onnx_path)).graph.SerializeToString()
    assert onnx.load(str(out)).graph.SerializeToString() == graph


def test_cli_skips_a_configuration_that_is_not_installed(
    tiny_onnx_path: Path, voc_root: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setattr(runtimes, "openvino_installed", lambda: False)
    args = ["--configs", "openvino-bf16", "--bootstrap", "5", "--threads", "1"]
    rc = runtimes.main(["--model", str(tiny_onnx_path), "--data-root", str(voc_root), *args])
    assert rc == 0
    text = capsys.readouterr().out
    assert "openvino-bf16: skipped (openvino is not installed" in text
    assert "valid configurations: onnxruntime" in text


def test_cli_refuses_a_checkpoint(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        runtimes.main(["--model", "run/best.pt", "--data", "d.yaml"])
    assert ".onnx" in capsys.readouterr().err
