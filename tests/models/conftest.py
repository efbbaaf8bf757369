"""Zoo fixtures, session-scoped so each model is exported, run in onnxruntime and parsed once.

Tests that take `zoo_name` run once per zoo model, grouped by model; pytest drops one model's
fixtures before it sets up the next, so only one model's weights are held at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import pytest

import braze
from braze import zoo


@dataclass
class Reference:
    """A zoo model's batch-1 sample inputs and onnxruntime's outputs for them."""

    feeds: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


@pytest.fixture(scope="session", params=zoo.names())
def zoo_name(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def zoo_model(zoo_name) -> onnx.ModelProto:
    return zoo.load(zoo_name)


@pytest.fixture(scope="session")
def ort_reference(zoo_name, zoo_model) -> Reference:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(zoo_model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = zoo.sample_inputs(zoo_name, batch=1, seed=1)
    names = [o.name for o in session.get_outputs()]
    return Reference(feeds, dict(zip(names, session.run(names, feeds))))


@pytest.fixture(scope="session")
def zoo_graph(zoo_name) -> braze.Graph:
    return braze.parse_onnx(f"zoo:{zoo_name}")
