"""Calibration on the GPU: the collector's statistics on CUDA equal the CPU's, bin for bin, and a calibrated
INT8 CUDA build matches the same build's CPU calibration."""

import numpy as np
import torch

import braze
from braze.precision.calibrate import Collector, calibrate
from braze.precision.int8 import Calibration
from tests.conftest import tiny_cnn


def test_collector_on_cuda_equals_cpu():
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(4, 64, 8, 8, generator=g) * s for s in (0.5, 3.0, 40.0)]  # the range grows twice
    cpu, cuda = Collector("cpu"), Collector("cuda")
    for x in batches:
        cpu.observe("t", x)
        cuda.observe("t", x.cuda())
    cpu.check(), cuda.check()
    assert cpu.amax("t") == cuda.amax("t")
    (h_cpu, r_cpu), (h_cuda, r_cuda) = cpu.histogram("t"), cuda.histogram("t")
    assert r_cpu == r_cuda and torch.equal(h_cpu, h_cuda.cpu())
    for method in ("minmax", "percentile", "entropy"):
        assert np.isclose(calibrate(cpu, method)["t"], calibrate(cuda, method)["t"], rtol=1e-6)


def test_cuda_build_calibrates_on_the_gpu_like_the_cpu():
    rng = np.random.default_rng(0)
    data = [{"x": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)} for _ in range(4)]
    scales = {}
    for device in ("cpu", "cuda"):
        config = braze.BuilderConfig(precision="int8", calibration=Calibration(data=data, calibrator="entropy"))
        engine = braze.Builder(device).build(tiny_cnn(batch=2), config)
        scales[device] = {n.name: n.attrs["x_scale"] for n in engine.plan.graph.nodes if n.op == "QConv"}
    assert scales["cpu"].keys() == scales["cuda"].keys() and scales["cpu"]
    for name in scales["cpu"]:
        assert np.isclose(scales["cpu"][name], scales["cuda"][name], rtol=1e-4)
