"""On a GPU, a model whose declared sizes exceed the device's memory is refused at build time, saying what it would
need and what the device has (on the CPU: tests/frontends/test_hostile_models.py)."""

import pytest

import braze
from braze.errors import BrazeError

from ..frontends.test_hostile_models import matmul_model


def test_declared_size_beyond_gpu_memory_is_refused_at_build():
    model = matmul_model(x_shape=(10 ** 10, 4), out_shape=(10 ** 10, 3))
    with pytest.raises(BrazeError, match=r"beside the weights needs [\d,.]+ GiB of cuda:0 memory .*, "
                                         r"and only [\d,.]+ GiB is available"):
        braze.Builder("cuda").build(model)


def test_model_that_fits_still_builds_and_runs():
    import numpy as np

    engine = braze.Builder("cuda").build(matmul_model())
    out = engine.create_execution_context().infer({"x": np.ones((2, 4), np.float32)})["y"]
    np.testing.assert_allclose(out, np.full((2, 3), 4.0))
