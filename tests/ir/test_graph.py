import pytest
import torch

from braze.errors import ModelError
from braze.ir import DType, Graph, Node, Tensor


def chain() -> Graph:
    x = Tensor("x", DType.float32, (2, 3))
    w = Tensor("w", DType.float32, (3,), torch.randn(3))
    a, b, c = Tensor("a"), Tensor("b"), Tensor("c")
    n1 = Node("Add", [x, w], [a], name="n1")
    n2 = Node("Relu", [a], [b], name="n2")
    n3 = Node("Neg", [a], [c], name="dead")
    return Graph(inputs=[x], outputs=[b], nodes=[n2, n3, n1], name="g", opset=17)


def test_toposort_orders_producers_first():
    g = chain()
    g.toposort()
    assert [n.name for n in g.nodes].index("n1") < [n.name for n in g.nodes].index("n2")
    g.verify()


def test_verify_rejects_out_of_order_and_reports_node():
    g = chain()
    with pytest.raises(ModelError, match="n2.*reads 'a' before anything produces it"):
        g.verify()


def test_cleanup_removes_dead_nodes():
    g = chain()
    g.toposort()
    assert g.cleanup() == 1
    assert [n.name for n in g.nodes] == ["n1", "n2"]


def test_toposort_detects_cycle():
    a, b = Tensor("a"), Tensor("b")
    g = Graph(nodes=[Node("Relu", [a], [b], name="p"), Node("Relu", [b], [a], name="q")], outputs=[b])
    with pytest.raises(ModelError, match="cycle"):
        g.toposort()


def test_verify_finds_double_producer_and_missing_output():
    x = Tensor("x", DType.float32, (1,))
    y = Tensor("y")
    g = Graph(inputs=[x], outputs=[y, Tensor("nowhere")],
              nodes=[Node("Relu", [x], [y], name="a"), Node("Neg", [x], [y], name="b")])
    with pytest.raises(ModelError) as info:
        g.verify()
    assert "produced twice" in str(info.value) and "'nowhere' is never produced" in str(info.value)


def test_copy_is_independent_and_printer_is_readable():
    g = chain()
    g.toposort()
    c = g.copy()
    c.nodes[0].outputs[0].name = "renamed"
    assert g.nodes[0].outputs[0].name == "a"
    assert c.nodes[0].inputs[1].value is g.nodes[0].inputs[1].value
    text = str(g)
    assert "graph g (opset 17)" in text and "= Relu(%a)" in text and "# n1" in text


def test_replace_uses_updates_nodes_and_outputs():
    g = chain()
    g.toposort()
    a = g.node_by_name("n1").outputs[0]
    x = g.inputs[0]
    g.replace_uses(a, x)
    assert g.node_by_name("n2").inputs == [x]


def test_dtype_parse_and_mapping():
    assert DType.parse("fp16") is DType.float16
    assert DType.parse(torch.bfloat16) is DType.bfloat16
    assert DType.from_numpy("int64") is DType.int64
    assert DType.float32.itemsize == 4 and DType.bool.torch is torch.bool
    with pytest.raises(TypeError):
        DType.parse("complex64")
