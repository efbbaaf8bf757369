"""Checks the builder makes before it spends work on a model: the model's own declarations against what its
ops make, and the memory an engine would need against what the target device has."""

from __future__ import annotations

import logging

from ..device import Target, check_memory as check_device_memory
from ..errors import ModelError
from ..ir import DType, Graph, Node, Tensor, format_shape
from ..ops import REGISTRY

log = logging.getLogger(__name__)

# id(tensor) -> (tensor, the node that makes it, declared dtype, declared shape)
Declared = dict[int, tuple[Tensor, Node, DType | None, tuple | None]]


def declared_types(graph: Graph) -> Declared:
    """The types a model declares for its node outputs (ONNX outputs and value_info), taken before shape
    inference replaces them with what the ops make."""
    found: Declared = {}
    for g in graph.walk():
        for node in g.nodes:
            for t in node.outputs:
                if t.dtype is not None or t.shape is not None:
                    found[id(t)] = (t, node, t.dtype, t.shape)
    return found


def check_declared(graph: Graph, declared: Declared) -> None:
    """Refuse a declared dtype that disagrees with what inference found: onnxruntime and onnx's full checker
    refuse such models, and building one would silently change the declared type. A declared rank or static dim
    that disagrees is logged: onnxruntime only warns, and exporters store what ONNX's own inference said, which
    is wrong for some ops (pools with ceil_mode, Upsample-7)."""
    outputs = {id(t) for t in graph.outputs}
    for key, (t, node, dtype, shape) in declared.items():
        what = (f"{'graph output' if key in outputs else 'value'} {t.name!r}, made by node {node.name!r} "
                f"({node.op}),")
        if dtype is not None and t.dtype is not None and dtype != t.dtype:
            raise ModelError(f"{what} is declared {dtype} in the model, but the op makes {t.dtype}; "
                             "fix the declaration (or add a Cast)")
        if shape is None or t.shape is None or not t.is_tensor:
            continue
        # NOTE: a declared 0 is not compared: some exporters write it for a dynamic dim
        if len(shape) != len(t.shape) or any(isinstance(d, int) and d > 0 and isinstance(e, int) and d != e
                                             for d, e in zip(shape, t.shape)):
            log.warning("%s is declared %s in the model, but the op makes %s; braze goes by the op", what,
                        format_shape(shape), format_shape(t.shape))


def check_memory(graph: Graph, target: Target, arena_size: int | None = None) -> None:
    """Refuse an engine whose tensors cannot fit the target's memory (braze/device.py says what it has).
    Before the memory plan (`arena_size` None), the largest activation must fit, beside the weights on a GPU;
    after it, the arena."""
    weights = graph.weight_bytes()
    if arena_size is not None:
        check_device_memory(arena_size, weights, target, what="the engine")
        return
    activations = [t for t in graph.tensors().values() if t.is_static and not t.is_constant]
    largest = max(activations, key=lambda t: t.nbytes, default=None)
    if largest is not None:
        beside = "beside the weights" if target.is_cuda else "alone"  # NOTE: weights count on a GPU only
        check_device_memory(largest.nbytes, weights, target,
                            what=f"the engine's tensor {largest.name!r} {largest.type_str()} {beside}")


def check_quantization(graph: Graph) -> None:
    """Refuse a constant quantization scale (an op's scale_inputs: QuantizeLinear's, QLinearConv's, ...) that is
    zero, negative or not finite: onnxruntime runs such a model and returns zeros, infinities or NaN for the whole
    tensor, which is never what it means."""
    for g in graph.walk():
        for node in g.nodes:
            opdef = REGISTRY.find(node)
            for i in sorted(opdef.scale_inputs) if opdef is not None else ():
                scale = node.input(i)
                if scale is None or scale.value is None or not scale.value.is_floating_point():
                    continue
                bad = ~(scale.value.float() > 0) | scale.value.float().isinf()
                if bool(bad.any()):
                    at = int(bad.reshape(-1).nonzero()[0])
                    value = float(scale.value.reshape(-1)[at])
                    where = f" at index {at} of {scale.value.numel()}" if scale.value.numel() > 1 else ""
                    raise ModelError(f"node {node.name!r} ({node.op}): its scale {scale.name!r} is {value:.6g}{where}; "
                                     f"a quantization scale must be positive and finite")
