"""Speed rewrites of exported FCOS graphs for ONNX Runtime CPU: exact, onnx + NumPy only.

Each rewrite leaves the function computed unchanged (fp32: bit-identical outputs on ORT) and
was kept because it measured faster; see bench/RESULTS.md for the numbers.

- `fuse_group_norm_affine`: the TorchScript exporter writes GroupNorm as Reshape ->
  InstanceNormalization -> Reshape -> Mul(gamma) -> Add(beta). The Mul + Add pair (two passes
  over the tensor) becomes one BatchNormalization(scale=gamma, B=beta, mean=0, var=1,
  epsilon=0), i.e. exactly x * gamma + beta in one pass.
- `shapes_from_quantized`: after QDQ quantization, a Shape node reading a DequantizeLinear
  output reads the quantized tensor instead (same shape). Otherwise ORT gives that Shape its
  own copy of the DequantizeLinear, which dequantizes the whole tensor just for its shape.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper


def _constant_array(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    """The value of `name` if it is an initializer, possibly through Identity nodes."""
    producers = {out: node for node in graph.node for out in node.output}
    while name in producers and producers[name].op_type == "Identity":
        name = producers[name].input[0]
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    return None


def remove_unused(graph: onnx.GraphProto) -> None:
    """Drop nodes whose outputs nothing uses, then initializers nothing reads."""
    needed = {out.name for out in graph.output}
    kept: list[onnx.NodeProto] = []
    for node in reversed(list(graph.node)):
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def fuse_group_norm_affine(proto: onnx.ModelProto) -> int:
    """Rewrite InstanceNormalization -> Reshape -> Mul(gamma) -> Add(beta) so that the Mul and
    Add become one BatchNormalization; returns how many were rewritten."""
    graph = proto.graph
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    graph_outputs = {out.name for out in graph.output}
    new_inits: dict[str, onnx.TensorProto] = {}

    def init(name: str, value: np.ndarray) -> str:
        if name not in new_inits:
            new_inits[name] = numpy_helper.from_array(value.astype(np.float32), name)
        return name

    replaced: dict[int, onnx.NodeProto] = {}  # id(Add node) -> BatchNormalization
    removed: set[int] = set()
    for mul in graph.node:
        if mul.op_type != "Mul" or len(mul.input) != 2:
            continue
        reshape = producers.get(mul.input[0])
        norm = producers.get(reshape.input[0]) if reshape is not None else None
        if reshape is None or reshape.op_type != "Reshape" or norm is None:
            continue
        if norm.op_type != "InstanceNormalization":
            continue
        users = consumers[mul.output[0]]
        if len(users) != 1 or users[0].op_type != "Add" or mul.output[0] in graph_outputs:
            continue
        add = users[0]
        other = add.input[1] if add.input[0] == mul.output[0] else add.input[0]
        gamma, beta = _constant_array(graph, mul.input[1]), _constant_array(graph, other)
        if gamma is None or beta is None or gamma.ndim != 3 or gamma.shape != beta.shape:
            continue
        channels = gamma.shape[0]
        if gamma.shape[1:] != (1, 1):
            continue
        bn = onnx.helper.make_node(
            "BatchNormalization",
            [
                mul.input[0],
                init(f"{mul.input[1]}.bn_scale", gamma.reshape(channels)),
                init(f"{other}.bn_bias", beta.reshape(channels)),
                init(f"gn_affine.zeros.{channels}", np.zeros(channels)),
                init(f"gn_affine.ones.{channels}", np.ones(channels)),
            ],
            list(add.output),
            name=f"{add.name or add.output[0]}/gn_affine",
            epsilon=0.0,
        )
        replaced[id(add)] = bn
        removed.add(id(mul))
    if not replaced:
        return 0
    nodes = [replaced.get(id(n), n) for n in graph.node if id(n) not in removed]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits.values())
    remove_unused(graph)
    return len(replaced)


def shapes_from_quantized(proto: onnx.ModelProto) -> int:
    """Point Shape nodes that read a DequantizeLinear output at its quantized input."""
    producers = {out: node for node in proto.graph.node for out in node.output}
    count = 0
    for node in proto.graph.node:
        source = producers.get(node.input[0]) if node.op_type == "Shape" else None
        if source is not None and source.op_type == "DequantizeLinear":
            node.input[0] = source.input[0]
            count += 1
    return count
