"""ExecutionContext.run_layers: every layer's outputs, observed as copies, without changing later runs."""

import numpy as np
import pytest
import torch


def test_observes_every_layer_in_order_with_copies(cnn_engine, cnn_input):
    ctx = cnn_engine.create_execution_context()
    expected = ctx.infer({"x": cnn_input})
    seen = []

    def observe(layer, names, outputs):
        seen.append((layer, names, outputs))

    outputs = ctx.run_layers({"x": cnn_input}, observe)
    np.testing.assert_array_equal(outputs["y"], expected["y"])
    assert [layer for layer, _, _ in seen] == [step.node.name for step in cnn_engine.steps]
    for (_, names, values), step in zip(seen, cnn_engine.steps):
        assert names == [t.name for t in step.node.outputs]
        assert all(isinstance(v, torch.Tensor) and tuple(v.shape) == tuple(t.shape)
                   for v, t in zip(values, step.node.outputs))
    last = seen[-1][2][0]
    np.testing.assert_array_equal(last.numpy(), expected["y"])
    first = {name: v.clone() for _, names, values in seen for name, v in zip(names, values)}
    ctx.infer({"x": -cnn_input})  # reuses the arena: the observed copies stay what they were
    for _, names, values in seen:
        for name, v in zip(names, values):
            assert torch.equal(v, first[name]), name
    np.testing.assert_array_equal(ctx.infer({"x": cnn_input})["y"], expected["y"])


def test_an_observer_that_raises_leaves_the_context_usable(mlp_engine):
    ctx = mlp_engine.create_execution_context()
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    expected = ctx.infer({"x": x})

    def observe(layer, names, outputs):
        raise RuntimeError("observer failed")

    with pytest.raises(RuntimeError, match="observer failed"):
        ctx.run_layers({"x": x}, observe)
    np.testing.assert_array_equal(ctx.infer({"x": x})["y"], expected["y"])
    torch_out = ctx.run_layers({"x": torch.from_numpy(x)}, lambda *a: None)
    assert isinstance(torch_out["y"], torch.Tensor)
