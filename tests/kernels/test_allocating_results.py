"""Tactics that return their results (no planned output) never hand back a view of an input: the memory
plan reuses an input's memory after its last reader, so an aliased result would be overwritten. And the
builder's check of a candidate's output rejects NaNs and infinities the reference does not have."""

import pytest
import torch

from braze.build.tactics import _agrees
from braze.device import Target
from braze.ir import DType, Node, Tensor
from braze.kernels.cpu.reference import ReferenceTactic
from braze.kernels.cuda.generic import TorchTactic


def node(op: str, shape_in, shape_out, attrs=None, extra=()):
    return Node(op, [Tensor("x", DType.float32, shape_in), *extra], [Tensor("y", DType.float32, shape_out)],
                attrs or {}, name=op.lower())


CASES = [
    node("Transpose", (2, 3, 4), (4, 3, 2), {"perm": [2, 1, 0]}),
    node("Identity", (2, 3), (2, 3)),
    node("Flatten", (2, 3, 4), (2, 12), {"axis": 1}),
    node("Reshape", (2, 3, 4), (6, 4), extra=[Tensor("s", DType.int64, (2,), torch.tensor([6, 4]))]),
]


@pytest.mark.parametrize("layer", CASES, ids=lambda n: n.op)
@pytest.mark.parametrize("tactic", [TorchTactic(), ReferenceTactic()], ids=lambda t: t.name)
def test_returned_results_have_memory_of_their_own(layer, tactic):
    x = torch.randn(layer.inputs[0].shape, generator=torch.Generator().manual_seed(1))
    inputs = [x] + [t.value for t in layer.inputs[1:]]
    kernel = tactic.compile(layer, {"device": "cuda"}, Target.parse("cpu"))
    (y,) = kernel(inputs, [None])
    assert y.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
    expected = y.clone()
    x.fill_(7.0)  # the input's memory reused by a later layer
    assert torch.equal(y, expected) and tuple(y.shape) == layer.outputs[0].shape


def test_candidate_check_rejects_nans_the_reference_does_not_have():
    layer = node("Relu", (8,), (8,))
    ref = torch.randn(8, generator=torch.Generator().manual_seed(2))
    assert _agrees([ref.clone()], [ref], layer)
    assert not _agrees([ref + 1], [ref], layer)
    broken = ref.clone()
    broken[3] = float("nan")
    assert not _agrees([broken], [ref], layer)
    overflow = ref.clone()
    overflow[0] = float("inf")
    assert not _agrees([overflow], [ref], layer)
    ref_nan = ref.clone()
    ref_nan[5] = float("nan")
    assert _agrees([ref_nan.clone()], [ref_nan], layer)
    assert not _agrees([ref.clone()], [ref_nan], layer)
