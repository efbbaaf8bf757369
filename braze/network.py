"""Network: build a braze graph layer by layer from Python, as TensorRT's network definition does.

    net = braze.Network("tiny")
    x = net.add_input("x", "float32", (1, 3, 32, 32))
    w = net.add_constant(np.random.randn(8, 3, 3, 3).astype(np.float32), "conv.w")
    y = net.relu(net.conv(x, w, pads=1))
    net.mark_output(net.global_average_pool(y), "out")
    engine = braze.Builder("cpu").build(net)

Every layer is checked when it is added: its attributes against the op's definition and its
input shapes against the op's shape rule, so a mistake is reported at the line that made it.
Each method returns the layer's output Tensor (a list for several outputs).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
import torch

from .errors import BrazeError, UnsupportedError
from .ir import DType, Graph, Node, Tensor, to_torch
from .ops import REGISTRY
from .ops.infer import VALUE_LIMIT, infer_node

Ints = int | Sequence[int]


class Network:
    def __init__(self, name: str = "network", opset: int | None = None):
        self.graph = Graph(name=name, opset=opset or onnx.defs.onnx_opset_version())
        self._known: dict[int, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    # -- inputs, constants, outputs ------------------------------------------------------------

    def add_input(self, name: str, dtype: DType | str | Any, shape: Sequence[int | str]) -> Tensor:
        self._check_free(name)
        t = Tensor(name, DType.parse(dtype), tuple(shape))
        self.graph.inputs.append(t)
        return t

    def add_constant(self, value: np.ndarray | torch.Tensor | float | int | Sequence[Any], name: str | None = None) -> Tensor:
        if isinstance(value, torch.Tensor):
            data = value.detach().cpu().clone()
            dtype = DType.from_torch(data.dtype)
        else:
            array = np.asarray(value)
            data, dtype = to_torch(array), DType.from_numpy(array.dtype)  # NOTE: an int4 array gives an int8 tensor
        name = name or self._fresh("const")
        self._check_free(name)
        t = Tensor(name, dtype, tuple(data.shape), data)
        if data.numel() <= VALUE_LIMIT:
            self._known[id(t)] = data
        return t

    def mark_output(self, tensor: Tensor, name: str | None = None) -> Tensor:
        if name is not None and name != tensor.name:
            self._check_free(name)
            tensor.name = name
        self.graph.outputs.append(tensor)
        return tensor

    # -- the generic layer -----------------------------------------------------------------------

    def add_layer(self, op: str, inputs: Sequence[Tensor | None], attrs: dict[str, Any] | None = None, *,
                  name: str | None = None, outputs: int = 1, domain: str = "") -> Tensor | list[Tensor]:
        """Add any op braze knows: ONNX's at this network's opset, or braze's own (domain "braze")."""
        opdef = REGISTRY.resolve(op, domain, self.graph.opset)
        if opdef is None:
            raise UnsupportedError(f"braze has no op {op!r} at opset {self.graph.opset}")
        name = name or self._fresh(op.lower())
        where = f"layer {name!r} ({op})"
        for i, t in enumerate(inputs):
            if t is not None and not isinstance(t, Tensor):
                raise BrazeError(f"{where}: input {i} is a {type(t).__name__}, not a Tensor of this network "
                                 "(wrap numbers and arrays with add_constant)")
        opdef.check_arity(len(inputs), where)
        node = Node(op, list(inputs), [Tensor(f"{name}:{i}" if outputs > 1 else name) for i in range(outputs)],
                    opdef.parse_attrs(attrs or {}, where), name=name, domain=domain, version=opdef.since)
        values = [None if t is None else self._known.get(id(t)) for t in inputs]
        for t, r in zip(node.outputs, infer_node(opdef, node, values)):
            t.dtype, t.shape = r.dtype, r.shape
            if r.value is not None and r.value.numel() <= VALUE_LIMIT:
                self._known[id(t)] = r.value
        self.graph.nodes.append(node)
        return node.outputs if outputs > 1 else node.outputs[0]

    # -- convolution, matrix products, pooling -----------------------------------------------------

    def conv(self, x: Tensor, weight: Tensor, bias: Tensor | None = None, *, strides: Ints = 1, pads: Ints = 0,
             dilations: Ints = 1, groups: int = 1, name: str | None = None) -> Tensor:
        spatial = len(weight.shape or ()) - 2
        attrs = {"strides": _spatial(strides, spatial), "pads": _spatial(pads, spatial) * 2,
                 "dilations": _spatial(dilations, spatial), "group": groups}
        return self.add_layer("Conv", [x, weight] + ([bias] if bias is not None else []), attrs, name=name)

    def matmul(self, a: Tensor, b: Tensor, *, name: str | None = None) -> Tensor:
        return self.add_layer("MatMul", [a, b], name=name)

    def gemm(self, a: Tensor, b: Tensor, c: Tensor | None = None, *, alpha: float = 1.0, beta: float = 1.0,
             trans_a: bool = False, trans_b: bool = False, name: str | None = None) -> Tensor:
        attrs = {"alpha": alpha, "beta": beta, "transA": int(trans_a), "transB": int(trans_b)}
        return self.add_layer("Gemm", [a, b] + ([c] if c is not None else []), attrs, name=name)

    def max_pool(self, x: Tensor, kernel: Ints, *, strides: Ints | None = None, pads: Ints = 0,
                 name: str | None = None) -> Tensor:
        return self._pool("MaxPool", x, kernel, strides, pads, name)

    def average_pool(self, x: Tensor, kernel: Ints, *, strides: Ints | None = None, pads: Ints = 0,
                     name: str | None = None) -> Tensor:
        return self._pool("AveragePool", x, kernel, strides, pads, name)

    def global_average_pool(self, x: Tensor, *, name: str | None = None) -> Tensor:
        return self.add_layer("GlobalAveragePool", [x], name=name)

    def _pool(self, op: str, x: Tensor, kernel: Ints, strides: Ints | None, pads: Ints, name: str | None) -> Tensor:
        spatial = len(x.shape or ()) - 2
        k = _spatial(kernel, spatial)
        attrs = {"kernel_shape": k, "strides": _spatial(strides if strides is not None else k, spatial),
                 "pads": _spatial(pads, spatial) * 2}
        return self.add_layer(op, [x], attrs, name=name)

    # -- activations and normalization -----------------------------------------------------------

    def relu(self, x: Tensor, *, name: str | None = None) -> Tensor:
        return self.add_layer("Relu", [x], name=name)

    def sigmoid(self, x: Tensor, *, name: str | None = None) -> Tensor:
        return self.add_layer("Sigmoid", [x], name=name)

    def tanh(self, x: Tensor, *, name: str | None = None) -> Tensor:
        return self.add_layer("Tanh", [x], name=name)

    def gelu(self, x: Tensor, *, approximate: str = "none", name: str | None = None) -> Tensor:
        return self.add_layer("Gelu", [x], {"approximate": approximate}, name=name)

    def leaky_relu(self, x: Tensor, alpha: float = 0.01, *, name: str | None = None) -> Tensor:
        return self.add_layer("LeakyRelu", [x], {"alpha": alpha}, name=name)

    def clip(self, x: Tensor, low: float | None = None, high: float | None = None, *, name: str | None = None) -> Tensor:
        bound = [None if v is None else self.add_constant(np.array(v, dtype=x.dtype.numpy)) for v in (low, high)]  # type: ignore[union-attr]
        return self.add_layer("Clip", [x, *bound], name=name)

    def softmax(self, x: Tensor, axis: int = -1, *, name: str | None = None) -> Tensor:
        return self.add_layer("Softmax", [x], {"axis": axis}, name=name)

    def batch_norm(self, x: Tensor, scale: Tensor, bias: Tensor, mean: Tensor, var: Tensor, *,
                   epsilon: float = 1e-5, name: str | None = None) -> Tensor:
        return self.add_layer("BatchNormalization", [x, scale, bias, mean, var], {"epsilon": epsilon}, name=name)

    def layer_norm(self, x: Tensor, scale: Tensor, bias: Tensor | None = None, *, axis: int = -1,
                   epsilon: float = 1e-5, name: str | None = None) -> Tensor:
        inputs = [x, scale] + ([bias] if bias is not None else [])
        return self.add_layer("LayerNormalization", inputs, {"axis": axis, "epsilon": epsilon}, name=name)

    # -- elementwise -----------------------------------------------------------------------------

    def add(self, a: Tensor, b: Tensor, *, name: str | None = None) -> Tensor:
        return self.add_layer("Add", [a, b], name=name)

    def sub(self, a: Tensor, b: Tensor, *, name: str | None = None) -> Tensor:
        return self.add_layer("Sub", [a, b], name=name)

    def mul(self, a: Tensor, b: Tensor, *, name: str | None = None) -> Tensor:
        return self.add_layer("Mul", [a, b], name=name)

    def div(self, a: Tensor, b: Tensor, *, name: str | None = None) -> Tensor:
        return self.add_layer("Div", [a, b], name=name)

    # -- shapes ----------------------------------------------------------------------------------

    def reshape(self, x: Tensor, shape: Sequence[int], *, name: str | None = None) -> Tensor:
        target = self.add_constant(np.asarray(shape, dtype=np.int64))
        return self.add_layer("Reshape", [x, target], name=name)

    def flatten(self, x: Tensor, axis: int = 1, *, name: str | None = None) -> Tensor:
        return self.add_layer("Flatten", [x], {"axis": axis}, name=name)

    def transpose(self, x: Tensor, perm: Sequence[int], *, name: str | None = None) -> Tensor:
        return self.add_layer("Transpose", [x], {"perm": list(perm)}, name=name)

    def concat(self, xs: Sequence[Tensor], axis: int, *, name: str | None = None) -> Tensor:
        return self.add_layer("Concat", list(xs), {"axis": axis}, name=name)

    # -- helpers -----------------------------------------------------------------------------------

    def _fresh(self, base: str) -> str:
        taken = set(self.graph.tensors()) | {n.name for n in self.graph.nodes}
        while True:
            self._counts[base] = self._counts.get(base, 0) + 1
            candidate = f"{base}_{self._counts[base]}"
            if candidate not in taken:
                return candidate

    def _check_free(self, name: str) -> None:
        if name in self.graph.tensors():
            raise BrazeError(f"network {self.graph.name!r} already has a tensor named {name!r}")

    def __repr__(self) -> str:
        return f"Network({self.graph.name!r}, {len(self.graph.nodes)} layers)"


def _spatial(value: Ints, n: int) -> list[int]:
    return [int(value)] * n if isinstance(value, int) else [int(v) for v in value]
