"""The generated blocks of README.md, the model card and bench/RESULTS.md match their sources."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from service.stages import STAGES

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("sync_docs", REPO / "scripts" / "sync_docs.py")
assert spec and spec.loader
sync_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sync_docs)


def test_docs_are_in_sync_with_their_sources() -> None:
    """Fails after a change to Settings or to a results file: run python scripts/sync_docs.py."""
    assert sync_docs.main(["--check"]) == 0


def test_settings_table_lists_every_setting() -> None:
    from service.settings import Settings

    table = sync_docs.settings_block()
    for name in Settings.model_fields:
        assert f"`DETECTOR_{name.upper()}`" in table
    assert "`models/default.onnx`" in table  # repo-relative, not this machine's path


def test_render_replaces_a_stale_block_and_requires_the_markers() -> None:
    text = "a\n<!-- BEGIN GENERATED: x (see y) -->\nold\n<!-- END GENERATED: x -->\nb\n"
    new = sync_docs.render(text, {"x": lambda: "new"}, "doc")
    assert new == text.replace("old", "new")
    assert sync_docs.render(new, {"x": lambda: "new"}, "doc") == new
    with pytest.raises(SystemExit):
        sync_docs.render("no markers", {"x": lambda: "new"}, "doc")


def test_headline_figures_come_from_the_results_files() -> None:
    m = sync_docs._eval("val-int8")
    assert f"**{m['map50']:.4f}**" in sync_docs.headline_block()
    readme = (REPO / "README.md").read_text()
    assert f"{m['map50']:.4f}" in readme


def test_readme_json_example_is_a_response_of_the_bundled_model() -> None:
    """The README's example has exactly the response's fields, and the bundled model's name in
    the repository (its file stem) and version."""
    import json

    from export.runtime import OnnxDetector
    from service.schemas import DetectResponse

    readme = (REPO / "README.md").read_text()
    example = json.loads(readme.split("```json\n", 1)[1].split("```", 1)[0])
    response = DetectResponse.model_validate(example)
    assert response.model_dump(mode="json") == example  # no field missing, none extra
    meta = OnnxDetector(REPO / "models" / "default.onnx", threads=1).metadata
    assert (response.model.name, response.model.version) == ("default", meta.version)
    for d in response.detections:
        assert meta.class_names[d.class_id] == d.label


def test_readme_example_is_the_bundled_models_answer_to_the_bench_image() -> None:
    """The example's detections are what the model answers for the JPEG the headline's latency
    was measured on; its timings are that run's per-stage p50s."""
    from bench.images import bench_images
    from export.postprocess import candidate_config
    from export.runtime import OnnxDetector
    from service.schemas import ModelRef, detect_response
    from service.settings import Settings

    bench = json.loads(sync_docs.LATENCY_JSON.read_text())
    photo = REPO / bench["command"].split("--image ", 1)[1].split()[0]
    if not photo.exists():
        pytest.skip(f"{photo} (the benchmark's photo) is not on this machine")
    data = bench_images(photo)[0][sync_docs.EXAMPLE_IMAGE]
    assert len(data) == bench["images"]["jpeg_bytes"][sync_docs.EXAMPLE_IMAGE]  # the same JPEG
    detector = OnnxDetector(REPO / "models" / "default.onnx", threads=1)
    s = Settings()  # the service's defaults: score threshold, cap, NMS IoU
    cfg = candidate_config(s.score_threshold, s.max_detections, s.nms_iou, None)
    result = detector.detect_bytes(data, cfg)
    served = ModelRef(name="default", version=detector.metadata.version)  # models/default.onnx
    response = detect_response(result, served, detector.metadata.class_names, {}).model_dump(
        mode="json")  # fmt: skip
    del response["timings_ms"]
    assert response == sync_docs.EXAMPLE
    example = json.loads(sync_docs.example_block().split("```json\n", 1)[1].split("```", 1)[0])
    measured = bench["runs"][0]["server_stages_p50_ms"]["500x375"]
    assert example["timings_ms"] == {k: measured.get(k, 0.0) for k in STAGES}
