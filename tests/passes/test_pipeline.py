"""The pass pipeline (braze/passes/pipeline.py): dumps, timings and rule counts, the graph verified
after every pass; and golden counts on the zoo models, so a fusion that stops firing fails here."""

from __future__ import annotations

from collections import Counter

import pytest

import braze
from braze import zoo
from braze.errors import ModelError
from braze.ir import Graph, Node
from braze.ops import infer_shapes
from braze.passes import pipeline
from braze.passes.pipeline import PIPELINE, PRECISION_PIPELINE, Pass, PassContext, optimize

from .arena import check_memory_plan
from .helpers import Net, build, check


def small_model():
    net = Net()
    h = net.op("Relu", net.op("Add", net.op("MatMul", net.input("x", [2, 8]), net.weight(8, 4)), net.weight(4)))
    return net.model(net.op("Softmax", net.op("Identity", h)))


def passes_at(level: int) -> list[Pass]:
    return [p for p in PIPELINE + PRECISION_PIPELINE if p.level <= level]


def dump_names(level: int) -> list[str]:
    everything = PIPELINE + PRECISION_PIPELINE
    return sorted(f"{everything.index(p):02d}_{p.name}.txt" for p in passes_at(level))


@pytest.mark.parametrize("level", [1, 3])
def test_dump_dir_gets_the_graph_after_every_pass(tmp_path, level):
    build(small_model(), level=level, dump_dir=str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == dump_names(level)
    first, last = (tmp_path / dump_names(level)[0]).read_text(), (tmp_path / next(
        n for n in dump_names(level) if n.endswith("_eliminate_again.txt"))).read_text()
    assert first.startswith("graph test") and "Identity" in first
    assert "braze.FusedGemm" in last and "Identity" not in last


def test_braze_debug_passes_dumps_to_braze_debug_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAZE_DEBUG", "other,passes")
    monkeypatch.setenv("BRAZE_DEBUG_DIR", str(tmp_path / "dumps"))
    build(small_model())
    assert sorted(p.name for p in (tmp_path / "dumps").iterdir()) == dump_names(3)


def test_nothing_is_dumped_without_being_asked(tmp_path, monkeypatch):
    monkeypatch.delenv("BRAZE_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    build(small_model())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_timings_and_rule_counts_land_in_the_plan(level):
    engine = check(small_model()) if level == 3 else build(small_model(), level=level)
    info = engine.plan.build
    assert list(info["pass_seconds"]) == [p.name for p in passes_at(level)]
    assert all(seconds >= 0 for seconds in info["pass_seconds"].values())
    fired = Counter(info["rules_fired"])
    assert fired["remove_identity"] == fired["matmul_activation"] == (1 if level else 0)
    assert info["optimization_level"] == level and info["source_nodes"] == 5
    assert info["layers"] == len(engine.graph.nodes) == (2 if level else 5)


def test_optimize_logs_every_pass():
    graph = braze.parse_onnx(small_model())
    infer_shapes(graph)
    lines: list[str] = []
    optimize(graph, PassContext(level=3, log=lines.append))
    assert [line.split(":")[0] for line in lines] == [f"pass {p.name}" for p in PIPELINE]


def _break(graph: Graph, ctx: PassContext) -> None:
    graph.nodes.reverse()


def test_the_graph_is_verified_after_every_pass(monkeypatch):
    monkeypatch.setattr(pipeline, "PIPELINE", [PIPELINE[0], Pass("broken", _break), *PIPELINE[1:]])
    with pytest.raises(ModelError, match="before anything produces it"):
        build(small_model())


# -- golden counts on the zoo ------------------------------------------------------------------------

def kind(n: Node) -> str:
    """A layer's op; for fused convs and gemms with their activation, and "+residual" when they add one."""
    if n.op not in ("FusedConv", "FusedGemm"):
        return n.op
    return f"{n.op}/{n.attrs['activation']}" + ("+residual" if n.input(3) is not None else "")


GOLDEN = {
    "resnet50": dict(
        source=175, layers=57,
        kinds={"FusedConv/relu": 33, "FusedConv/relu+residual": 16, "FusedConv/none": 4, "MaxPool": 1,
               "GlobalAveragePool": 1, "Reshape": 1, "FusedGemm/none": 1},
        fired={"conv_batchnorm": 53, "conv_residual": 16, "conv_activation": 49, "gemm_as_fused_gemm": 1}),
    "mobilenetv2": dict(
        source=222, layers=55,
        kinds={"FusedConv/clip": 35, "FusedConv/none+residual": 10, "FusedConv/none": 7, "GlobalAveragePool": 1,
               "Reshape": 1, "FusedGemm/none": 1},
        fired={"conv_batchnorm": 52, "conv_residual": 10, "conv_activation": 35, "gemm_as_fused_gemm": 1}),
    "bert": dict(
        source=1100, layers=197,
        kinds={"Attention": 12, "FusedGemm/none": 12, "FusedGemm/none+residual": 24, "FusedGemm/gelu": 12,
               "Split": 12, "LayerNormalization": 25, "Transpose": 48, "Reshape": 49, "Pointwise": 2, "Gather": 1},
        fired={"attention": 12, "horizontal_gemm": 12, "gelu_erf": 12, "matmul_bias": 72, "matmul_activation": 12,
               "matmul_residual": 24}),
    "vit": dict(
        source=777, layers=200,
        kinds={"Attention": 12, "FusedGemm/none": 13, "FusedGemm/none+residual": 24, "FusedGemm/gelu": 12,
               "Split": 12, "LayerNormalization": 25, "Transpose": 37, "Reshape": 61, "FusedConv/none": 1, "Concat": 1,
               "Add": 1, "Gather": 1},
        fired={"attention": 12, "gelu_erf": 12, "matmul_bias": 48, "matmul_activation": 12, "matmul_residual": 24,
               "gemm_as_fused_gemm": 1}),
}


def test_zoo_golden_counts(zoo_name, zoo_graph):
    engine = braze.Builder("cpu").build(zoo_graph, braze.BuilderConfig(shapes=zoo.default_shapes(zoo_name)))
    golden = GOLDEN[zoo_name]
    info = engine.plan.build
    assert (info["source_nodes"], info["layers"]) == (golden["source"], golden["layers"])
    assert Counter(kind(n) for n in engine.graph.nodes) == Counter(golden["kinds"])
    fired = Counter(info["rules_fired"])
    assert {rule: fired[rule] for rule in golden["fired"]} == golden["fired"]
    views = {name for name, choice in engine.plan.layers.items() if choice.tactic == "view"}
    check_memory_plan(engine.graph, engine.plan.memory, views)
