"""CUDA engines pass load-time validation in every precision (no false refusal), load with validation at a small
share of the load time, and are refused when forged against the CUDA planner's rules (256-byte alignment)."""

import time

import pytest

import braze
from braze import zoo
from braze.device import Target
from braze.engine.format import deserialize
from braze.engine.validate import validate_plan
from braze.errors import EngineFormatError

from ..conftest import tiny_cnn
from ..engine.test_validate import forge


@pytest.mark.parametrize("name", ["resnet50", "bert", "vit", "mobilenetv2"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_zoo_engines_validate_and_say_what_it_costs(name, precision):
    engine = braze.Builder("cuda").build(zoo.load(name), braze.BuilderConfig(shapes=zoo.default_shapes(name),
                                                                             precision=precision))
    data = engine.serialize()
    started = time.perf_counter()
    loaded = braze.Runtime().load(data)
    load = time.perf_counter() - started
    _, plan = deserialize(data)
    started = time.perf_counter()
    validate_plan(plan, Target.parse("cuda"))
    check = time.perf_counter() - started
    print(f"{name} {precision}: load {load * 1e3:.1f} ms, validation {check * 1e3:.1f} ms ({check / load:.1%})")
    feeds = zoo.sample_inputs(name)
    outputs = loaded.create_execution_context().infer(feeds)
    assert outputs.keys() == engine.create_execution_context().infer(feeds).keys()


def test_cuda_offsets_must_keep_the_256_byte_alignment():
    data = braze.Builder("cuda").build(braze.parse_onnx(tiny_cnn())).serialize()
    braze.Runtime().load(data)

    def edit(p):
        name = sorted(p["memory"]["offsets"])[0]
        p["memory"]["offsets"][name] += 64
    with pytest.raises(EngineFormatError, match=r"not a multiple of the arena's 256-byte alignment|inside the arena"):
        braze.Runtime().load(forge(data, edit))
