"""CUDA execution contexts used as users misuse them: one context from several threads, runs on several streams,
and tensors on the wrong device."""

import threading

import numpy as np
import pytest
import torch

import braze
from braze.errors import BrazeError, InputError

from ..conftest import tiny_cnn


@pytest.fixture(scope="module")
def cuda_cnn():
    return braze.Builder("cuda").build(braze.parse_onnx(tiny_cnn(batch=8)))


def _inputs(n):
    return [np.random.default_rng(i).standard_normal((8, 3, 16, 16)).astype(np.float32) for i in range(n)]


def test_one_cuda_context_from_eight_threads_is_never_silently_wrong(cuda_cnn):
    inputs = _inputs(8)
    expected = [cuda_cnn.create_execution_context().infer({"x": x})["y"] for x in inputs]
    ctx = cuda_cnn.create_execution_context()
    start = threading.Barrier(8)
    right, refused, bad = [], [], []

    def work(i):
        start.wait()
        for _ in range(20):
            try:
                y = ctx.infer({"x": inputs[i]})["y"]
            except BrazeError as e:
                (refused if "being used by another thread" in str(e) else bad).append(e)
            except Exception as e:  # pragma: no cover - reported below
                bad.append(e)
            else:
                (right if np.array_equal(y, expected[i]) else bad).append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad, bad[:3]
    assert right and len(right) + len(refused) == 160


def test_execute_async_from_threads_on_one_context_is_refused_or_right(cuda_cnn):
    inputs = _inputs(4)
    expected = [cuda_cnn.create_execution_context().infer({"x": x})["y"] for x in inputs]
    ctx = cuda_cnn.create_execution_context()
    start = threading.Barrier(4)
    right, refused, bad = [], [], []

    def work(i):
        stream = torch.cuda.Stream()
        x = torch.from_numpy(inputs[i]).cuda()
        out = torch.empty(8, 10, device="cuda")
        start.wait()
        for _ in range(20):
            try:
                ctx.execute_async({"x": x, "y": out}, stream)
                stream.synchronize()  # NOTE: `out` is this thread's own: later runs of other threads leave it alone
            except BrazeError as e:
                (refused if "being used by another thread" in str(e) else bad).append(e)
            else:
                (right if np.array_equal(out.cpu().numpy(), expected[i]) else bad).append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad, bad[:3]
    assert right and len(right) + len(refused) == 80


def test_runs_enqueued_on_different_streams_are_ordered(cuda_cnn):
    """Two runs of one context on two streams, not synchronized between: the second waits for the first."""
    a, b = _inputs(2)
    expected = [cuda_cnn.create_execution_context().infer({"x": x})["y"] for x in (a, b)]
    ctx = cuda_cnn.create_execution_context()
    s1, s2 = torch.cuda.Stream(), torch.cuda.Stream()
    ya, yb = torch.empty(8, 10, device="cuda"), torch.empty(8, 10, device="cuda")
    xa, xb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
    torch.cuda.synchronize()
    for _ in range(20):
        ctx.execute_async({"x": xa, "y": ya}, s1)
        ctx.execute_async({"x": xb, "y": yb}, s2)
        s2.synchronize()
        np.testing.assert_array_equal(yb.cpu().numpy(), expected[1])
        s1.synchronize()
        np.testing.assert_array_equal(ya.cpu().numpy(), expected[0])


def test_a_cuda_tensor_fed_to_a_cpu_engine_is_refused_by_name():
    engine = braze.Builder("cpu").build(braze.parse_onnx(tiny_cnn(batch=8)))
    x = torch.zeros(8, 3, 16, 16, device="cuda")
    with pytest.raises(InputError, match="'x' is a tensor on cuda:0, but this engine runs on cpu.*x.cpu\\(\\)"):
        engine.create_execution_context().infer({"x": x})


def test_execute_async_refuses_host_tensors_by_name(cuda_cnn):
    with pytest.raises(InputError, match="'x' is on cpu; execute_async takes tensors on cuda"):
        cuda_cnn.create_execution_context().execute_async({"x": torch.zeros(8, 3, 16, 16)})
    with pytest.raises(InputError, match="'x' is a numpy array; execute_async takes tensors on cuda"):
        cuda_cnn.create_execution_context().execute_async({"x": np.zeros((8, 3, 16, 16), np.float32)})
    with pytest.raises(InputError, match="execute_async takes a mapping"):
        cuda_cnn.create_execution_context().execute_async([torch.zeros(8, 3, 16, 16, device="cuda")])
