"""Execution contexts: input checking, outputs, memory, concurrency."""

import threading

import numpy as np
import pytest
import torch

import braze
from braze.errors import BrazeError, InputError
from braze.testing import assert_close

from ..conftest import tiny_act, tiny_cnn
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


def test_every_way_of_making_a_context_checks_the_memory_left(act_engine, monkeypatch):
    monkeypatch.setattr("braze.device.available_memory", lambda target: act_engine.device_memory_size - 1)
    for make in (act_engine.create_execution_context, lambda: braze.ExecutionContext(act_engine)):
        with pytest.raises(BrazeError, match=r"an execution context of this engine needs [\d.]+ \w+ of cpu memory "
                                             r"\([\d.]+ \w+ of activations\), and only [\d.]+ \w+ is available"):
            make()
    monkeypatch.setattr("braze.device.available_memory", lambda target: act_engine.device_memory_size)
    braze.ExecutionContext(act_engine)


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


BUSY = "being used by another thread; create one context per thread \\(engine.create_execution_context\\(\\)\\)"


def test_one_context_from_eight_threads_is_never_silently_wrong():
    """Each call on a shared context is either right or refused with the error that says why: never wrong."""
    engine = braze.Builder("cpu").build(braze.parse_onnx(tiny_cnn(batch=8)))
    inputs = [np.random.default_rng(i).standard_normal((8, 3, 16, 16)).astype(np.float32) for i in range(8)]
    expected = [engine.create_execution_context().infer({"x": x})["y"] for x in inputs]
    ctx = engine.create_execution_context()
    start = threading.Barrier(8)
    right, refused, wrong, other = [], [], [], []

    def work(i):
        start.wait()
        for _ in range(15):
            try:
                y = ctx.infer({"x": inputs[i]})["y"]
            except BrazeError as e:
                (refused if "being used by another thread" in str(e) else other).append(e)
            except Exception as e:  # pragma: no cover - reported below
                other.append(e)
            else:
                (right if np.array_equal(y, expected[i]) else wrong).append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong and not other, (len(wrong), other[:3])
    assert len(right) + len(refused) == 8 * 15 and right
    np.testing.assert_array_equal(ctx.infer({"x": inputs[0]})["y"], expected[0])  # still usable afterwards


def test_a_context_busy_in_one_thread_refuses_another_and_recovers(act_engine, act_input):
    ctx = act_engine.create_execution_context()
    inside, leave = threading.Event(), threading.Event()
    execute = ctx._execute

    def slow_execute():
        inside.set()
        leave.wait(10)
        execute()

    ctx._execute = slow_execute
    results = []
    worker = threading.Thread(target=lambda: results.append(ctx.infer({"x": act_input})["y"]))
    worker.start()
    assert inside.wait(10)
    try:
        with pytest.raises(BrazeError, match=BUSY):
            ctx.infer({"x": act_input})
        with pytest.raises(BrazeError, match=BUSY):
            ctx.profile({"x": act_input}, runs=1)
    finally:
        leave.set()
        worker.join()
    del ctx._execute
    expected = act_engine.create_execution_context().infer({"x": act_input})["y"]
    np.testing.assert_array_equal(results[0], expected)
    np.testing.assert_array_equal(ctx.infer({"x": act_input})["y"], expected)
    # taking turns from different threads is fine: only overlapping runs are refused
    other = threading.Thread(target=lambda: results.append(ctx.infer({"x": act_input})["y"]))
    other.start()
    other.join()
    np.testing.assert_array_equal(results[1], expected)


@pytest.mark.parametrize("feeds", [[np.zeros((2, 3, 4, 5), np.float32)], None, "x", (("x", 1),)])
def test_feeds_that_are_not_a_mapping(act_engine, feeds):
    with pytest.raises(InputError, match="feeds must be a mapping of input name -> .*'x': array.*inputs are 'x'"):
        act_engine.create_execution_context().infer(feeds)


@pytest.mark.parametrize("make, message", [
    (lambda: torch.zeros(2, 3, 4, 5, device="meta"), "'x' is a meta tensor"),
    (lambda: torch.zeros(2, 3, 4, 5).to_sparse(), "'x' is a sparse_coo tensor; pass a dense one"),
    (lambda: torch.zeros(2, 3, 4, 5).to_sparse_csr(), "'x' is a sparse_csr tensor"),
    (lambda: torch.quantize_per_tensor(torch.zeros(2, 3, 4, 5), 0.1, 0, torch.qint8),
     "'x' is a quantized tensor \\(torch.qint8\\).*dequantize"),
    (lambda: torch.zeros(2, 3, 4, 5, dtype=torch.complex64), "'x' has torch dtype complex64, which braze does not"),
    (lambda: np.zeros((2, 3, 4, 5), object), "'x' has numpy dtype object, which braze does not support; the engine "
     "expects float32"),
    (lambda: np.full((2, 3, 4, 5), "a"), "'x' has numpy dtype <U1"),
    (lambda: np.zeros((2, 3, 4, 5), np.complex128), "'x' has numpy dtype complex128"),
    (lambda: 1.5, "'x' is a float; pass a numpy array or a torch tensor"),
])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_tensors_braze_cannot_run_are_named(act_engine, make, message):
    with pytest.raises(InputError, match=message):
        act_engine.create_execution_context().infer({"x": make()})


@pytest.mark.parametrize("huge", [
    lambda: np.broadcast_to(np.float32(0), (10**6, 10**6, 4, 5)),
    lambda: torch.zeros(1).expand(10**6, 10**6, 4, 5),
    lambda: np.broadcast_to(np.float64(0), (10**6, 10**6, 4, 5)),
])
def test_a_broadcast_view_of_the_wrong_shape_is_refused_before_it_is_copied(act_engine, huge):
    """A copy of these views would need 20 TB: the shape (and dtype) is checked first."""
    with pytest.raises(InputError, match="'x' has (rank|shape) mismatch|'x' is float64"):
        act_engine.create_execution_context().infer({"x": huge()})


def test_every_input_is_checked_before_any_is_copied(monkeypatch):
    import onnx
    import onnx.helper as oh

    from braze.engine import context

    graph = oh.make_graph([oh.make_node("Add", ["a", "b"], ["y"])], "add",
                          [oh.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [64, 64]) for n in "ab"],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [64, 64])])
    engine = braze.Builder("cpu").build(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]))
    copied = []
    monkeypatch.setattr(context, "to_torch", lambda a: copied.append(a.shape) or torch.from_numpy(a.copy()))
    ctx = engine.create_execution_context()
    with pytest.raises(InputError, match="'b' has shape mismatch: got \\[64,65\\]"):
        ctx.infer({"a": np.ones((64, 64), np.float32), "b": np.ones((64, 65), np.float32)})
    assert copied == []
    assert ctx.infer({"a": np.ones((64, 64), np.float32), "b": np.ones((64, 64), np.float32)})["y"].sum() == 2 * 64 * 64


def test_a_broadcast_view_of_the_right_shape_runs(act_engine, act_input):
    ctx = act_engine.create_execution_context()
    view = np.broadcast_to(act_input[:1], act_input.shape)
    expected = ctx.infer({"x": np.ascontiguousarray(view)})["y"]
    np.testing.assert_array_equal(ctx.infer({"x": view})["y"], expected)
    np.testing.assert_array_equal(ctx.infer({"x": torch.from_numpy(act_input[:1].copy()).expand(2, 3, 4, 5)})["y"],
                                  expected)


def test_a_cpu_engine_cannot_run_on_cpu_inputs_asynchronously(act_engine, act_input):
    with pytest.raises(BrazeError, match="execute_async runs CUDA engines"):
        act_engine.create_execution_context().execute_async({"x": torch.from_numpy(act_input)})


def test_common_feeds_skip_the_full_check_and_give_its_answer(act_engine, act_input, monkeypatch):
    """A dict of dense arrays or tensors of the binding's exact dtype and shape takes the fast path, which
    must answer what the full check (taken by a Mapping that is not a dict) answers."""
    from collections import OrderedDict

    from braze.engine import context

    ctx = act_engine.create_execution_context()
    expected = ctx.infer(OrderedDict(x=act_input))["y"]
    monkeypatch.setattr(context, "_metadata", lambda *a: pytest.fail("the full check ran for a common feed"))
    np.testing.assert_array_equal(ctx.infer({"x": act_input})["y"], expected)
    np.testing.assert_array_equal(ctx.infer({"x": torch.from_numpy(act_input)})["y"].numpy(), expected)


@pytest.mark.parametrize("make", [
    lambda x: x.astype(">f4"),  # byte-swapped: not numpy's native float32
    lambda x: np.asfortranarray(x),
    lambda x: x[:, :, :, ::-1].copy()[:, :, :, ::-1],  # negative strides
    lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 1, 0))).permute(3, 2, 1, 0),
    lambda x: torch.from_numpy(x).requires_grad_(),
    lambda x: torch.nn.Parameter(torch.from_numpy(x)),
])
def test_feeds_beside_the_fast_path_still_run_right(act_engine, act_input, make):
    ctx = act_engine.create_execution_context()
    expected = ctx.infer({"x": act_input})["y"]
    y = ctx.infer({"x": make(act_input)})["y"]
    assert not (isinstance(y, torch.Tensor) and y.requires_grad)
    np.testing.assert_array_equal(y.detach().numpy() if isinstance(y, torch.Tensor) else y, expected)


@pytest.mark.parametrize("layout", [torch.strided, torch.jagged])
@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning")
def test_a_nested_tensor_is_refused_by_name(act_engine, layout):
    x = torch.nested.nested_tensor([torch.zeros(3, 4, 5), torch.zeros(3, 4, 5)], layout=layout)
    with pytest.raises(InputError, match="'x' is a (nested|jagged) tensor; pass a dense one"):
        act_engine.create_execution_context().infer({"x": x})


def test_the_fast_path_keeps_execute_asyncs_refusal_of_host_values(act_engine, act_input):
    """execute_async (copy=False) takes tensors on the engine's device only; the CPU engine's own device
    stands for it here (execute_async itself runs CUDA engines: tests/gpu/test_context_use.py)."""
    ctx = act_engine.create_execution_context()
    with pytest.raises(InputError, match="'x' is a numpy array; execute_async takes tensors on cpu"):
        ctx._check({"x": act_input}, copy=False)
    assert ctx._check({"x": torch.from_numpy(act_input)}, copy=False)[0].data_ptr() == act_input.ctypes.data
