"""Small hostile ONNX files built with onnx.helper (never committed as binaries), each carrying
a real model's metadata so the metadata check passes and the load itself is what's hostile.

    PYTHONPATH=$PWD python -m bench.attacks.hostile_models SRC.onnx OUT_DIR
writes loop.onnx, const_of_shape.onnx and extra_class.onnx (3 class names) there.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from export.metadata import INPUT_NAME, OUTPUT_NAMES


def _onnx() -> Any:
    import onnx  # the dev extra; the service never imports it

    return onnx


def _save(nodes: list[Any], initializers: list[Any], meta_from: Path, out: Path) -> Path:
    """A graph images -> (cls_logits, box_distances, centerness_logits) of `nodes`, with the
    metadata_props of the ONNX file `meta_from`."""
    onnx = _onnx()
    h = onnx.helper
    f32 = onnx.TensorProto.FLOAT
    images = h.make_tensor_value_info(INPUT_NAME, f32, ["batch", 3, "height", "width"])
    outputs = [h.make_tensor_value_info(name, f32, None) for name in OUTPUT_NAMES]
    graph = h.make_graph(nodes, "hostile", [images], outputs, initializers)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    for prop in onnx.load(str(meta_from), load_external_data=False).metadata_props:
        model.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(model, str(out))
    return out


def _tail(h: Any, source: str) -> list[Any]:
    """The three outputs from one tensor (so no node is pruned as unused)."""
    return [h.make_node("Identity", [source], [name]) for name in OUTPUT_NAMES]


def endless_loop(meta_from: Path, out: Path, iterations: int = 10**15) -> Path:
    """A Loop of `iterations` steps over a value computed from the input (runs at inference,
    so it hangs the warm-up, not the session creation)."""
    onnx = _onnx()
    h = onnx.helper
    f32, i64, b = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64, onnx.TensorProto.BOOL
    body = h.make_graph(
        [h.make_node("Identity", ["cond_in"], ["cond_out"]),
         h.make_node("Add", ["v_in", "one"], ["v_out"])],
        "body",
        [h.make_tensor_value_info("i", i64, []), h.make_tensor_value_info("cond_in", b, []),
         h.make_tensor_value_info("v_in", f32, None)],
        [h.make_tensor_value_info("cond_out", b, []), h.make_tensor_value_info("v_out", f32, None)],
        [h.make_tensor("one", f32, [], [1.0])],
    )  # fmt: skip
    nodes = [
        h.make_node("ReduceMean", [INPUT_NAME], ["v0"], keepdims=1),
        h.make_node("Loop", ["trips", "cond", "v0"], ["v_end"], body=body),
        *_tail(h, "v_end"),
    ]
    inits = [h.make_tensor("trips", i64, [], [iterations]), h.make_tensor("cond", b, [], [True])]
    return _save(nodes, inits, meta_from, out)


def constant_of_shape(meta_from: Path, out: Path, side: int = 16384) -> Path:
    """ConstantOfShape([side, side]) of float32 (side 16384: 1 GiB) that ORT's constant folding
    materialises while it creates the session."""
    h = _onnx().helper
    i64 = _onnx().TensorProto.INT64
    nodes = [
        h.make_node("ConstantOfShape", ["shape"], ["big"],
                    value=h.make_tensor("v", _onnx().TensorProto.FLOAT, [1], [1.0])),
        h.make_node("ReduceSum", ["big"], ["total"], keepdims=1),
        h.make_node("ReduceMean", [INPUT_NAME], ["m"], keepdims=1),
        h.make_node("Add", ["m", "total"], ["sum"]),
        *_tail(h, "sum"),
    ]  # fmt: skip
    return _save(nodes, [h.make_tensor("shape", i64, [2], [side, side])], meta_from, out)


def with_metadata(src: Path, dst: Path, **props: str) -> Path:
    """A copy of the ONNX file `src` with these metadata_props replaced (or added)."""
    onnx = _onnx()
    proto = onnx.load(str(src))
    for prop in proto.metadata_props:
        if prop.key in props:
            prop.value = props.pop(prop.key)
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(dst))
    return dst


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    src, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    endless_loop(src, out_dir / "loop.onnx")
    constant_of_shape(src, out_dir / "const_of_shape.onnx")
    with_metadata(src, out_dir / "extra_class.onnx", class_names='["a", "b", "c"]')
