"""Read and write ModelMetadata in an ONNX ModelProto's metadata_props (onnx only, no torch)."""

from __future__ import annotations

import onnx

from export.metadata import ModelMetadata


def read_metadata(model_proto: onnx.ModelProto) -> ModelMetadata:
    """The project metadata stored in `model_proto` (ModelMetadataError when absent)."""
    props = {p.key: p.value for p in model_proto.metadata_props}
    return ModelMetadata.from_strings(props)


def write_metadata(model_proto: onnx.ModelProto, meta: ModelMetadata) -> None:
    """Replace the project's keys in `metadata_props` by `meta` (other keys are kept)."""
    strings = meta.to_strings()
    kept = [(p.key, p.value) for p in model_proto.metadata_props if p.key not in strings]
    del model_proto.metadata_props[:]
    for key, value in [*kept, *strings.items()]:
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value
