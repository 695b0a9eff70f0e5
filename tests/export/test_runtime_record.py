"""The `runtime_validation` record (export/runtime_record.py): written, read back, and refused
(None with a reason, never an exception) when malformed, oversized or of another version."""

from __future__ import annotations

import json

import pytest

from export.runtime_record import (
    CONFIGS,
    MAX_RECORD_CHARS,
    METADATA_KEY,
    RECORD_VERSION,
    REFERENCE,
    ConfigResult,
    RuntimeRecord,
    read_record,
    split_config,
)


def make_record(**configs: ConfigResult) -> RuntimeRecord:
    return RuntimeRecord(
        reference=REFERENCE, tolerance=0.005, confidence=0.95, data="voc2012-640", split="val",
        images=471, cpu="AMD EPYC", date="2026-12-07T14:00:00+00:00",
        configs={REFERENCE: ConfigResult(0.4029, 0.0, 0.0, 0.0, True), **configs},
    )  # fmt: skip


RECORD = make_record(
    **{
        "openvino-f32": ConfigResult(0.4033, 0.0004, -0.0075, 0.0072, False),
        "openvino-bf16": ConfigResult(0.4030, 0.0001, -0.0040, 0.0041, True, "kept f32: GN"),
    }
)


def test_round_trip_through_the_metadata_strings() -> None:
    strings = {"name": "fcos", METADATA_KEY: RECORD.to_json()}
    record, why = read_record(strings)
    assert why == ""
    assert record == RECORD
    assert record.version == RECORD_VERSION
    assert record.configs["openvino-bf16"].note == "kept f32: GN"


def test_json_is_compact_and_stable() -> None:
    text = RECORD.to_json()
    assert text == RECORD.to_json()
    assert " " not in text.replace("AMD EPYC", "").replace("kept f32: GN", "")
    assert json.loads(text)["configs"]["openvino-f32"]["low"] == -0.0075


def test_valid_configs_reference_first_then_sorted() -> None:
    record = make_record(
        **{
            "openvino-f32": ConfigResult(0.40, 0.0, -0.004, 0.004, True),
            "openvino-bf16": ConfigResult(0.40, 0.0, -0.004, 0.004, True),
        }
    )
    assert record.valid_configs() == (REFERENCE, "openvino-bf16", "openvino-f32")
    assert RECORD.valid_configs() == (REFERENCE, "openvino-bf16")
    # the reference is valid even when its own entry is missing
    assert RuntimeRecord(**{**RECORD.__dict__, "configs": {}}).valid_configs() == (REFERENCE,)


def test_a_record_without_a_rule_was_decided_on_the_difference() -> None:
    d = json.loads(RECORD.to_json())
    assert d["rule"] == "point"
    del d["rule"]
    record, why = read_record({METADATA_KEY: json.dumps(d)})
    assert why == "" and record is not None and record.rule == "point"


def test_missing_record_gives_a_reason() -> None:
    record, why = read_record({"name": "fcos"})
    assert record is None and "no runtime_validation record" in why


def _modified(**changes: object) -> str:
    d = json.loads(RECORD.to_json())
    d.update(changes)
    return json.dumps(d)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "unreadable"),
        ("[1, 2]", "version"),
        (_modified(version=RECORD_VERSION + 1), "version"),
        (_modified(version=str(RECORD_VERSION)), "version"),
        (_modified(configs=[]), "configs must be an object"),
        (_modified(configs={"onnxruntime": [1]}), "must be an object"),
        (_modified(configs={"onnxruntime": {"map50": 0.4}}), "unreadable"),
        (_modified(reference="tensorrt"), "unknown reference"),
        (_modified(rule="vibes"), "unknown rule"),
        (_modified(images="many"), "unreadable"),
        ('{"version": 1, "configs": {}}', "unreadable"),
        ("x" * (MAX_RECORD_CHARS + 1), f"longer than {MAX_RECORD_CHARS}"),
    ],
)
def test_malformed_records_are_refused_with_a_reason(text: str, fragment: str) -> None:
    record, why = read_record({METADATA_KEY: text})
    assert record is None
    assert "unreadable" in why and fragment in why


def test_oversized_record_is_not_written() -> None:
    big = make_record(**{f"openvino-x{i}": ConfigResult(0.4, 0, 0, 0, True, "n" * 100)
                         for i in range(100)})  # fmt: skip
    with pytest.raises(ValueError, match="chars"):
        big.to_json()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("onnxruntime", ("onnxruntime", None)),
        ("openvino-f32", ("openvino", "f32")),
        ("openvino-bf16", ("openvino", "bf16")),
    ],
)
def test_split_config(name: str, expected: tuple[str, str | None]) -> None:
    assert split_config(name) == expected


def test_reference_is_a_known_configuration() -> None:
    assert CONFIGS[0] == REFERENCE
    assert all(split_config(c)[0] in ("onnxruntime", "openvino") for c in CONFIGS)
