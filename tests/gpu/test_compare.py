"""`braze compare` on CUDA engines, and run_layers on a context that replays a CUDA graph."""

import numpy as np
import pytest

import braze
from braze.tools.compare import compare_model

from ..conftest import tiny_cnn


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_engines_pass_per_output_and_per_layer(precision):
    report = compare_model(tiny_cnn(), device="cuda", precision=precision, per_layer=True, samples=2)
    assert report.passed, report.format()
    assert report.first_jump is None and all(t.diff is not None for layer in report.layers for t in layer.tensors)


def test_run_layers_leaves_the_cuda_graph_replaying_the_same_results(cnn_input):
    engine = braze.Builder("cuda").build(tiny_cnn(), braze.BuilderConfig(precision="fp16"))
    ctx = engine.create_execution_context()
    assert ctx.uses_cuda_graph
    expected = ctx.infer({"x": cnn_input})
    negated = ctx.infer({"x": -cnn_input})
    seen = []
    outputs = ctx.run_layers({"x": cnn_input}, lambda layer, names, values: seen.append((layer, values)))
    assert len(seen) == engine.num_layers and all(v.is_cuda for _, values in seen for v in values if v is not None)
    np.testing.assert_allclose(outputs["y"], expected["y"], rtol=1e-2, atol=1e-3)
    # NOTE: the graph replays into the tensors it captured: run_layers must leave them bound
    np.testing.assert_allclose(ctx.infer({"x": -cnn_input})["y"], negated["y"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ctx.infer({"x": cnn_input})["y"], expected["y"], rtol=1e-5, atol=1e-6)
