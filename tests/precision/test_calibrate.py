"""The Collector (amax and the |x| histogram, its exact re-binning when the range grows, NaN/inf named), the
three calibrators against hand-checked distributions and the entropy search against a plain reference, and
`collect` running a graph with the reference evaluator's observe hook."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import braze
from braze.errors import BrazeError
from braze.ir import DType, Graph, Node, Tensor
from braze.ops import infer_shapes
from braze.ops.evaluate import run_graph
from braze.precision.calibrate import (EMPTY_LEVEL, QMAX, ZERO_SCALE, Collector, amaxes, calibrate, collect,
                                       entropy_amax, kl_divergences, percentile_amax)
from tests.conftest import tiny_cnn


def observed(*batches, bins: int = 2048, name: str = "t") -> Collector:
    collector = Collector("cpu", bins=bins)
    for batch in batches:
        collector.observe(name, torch.as_tensor(batch))
    collector.check()
    return collector


# -- the collector ------------------------------------------------------------------------------------------

def test_minmax_is_the_largest_magnitude_over_all_batches():
    collector = observed(torch.tensor([-3.0, 1.0, 2.0]), torch.tensor([[0.5, -4.25]]), torch.tensor([4.0]))
    assert collector.amax("t") == 4.25 and collector.count("t") == 6
    assert calibrate(collector, "minmax") == {"t": 4.25 / 127}


def test_the_histogram_counts_each_value_in_its_bin_over_a_power_of_two_range():
    collector = observed(torch.tensor([0.0, 0.25, -0.25, 0.5, 2.9, -3.0]), bins=8)
    hist, top = collector.histogram("t")
    assert top == 4.0  # the smallest power of two above amax 3.0
    assert hist.tolist() == [3, 1, 0, 0, 0, 1, 1, 0] and hist.dtype == torch.int64  # width 0.5: [0, 0.5) holds 3


@pytest.mark.parametrize("scales", [(1.0, 5.0, 1000.0), (0.0, 1e-3, 7.0), (1e4, 1.0, 3.0), (0.3, 0.3, 0.61)])
def test_rebinning_when_the_range_grows_equals_one_histogram_of_all_the_data(scales):
    rng = np.random.default_rng(1)
    batches = [(rng.standard_normal(5000) * s).astype(np.float32) for s in scales]
    grown = observed(*batches)
    once = observed(np.concatenate(batches))
    hist, top = grown.histogram("t")
    amax = float(np.abs(np.concatenate(batches)).max())
    assert grown.amax("t") == amax and once.histogram("t")[1] == top
    assert amax < top <= 2 * amax
    expected, _ = np.histogram(np.abs(np.concatenate(batches)), bins=2048, range=(0.0, top))
    np.testing.assert_array_equal(hist.numpy(), expected)
    np.testing.assert_array_equal(once.histogram("t")[0].numpy(), expected)


def test_zeros_first_then_data_keep_their_bin():
    collector = observed(torch.zeros(10), torch.tensor([3.0, 0.1]), bins=16)
    hist, top = collector.histogram("t")
    assert top == 4.0 and hist[0] == 11 and hist[12] == 1 and int(hist.sum()) == 12


def test_the_collector_keeps_its_statistics_on_its_device_and_takes_any_float_type():
    collector = Collector(torch.device("cpu"))
    collector.observe("h", torch.tensor([1.0, -2.0], dtype=torch.float16))
    collector.observe("h", torch.tensor([0.5], dtype=torch.float64))
    collector.observe("h", torch.empty(0))
    hist, _ = collector.histogram("h")
    assert collector.device == torch.device("cpu") and hist.device == torch.device("cpu")
    assert collector.amax("h") == 2.0 and collector.count("h") == 3 and collector.names == ["h"]


def test_only_float_tensors_are_observed():
    with pytest.raises(BrazeError, match="tensor 'ids' is int64: only float tensors"):
        Collector().observe("ids", torch.tensor([1, 2]))
    with pytest.raises(BrazeError, match="tensor 'seq' is a list, not a tensor"):
        Collector().observe("seq", [torch.ones(2)])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_named_by_check(bad):
    collector = Collector()
    collector.observe("fine", torch.tensor([1.0, 2.0]))
    collector.observe("broken", torch.tensor([1.0, bad, 3.0]))
    with pytest.raises(BrazeError) as info:
        collector.check("sample 4")
    message = str(info.value)
    assert "sample 4" in message and "'broken'" in message and "'fine'" not in message and "NaN or infinity" in message


def test_a_histogram_is_refused_when_the_collector_keeps_amax_only():
    collector = Collector(histogram=False)
    collector.observe("t", torch.tensor([1.0, -2.0]))
    assert calibrate(collector, "minmax") == {"t": 2.0 / 127}
    with pytest.raises(BrazeError, match="tensor 't' has no histogram"):
        calibrate(collector, "entropy")


def test_bins_must_be_a_power_of_two():
    with pytest.raises(BrazeError, match="bins=1000"):
        Collector(bins=1000)


# -- percentile ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [50.0, 99.0, 99.99, 100.0])
def test_percentile_of_a_uniform_sample_is_within_a_bin_width_of_numpys(p):
    values = np.random.default_rng(2).uniform(-1.0, 1.0, 200_000).astype(np.float32)
    collector = observed(values)
    hist, top = collector.histogram("t")
    width = top / 2048
    expected = float(np.percentile(np.abs(values), p))
    assert abs(amaxes(collector, "percentile", p)["t"] - expected) <= width
    assert calibrate(collector, "percentile", p)["t"] == pytest.approx(amaxes(collector, "percentile", p)["t"] / QMAX)


def test_percentile_interpolates_within_its_bin():
    hist = torch.tensor([0, 4, 4, 0, 2])  # 10 values; width 1
    assert percentile_amax(hist, 1.0, 50.0) == 2.25  # the 5th value: 1 of the 4 in bin [2, 3)
    assert percentile_amax(hist, 1.0, 100.0) == 5.0
    assert percentile_amax(hist, 0.5, 20.0) == 0.75


# -- entropy ------------------------------------------------------------------------------------------------

def reference_kl(hist: list[int], levels: int) -> list[float]:
    """The entropy search as the published pseudocode reads, with loops (and EMPTY_LEVEL for a level of Q that
    holds no unclipped value while P has the clipped mass there)."""
    out = []
    for i in range(levels, len(hist) + 1):
        p = [float(c) for c in hist[:i]]
        p[-1] += sum(hist[i:])
        kept = [float(c) for c in hist[:i]]
        merged = i // levels
        q = [0.0] * i
        for g in range(levels):
            start = g * merged
            stop = i if g == levels - 1 else start + merged
            level = sum(kept[start:stop])
            nonzero = [j for j in range(start, stop) if p[j] > 0]
            if level == 0 and nonzero:
                level = EMPTY_LEVEL
            for j in nonzero:
                q[j] = level / len(nonzero)
        total_p, total_q = sum(p), sum(q)
        if total_q == 0:
            out.append(math.inf)
            continue
        out.append(sum(pj / total_p * math.log((pj / total_p) / (qj / total_q)) for pj, qj in zip(p, q) if pj > 0))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kl_divergences_match_the_plain_reference_on_small_histograms(seed):
    rng = np.random.default_rng(seed)
    hist = rng.integers(0, 50, 64) * (rng.random(64) < 0.7)  # some empty bins
    hist[-5:] = [0, 0, 3, 0, 1]  # a sparse tail: clipped mass over empty levels
    expected = reference_kl(hist.tolist(), 8)
    actual = kl_divergences(torch.from_numpy(hist), 8).tolist()
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-12)
    assert int(np.argmin(actual)) == int(np.argmin(expected))


def test_entropy_keeps_everything_when_the_levels_already_resolve_it():
    hist = torch.zeros(256, dtype=torch.int64)
    hist[:16] = torch.arange(1, 17) ** 2  # 16 distinct counts: 16 levels of one bin each hold them exactly
    divergences = kl_divergences(hist, 16)
    assert divergences[0] == pytest.approx(0.0, abs=1e-12)  # i = 16 bins kept: Q is P
    assert bool((divergences[32 - 16:] > 1e-3).all())  # from i = 32 two bins share a level
    assert entropy_amax(hist, 0.5, amax=100.0, levels=16) == 16.5 * 0.5  # the smallest of the tied i
    assert entropy_amax(hist, 0.5, amax=7.9, levels=16) == 7.9  # never beyond amax


def test_entropy_clips_a_few_far_outliers():
    bulk = np.abs(np.random.default_rng(3).standard_normal(100_000)).astype(np.float32)
    bulk = bulk / bulk.max()  # all of the mass in [0, 1]
    values = np.concatenate([bulk, np.full(5, 100.0, np.float32)])
    collector = observed(values)
    threshold = amaxes(collector, "entropy")["t"]
    assert 1.0 <= threshold < 100.0 / 4
    assert calibrate(collector, "entropy")["t"] == threshold / QMAX
    assert amaxes(collector, "minmax")["t"] == 100.0


def test_entropy_on_a_wide_distribution_clips_its_tail_but_not_its_body():
    values = np.random.default_rng(4).standard_normal(400_000).astype(np.float32)
    threshold = amaxes(observed(values), "entropy")["t"]
    assert 2.0 < threshold < float(np.abs(values).max())


# -- calibrate ----------------------------------------------------------------------------------------------

def test_a_tensor_zero_on_every_sample_gets_a_tiny_scale_and_is_reported():
    collector = observed(torch.zeros(4), name="dead")
    collector.observe("alive", torch.tensor([1.0, -1.27]))
    lines: list[str] = []
    for method in ("minmax", "percentile", "entropy"):
        scales = calibrate(collector, method, say=lines.append)
        assert scales["dead"] == ZERO_SCALE > 0 and scales["alive"] > 0
    assert len(lines) == 3 and all(line.startswith("warning: 1 tensor(s)") and "'dead'" in line for line in lines)
    assert np.float32(ZERO_SCALE) == ZERO_SCALE and ZERO_SCALE >= np.finfo(np.float32).tiny


@pytest.mark.parametrize("method, percentile, fragment", [
    ("kl", 99.99, "unknown calibrator 'kl'"), ("percentile", 0, "percentile=0"), ("percentile", 100.5, "100.5")])
def test_calibrate_refuses_an_unknown_method_or_percentile(method, percentile, fragment):
    with pytest.raises(BrazeError, match=fragment):
        calibrate(observed(torch.ones(3)), method, percentile)


# -- collect ------------------------------------------------------------------------------------------------

def cnn() -> Graph:
    graph = braze.parse_onnx(tiny_cnn())
    infer_shapes(graph)
    return graph


def cnn_samples(n: int = 3) -> list[dict[str, torch.Tensor]]:
    rng = np.random.default_rng(5)
    return [{"x": torch.from_numpy(rng.standard_normal((1, 3, 16, 16)).astype(np.float32))} for _ in range(n)]


def test_run_graph_calls_observe_for_each_node_output_in_order():
    graph = cnn()
    seen: list[tuple[str, torch.Tensor]] = []
    outputs = run_graph(graph, [cnn_samples(1)[0]["x"]], observe=lambda t, v: seen.append((t.name, v)))
    assert [name for name, _ in seen] == [t.name for n in graph.nodes for t in n.outputs]
    assert seen[-1][1].equal(outputs[0])
    assert run_graph(graph, [cnn_samples(1)[0]["x"]])[0].equal(outputs[0])


def test_collect_observes_the_named_tensors_over_every_sample(capsys):
    graph, samples = cnn(), cnn_samples()
    names = ["x", "r1", "s", "y"]
    collector = collect(graph, samples, names, device="cpu", progress=True)
    assert sorted(collector.names) == sorted(names)
    for name in names:
        values = []
        for feed in samples:
            found = {"x": feed["x"]}
            run_graph(graph, [feed["x"]], observe=lambda t, v: found.__setitem__(t.name, v))
            values.append(found[name].abs().max())
        assert collector.amax(name) == float(torch.stack(values).max())
        assert collector.count(name) == len(samples) * graph.tensors()[name].numel
    assert "calibrating: 3/3" in capsys.readouterr().err


def test_collect_refuses_unknown_constant_and_integer_tensors():
    graph = cnn()
    with pytest.raises(BrazeError, match="'nope'.*does not have"):
        collect(graph, cnn_samples(1), ["r1", "nope"])
    with pytest.raises(BrazeError, match="'w1' are constants"):
        collect(graph, cnn_samples(1), ["w1"])
    ints = Graph(inputs=[Tensor("i", DType.int64, (2,))], name="ints")
    ints.nodes = [Node("Neg", [ints.inputs[0]], [Tensor("n", DType.int64, (2,))], name="neg")]
    ints.outputs = list(ints.nodes[0].outputs)
    with pytest.raises(BrazeError, match=r"'n' \(int64\)"):
        collect(ints, [{"i": torch.tensor([1, 2])}], ["n"])


def test_collect_names_the_tensor_and_sample_where_infinity_appears():
    x, y = Tensor("x", DType.float32, (2,)), Tensor("y", DType.float32, (2,))
    graph = Graph(inputs=[x], outputs=[y], nodes=[Node("Exp", [x], [y], name="exp")], name="exp")
    samples = [{"x": torch.tensor([0.0, 1.0])}, {"x": torch.tensor([1.0, 200.0])}]
    with pytest.raises(BrazeError, match="sample 1: NaN or infinity in tensor.s. 'y'"):
        collect(graph, samples, ["x", "y"])
