"""Every CUDA tactic and configuration against the layer's reference implementation (float32 on the
CPU), on random inputs, in fp32, fp16 and bf16."""

import numpy as np
import onnx.helper as oh
import onnx.numpy_helper as onh
import pytest
import torch

import braze
from braze.device import Target
from braze.kernels import tactics_for
from braze.ops import REGISTRY
from braze.testing import rel_l2, tolerance

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _graph(nodes, inputs, outputs, inits, opset=17):
    model = oh.make_model(oh.make_graph(nodes, "g", inputs, outputs, inits), opset_imports=[oh.make_opsetid("", opset)])
    return braze.parse_onnx(model, check=False)


def _layers(model_graph, shapes, precision):
    """The optimized, lowered graph the builder would tune (built for the CPU: no tuning happens)."""
    engine = braze.Builder("cpu").build(model_graph, braze.BuilderConfig(shapes=shapes, precision=precision,
                                                                         optimization_level=2))
    return engine.graph


def _check_all_tactics(graph, feeds, precision):
    """Run every (tactic, config) that supports each layer on CUDA and compare with the float64 reference."""
    target = Target.parse("cuda")
    checked = 0
    values = {}
    for t, v in zip(graph.inputs, feeds):
        values[id(t)] = v
    for node in graph.nodes:
        args = [None if t is None else (t.value if t.value is not None else values[id(t)]) for t in node.inputs]
        lowered = REGISTRY.for_node(node).run(args, node.attrs, len(node.outputs))
        if node.op == "Pointwise":  # its body's constants are in the lowered type: the reference runs in it too
            ref = [r.float() for r in lowered]
        else:
            ref = REGISTRY.for_node(node).run([None if a is None else a.float() if a.is_floating_point() else a
                                               for a in args], node.attrs, len(node.outputs))
        for t, r in zip(node.outputs, lowered):
            values[id(t)] = r
        for tactic in tactics_for(target):
            if not tactic.supports(node, target) or tactic.name in ("view", "concat_in_place"):
                continue
            for config in tactic.configs(node, target, 3):
                if config.get("device") == "cpu":
                    continue
                kernel = tactic.compile(node, config, target)
                dev = [None if a is None or (i in tactic.owned_inputs and t is not None and t.is_constant)
                       else a.to("cuda") for i, (a, t) in enumerate(zip(args, node.inputs))]
                outs = [torch.full(t.shape, float("nan"), dtype=t.dtype.torch, device="cuda")
                        if tactic.writes_output else None for t in node.outputs]
                try:
                    produced = kernel(dev, outs)
                except RuntimeError as e:
                    if "No available kernel" in str(e) or "not supported" in str(e).lower():
                        continue
                    raise
                got = produced if produced is not None else outs
                for g, r, t in zip(got, ref, node.outputs):
                    err = rel_l2(g.float().cpu(), r)
                    bound = tolerance(t.dtype).rel_l2 * (10 if precision == "fp32" else 1)
                    assert err <= bound, f"{node.name} {node.op} {tactic.name} {config}: rel L2 {err:.3g} > {bound}"
                checked += 1
    return checked


def conv_model(k, stride, pads, group, act, residual, c=16, m=32):
    rng = np.random.default_rng(0)
    inits = [onh.from_array(rng.standard_normal((m, c // group, k, k)).astype(np.float32) * 0.2, "w"),
             onh.from_array(rng.standard_normal(m).astype(np.float32) * 0.1, "b")]
    nodes = [oh.make_node("Conv", ["x", "w", "b"], ["c"], strides=[stride, stride], pads=pads, group=group)]
    last = "c"
    if residual:
        nodes.append(oh.make_node("Add", ["c", "r"], ["s"]))
        last = "s"
    if act == "relu":
        nodes.append(oh.make_node("Relu", [last], ["y"]))
    elif act == "clip":
        nodes.append(oh.make_node("Clip", [last, "lo", "hi"], ["y"]))
        inits += [onh.from_array(np.array(0, np.float32), "lo"), onh.from_array(np.array(6, np.float32), "hi")]
    else:
        nodes.append(oh.make_node("Identity", [last], ["y"]))
    ins = [oh.make_tensor_value_info("x", 1, [2, c, 14, 14])]
    if residual:
        ins.append(oh.make_tensor_value_info("r", 1, None))
    return _graph(nodes, ins, [oh.make_tensor_value_info("y", 1, None)], inits)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("k,stride,pads,group,act,residual", [
    (3, 1, [1, 1, 1, 1], 1, "relu", False),
    (3, 2, [1, 1, 1, 1], 1, "relu", True),
    (1, 1, [0, 0, 0, 0], 1, "relu", False),
    (1, 1, [0, 0, 0, 0], 1, "none", True),
    (3, 1, [1, 1, 1, 1], 16, "clip", False),
    (3, 1, [0, 1, 1, 2], 1, "relu", False),
])
def test_conv_tactics(precision, k, stride, pads, group, act, residual):
    graph = conv_model(k, stride, pads, group, act, residual)
    out = graph.nodes[0]
    shapes = {"x": (2, 16, 14, 14)}
    if residual:
        h = (14 + pads[0] + pads[2] - k) // stride + 1
        shapes["r"] = (2, 32, h, h)
    lowered = _layers(graph, shapes, precision)
    dt = DTYPES[precision]
    feeds = [torch.randn(lowered.inputs[i].shape).to(dt if lowered.inputs[i].dtype.is_floating else torch.int64)
             for i in range(len(lowered.inputs))]
    assert _check_all_tactics(lowered, feeds, precision) >= 2
    assert out is not None


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("act", ["none", "relu", "gelu", "residual"])
def test_gemm_tactics(precision, act):
    rng = np.random.default_rng(1)
    inits = [onh.from_array(rng.standard_normal((96, 80)).astype(np.float32) * 0.1, "w"),
             onh.from_array(rng.standard_normal(80).astype(np.float32), "b")]
    nodes = [oh.make_node("MatMul", ["x", "w"], ["m"]), oh.make_node("Add", ["m", "b"], ["a"])]
    ins = [oh.make_tensor_value_info("x", 1, [3, 37, 96])]
    if act == "relu":
        nodes.append(oh.make_node("Relu", ["a"], ["y"]))
    elif act == "gelu":
        nodes.append(oh.make_node("Gelu", ["a"], ["y"]))
    elif act == "residual":
        nodes.append(oh.make_node("Add", ["a", "r"], ["y"]))
        ins.append(oh.make_tensor_value_info("r", 1, [3, 37, 80]))
    else:
        nodes.append(oh.make_node("Identity", ["a"], ["y"]))
    graph = _graph(nodes, ins, [oh.make_tensor_value_info("y", 1, None)], inits, opset=20)
    lowered = _layers(graph, {}, precision)
    dt = DTYPES[precision]
    feeds = [torch.randn(t.shape).to(dt) for t in lowered.inputs]
    assert _check_all_tactics(lowered, feeds, precision) >= 3


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_tactics(precision, masked):
    from braze.ops.fused import attention

    dt = DTYPES[precision]
    q, v = torch.randn(2, 4, 33, 16).to(dt), torch.randn(2, 4, 33, 16).to(dt)
    kt = torch.randn(2, 4, 16, 33).to(dt)
    mask = (torch.randint(0, 2, (2, 1, 1, 33)) * -10000.0).to(dt) if masked else None
    net = braze.Network("attn")
    ins = [net.add_input(n, dt, x.shape) for n, x in (("q", q), ("k", kt), ("v", v))]
    if masked:
        ins.append(net.add_input("mask", dt, mask.shape))
    out = net.add_layer("Attention", ins, {"scale": 0.25}, domain="braze")
    assert attention is not None and out.shape == (2, 4, 33, 16)
    feeds = [q, kt, v] + ([mask] if masked else [])
    assert _check_all_tactics(net.graph, feeds, precision) >= 2


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_pointwise_tactic(precision):
    ins = [oh.make_tensor_value_info("x", 1, [4, 7, 33]), oh.make_tensor_value_info("m", 7, [4, 1, 33])]
    nodes = [oh.make_node("Cast", ["m"], ["mf"], to=1), oh.make_node("Sub", ["one", "mf"], ["inv"]),
             oh.make_node("Mul", ["inv", "big"], ["bias"]), oh.make_node("Add", ["x", "bias"], ["s"]),
             oh.make_node("Gelu", ["s"], ["g"]), oh.make_node("Mul", ["g", "scale"], ["t"]),
             oh.make_node("Sigmoid", ["t"], ["y"])]
    rng = np.random.default_rng(2)
    inits = [onh.from_array(np.array(1.0, np.float32), "one"), onh.from_array(np.array(-3.0, np.float32), "big"),
             onh.from_array(rng.standard_normal(33).astype(np.float32), "scale")]
    graph = _graph(nodes, ins, [oh.make_tensor_value_info("y", 1, None)], inits, opset=20)
    lowered = _layers(graph, {}, precision)
    assert any(n.op == "Pointwise" for n in lowered.nodes)
    dt = DTYPES[precision]
    feeds = [torch.randn(4, 7, 33).to(dt) if t.name == "x" else torch.randint(0, 2, (4, 1, 33))
             for t in lowered.inputs]
    assert _check_all_tactics(lowered, feeds, precision) >= 1


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("axis,bias", [(-1, True), (-1, False), (-2, True)])
def test_layer_norm_tactics(precision, axis, bias):
    shape = [4, 33, 96]
    normalized = shape[axis:]
    rng = np.random.default_rng(3)
    inits = [onh.from_array(rng.standard_normal(normalized).astype(np.float32), "scale")]
    if bias:
        inits.append(onh.from_array(rng.standard_normal(normalized).astype(np.float32), "bias"))
    node = oh.make_node("LayerNormalization", ["x", "scale", "bias" if bias else ""], ["y"], axis=axis, epsilon=1e-3)
    graph = _graph([node], [oh.make_tensor_value_info("x", 1, shape)], [oh.make_tensor_value_info("y", 1, None)], inits)
    lowered = _layers(graph, {}, precision)
    ln = next(n for n in lowered.nodes if n.op == "LayerNormalization")
    cuda = Target.parse("cuda")
    assert any(t.name == "triton_layernorm" and t.supports(ln, cuda) for t in tactics_for(cuda))
    feeds = [(torch.randn(shape) * 2 + 0.5).to(DTYPES[precision])]
    assert _check_all_tactics(lowered, feeds, precision) >= 6  # every tactic and configuration of each layer
