"""Execution contexts: input checking, outputs, memory, concurrency."""

import threading

import numpy as np
import pytest
import torch

from braze.errors import InputError
from braze.testing import assert_close

from ..conftest import tiny_act
from ..ops.harness import run_ort


def test_numpy_in_numpy_out_and_torch_in_torch_out(act_engine, act_input):
    ctx = act_engine.create_execution_context()
    out_np = ctx.infer({"x": act_input})["y"]
    out_t = ctx.infer({"x": torch.from_numpy(act_input)})["y"]
    assert isinstance(out_np, np.ndarray) and isinstance(out_t, torch.Tensor)
    np.testing.assert_array_equal(out_np, out_t.numpy())
    expected = run_ort(tiny_act(), {"x": act_input})[0]
    assert_close(out_np, expected)


def test_outputs_are_not_overwritten_by_the_next_run(act_engine, act_input):
    ctx = act_engine.create_execution_context()
    first = ctx.infer({"x": act_input})["y"]
    keep = first.copy()
    ctx.infer({"x": act_input * -3})
    np.testing.assert_array_equal(first, keep)


def test_missing_and_extra_inputs_are_named(act_engine, act_input):
    ctx = act_engine.create_execution_context()
    with pytest.raises(InputError, match="missing input\\(s\\) 'x'.*inputs are 'x': float32\\[2,3,4,5\\]"):
        ctx.infer({})
    with pytest.raises(InputError, match="unknown input\\(s\\) 'z'"):
        ctx.infer({"x": act_input, "z": act_input})


def test_wrong_dtype_rank_and_shape(act_engine, act_input):
    ctx = act_engine.create_execution_context()
    with pytest.raises(InputError, match="'x' is float64, the engine expects float32"):
        ctx.infer({"x": act_input.astype(np.float64)})
    with pytest.raises(InputError, match="rank mismatch"):
        ctx.infer({"x": act_input[0]})
    with pytest.raises(InputError, match="shape mismatch: got \\[2,3,4,6\\]"):
        ctx.infer({"x": np.zeros((2, 3, 4, 6), np.float32)})
    with pytest.raises(InputError, match="pass a numpy array"):
        ctx.infer({"x": act_input.tolist()})


def test_nan_inputs_are_computed_not_rejected(act_engine, act_input):
    x = act_input.copy()
    x[0, 0, 0, 0] = np.nan
    y = act_engine.create_execution_context().infer({"x": x})["y"]
    assert np.isnan(y[0, 0, 0, 0])
    assert np.isfinite(y.reshape(-1)[1:]).all()


def test_context_allocates_the_planned_arena_once(act_engine, act_input):
    ctx = act_engine.create_execution_context()
    assert ctx.arena.numel() == act_engine.device_memory_size > 0
    ptr = ctx.arena.data_ptr()
    ctx.infer({"x": act_input})
    assert ctx.arena.data_ptr() == ptr


def test_contexts_run_concurrently_from_threads(act_engine):
    inputs = [np.random.default_rng(i).standard_normal((2, 3, 4, 5)).astype(np.float32) for i in range(4)]
    expected = [act_engine.create_execution_context().infer({"x": x})["y"] for x in inputs]
    results: dict[int, np.ndarray] = {}
    errors = []

    def work(i):
        try:
            ctx = act_engine.create_execution_context()
            for _ in range(20):
                results[i] = ctx.infer({"x": inputs[i]})["y"]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(4):
        np.testing.assert_array_equal(results[i], expected[i])
