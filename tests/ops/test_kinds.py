"""braze's vocabulary is named once (braze/ops/kinds.py, epilogue.py, the OpDef traits) and derived everywhere:
no fused-kind string outside kinds.py, every activation of the table computed as the op it stands for, and
every version of an op declaring the same traits."""

import json
import math
import re
from pathlib import Path

import pytest
import torch

from braze.ir import DType, Node, Tensor
from braze.ops import MODULES, REGISTRY
from braze.ops.epilogue import ACTIVATION_OPS, ACTIVATION_TABLE, ACTIVATIONS, activate, subset
from braze.ops.kinds import DOMAIN, Kind, is_kind
from braze.ops.views import is_view_op
from braze.passes.util import activation_of
from braze.testing import assert_close

BRAZE = Path(__file__).resolve().parents[2] / "braze"

# Strings equal to a kind's name that mean something else, with why.
OTHER_MEANINGS = {
    ("ops/attention.py", Kind.ATTENTION): "ONNX's own Attention op (domain '')",
    ("ops/msquant.py", Kind.QGEMM): "com.microsoft's QGemm (onnxruntime's QOperator format)",
}


def test_no_fused_kind_is_spelled_outside_the_vocabulary():
    pattern = re.compile("[\"'](" + "|".join(re.escape(k.value) for k in Kind) + ")[\"']")
    found = []
    for path in sorted(BRAZE.rglob("*.py")):
        rel = path.relative_to(BRAZE).as_posix()
        if rel == "ops/kinds.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for m in pattern.finditer(line):
                if (rel, m.group(1)) not in OTHER_MEANINGS:
                    found.append(f"braze/{rel}:{number}: {line.strip()}")
    assert not found, "name braze's op kinds through braze.ops.kinds.Kind:\n" + "\n".join(found)


def test_kinds_are_the_ops_of_braze_domain_and_plain_strings_in_plans():
    assert set(REGISTRY.names(DOMAIN)) == {k.value for k in Kind}
    assert all(type(d.name) is str for k in Kind for d in REGISTRY.versions(k, DOMAIN))
    assert json.loads(json.dumps({"op": Kind.FUSED_CONV})) == {"op": "FusedConv"}
    read_back = Node("FusedConv", [], [], name="conv", domain="braze")
    assert read_back.op == Kind.FUSED_CONV and is_kind(read_back, Kind.FUSED_GEMM, Kind.FUSED_CONV)
    assert not is_kind(Node("FusedConv", [], [], name="conv", domain="com.microsoft"), Kind.FUSED_CONV)


# ---- the activation table --------------------------------------------------------------------------------------

def planted(seed: int) -> torch.Tensor:
    """Random values over the activations' interesting range, with NaN and both infinities among them."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(6, 50, generator=g) * 16 - 8).reshape(-1)
    x[torch.randperm(x.numel(), generator=g)[:30]] = torch.tensor([math.nan, math.inf, -math.inf]).repeat(10)
    return x.reshape(6, 50)


# Constants to try besides the defaults, per activation with constants.
OTHER_PARAMS = {"clip": [[-0.5, 2.0], [-math.inf, 1.0], [0.0, math.inf]], "leaky_relu": [[0.3], [-1.5]],
                "hardsigmoid": [[0.5, 0.1], [-0.25, 0.6]], "elu": [[0.5], [2.0]]}
CASES = [(a.name, d.since, params) for a in ACTIVATION_TABLE.values() if a.op is not None
         for d in REGISTRY.versions(a.op, a.domain)
         for params in [[default for _, default in a.params]] + OTHER_PARAMS.get(a.name, [])]


def as_node_of(name: str, since: int, params: list[float], x: Tensor) -> tuple[Node, list[torch.Tensor | None]]:
    """A node of the op `name` stands for (at its definition `since`) with `params`, and its run-time inputs."""
    a = ACTIVATION_TABLE[name]
    attrs = dict(a.attrs)
    inputs: list[Tensor | None] = [x]
    if a.params_as_inputs_since is not None and since >= a.params_as_inputs_since:
        inputs += [Tensor(f"p{i}", DType.float32, (), torch.tensor(p)) for i, p in enumerate(params)]
    else:
        attrs.update((key, p) for (key, _), p in zip(a.params, params))
    node = Node(a.op, inputs, [Tensor("y", DType.float32, x.shape)], attrs, name=name, domain=a.domain, version=since)
    return node, [None if t is None else t.value for t in inputs]


@pytest.mark.parametrize("name,since,params", CASES, ids=[f"{n}-{s}-{p}" for n, s, p in CASES])
def test_every_activation_is_its_op(name, since, params):
    """activate() computes what the op computes, NaN and infinities included, at every version of the op."""
    x = planted(len(CASES))
    node, inputs = as_node_of(name, since, params, Tensor("x", DType.float32, tuple(x.shape)))
    opdef = REGISTRY.for_node(node)
    inputs[0] = x
    expected = opdef.run(inputs, opdef.parse_attrs(node.attrs, name), 1)[0]
    assert_close(activate(x.clone(), name, params), expected, name=f"activate({name!r}, {params})")


@pytest.mark.parametrize("name,since,params", CASES, ids=[f"{n}-{s}-{p}" for n, s, p in CASES])
def test_the_passes_recognize_every_activation(name, since, params):
    node, _ = as_node_of(name, since, params, Tensor("x", DType.float32, (2, 3)))
    assert activation_of(node) == (name, params)


def test_the_table_names_every_activation_once():
    x = planted(1)
    assert ACTIVATIONS[0] == "none" and activate(x, "none", []) is x
    assert len(set(ACTIVATIONS)) == len(ACTIVATIONS)
    assert set(ACTIVATION_OPS) == {a.op for a in ACTIVATION_TABLE.values() if a.op is not None}
    assert [ACTIVATION_TABLE[n].code for n in ACTIVATIONS] == list(range(len(ACTIVATIONS)))
    not_one = Node("Gelu", [], [], {"approximate": "cubic"}, name="g")
    assert activation_of(not_one) is None
    assert activation_of(Node("Relu", [], [], name="r", domain="com.microsoft")) is None


def test_activate_refuses_what_the_table_lacks():
    x = planted(2)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        activate(x, "swish", [])
    with pytest.raises(ValueError, match=r"'leaky_relu' takes 1 act_params \(alpha\), got 0"):
        activate(x, "leaky_relu", [])
    with pytest.raises(ValueError, match="the test backend names activations the table lacks: swish"):
        subset(["relu", "swish"], "the test backend")


def test_backend_subsets_come_from_the_table():
    from braze.kernels.cpu.conv import ONEDNN_ACTIVATIONS, onednn_post_op

    assert ONEDNN_ACTIVATIONS == {name for name in ACTIVATIONS if onednn_post_op(name, [0.5]) is not None}
    assert onednn_post_op("leaky_relu", [0.25]) == ("leaky_relu", [0.25], "")
    pytest.importorskip("triton")
    from braze.kernels.triton.gemm import ACTIVATIONS as TRITON

    assert TRITON and all(ACTIVATION_TABLE[name].code == code for name, code in TRITON.items())


# ---- op traits -------------------------------------------------------------------------------------------------

TRAITS = ("elementwise", "keeps_layout", "view", "commutes_with_quantize")


def test_every_version_of_an_op_declares_the_same_traits():
    declared: dict[str, set[tuple]] = {}
    for d in (d for module in MODULES for d in module.OPS):
        declared.setdefault(d.key, set()).add(tuple(getattr(d, t) for t in TRAITS))
    differ = {key: traits for key, traits in declared.items() if len(traits) > 1}
    assert not differ, f"versions of an op declare different traits {TRAITS}: {differ}"


def node_of(op: str, *inputs: Tensor | None, domain: str = "", **attrs) -> Node:
    return Node(op, list(inputs), [Tensor("y", DType.float32, (1, 2, 4, 4))], attrs, name=op.lower(), domain=domain)


def test_traits_say_what_passes_may_do():
    x = Tensor("x", DType.float32, (1, 2, 4, 4))
    const = Tensor("i", DType.int64, (1,), torch.tensor([0]))
    runtime = Tensor("j", DType.int64, (1,))

    def opdef(n: Node):
        return REGISTRY.for_node(n)

    relu = node_of("Relu", x)
    assert opdef(relu).elementwise and opdef(relu).keeps_layout and opdef(relu).quantize_commutes(relu)
    assert opdef(node_of("SiLU", x, domain=DOMAIN)).elementwise
    assert opdef(node_of("Pointwise", x, domain=DOMAIN)).keeps_layout
    assert not opdef(node_of("Mod", x, x)).elementwise  # the Pointwise kernels do not take it
    assert is_view_op(node_of("Reshape", x, const)) and not is_view_op(node_of("Concat", x, x, axis=1))
    assert not is_view_op(node_of("NoSuchOp", x))
    gather = node_of("Gather", x, const)
    assert opdef(gather).quantize_commutes(gather)
    assert not opdef(gather).quantize_commutes(node_of("Gather", x, runtime))
    nearest, linear = node_of("Resize", x, mode="nearest"), node_of("Resize", x, mode="linear")
    assert opdef(nearest).quantize_commutes(nearest) and not opdef(linear).quantize_commutes(linear)
    average = node_of("AveragePool", x)
    assert opdef(average).keeps_layout and not opdef(average).quantize_commutes(average)
