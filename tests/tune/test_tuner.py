"""The tuner's choice on the CPU: fake tactics with known results and a fake timer with known times per
(tactic, configuration), so every rule of the choice is checked without a GPU — the fastest wins, failing,
disagreeing and NaN-producing candidates are dropped, view tactics and single candidates are not timed, ties go
to the earlier candidate, and a rebuild with the timing cache takes the cached decision without timing."""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest
import torch

from braze.build import tactics as tactics_module
from braze.build.tactics import choose_tactics
from braze.device import Target
from braze.errors import UnsupportedError
from braze.ir import DType, Graph, Node, Tensor
from braze.kernels.tactic import TacticBase
from braze.tune import TimingCache, layer_key


TARGET = Target.parse("cpu")
DEVICE = {"kind": "cuda", "name": "Fake GPU", "compute_capability": "9.0", "cuda": "13.0", "cudnn": 91000,
          "torch": "2.11.0", "triton": "3.6.0"}


class Clock:
    """The fake timer: `times[(tactic, config)]` milliseconds for the kernel that `run()` calls; records calls."""

    def __init__(self, times: dict[tuple[str, str], float]):
        self.times = times
        self.last: tuple[str, str] | None = None
        self.calls: list[tuple[str, str]] = []

    def __call__(self, run: Callable[[], object], device: torch.device, *, flush: Any = None) -> float:
        self.last = None
        run()
        assert self.last is not None, "the timed callable ran no kernel"
        self.calls.append(self.last)
        return self.times[self.last]


def key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


class Fake(TacticBase):
    """Relu, computed right or in one of the ways a real candidate goes wrong."""

    def __init__(self, name: str, clock: Clock, *, configs: list[dict[str, Any]] | None = None, how: str = "right",
                 supports: bool = True, view: bool = False):
        self.name, self.clock, self.how, self._supports = name, clock, how, supports
        self._configs = configs or [{}]
        self.moves_no_data = view
        self.compiled: list[dict[str, Any]] = []

    def supports(self, node: Node, target: Target) -> bool:
        return self._supports

    def configs(self, node: Node, target: Target, level: int) -> list[dict[str, Any]]:
        return [dict(c) for c in self._configs]

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        self.compiled.append(config)
        if self.how == "compile_fails":
            raise RuntimeError("no kernel for this shape")
        runs = 0

        def kernel(inputs, outputs):
            nonlocal runs
            runs += 1
            self.clock.last = (self.name, key(config))
            if self.how == "run_fails" or (self.how == "fails_when_timed" and runs > 1):
                raise RuntimeError("illegal memory access")
            y = torch.relu(inputs[0])
            if self.how == "random":
                y = torch.rand_like(y)
            elif self.how == "wrong":
                y = y + 1.0
            elif self.how == "nan":
                y = y.clone()
                y.view(-1)[3] = float("nan")
            elif self.how == "inf":
                y = y.clone()
                y.view(-1)[3] = float("inf")
            outputs[0].copy_(y)

        return kernel


def relu_graph(n: int = 1) -> Graph:
    x = Tensor("x", DType.float32, (4, 8))
    nodes, prev = [], x
    for i in range(n):
        y = Tensor(f"y{i}", DType.float32, (4, 8))
        nodes.append(Node("Relu", [prev], [y], name=f"relu{i}"))
        prev = y
    return Graph([x], [prev], nodes, name="relus")


def choose(graph: Graph, candidates: list[Fake], clock: Clock, monkeypatch, cache: TimingCache | None = None,
           level: int = 3, say: Callable[[str], None] | None = None):
    monkeypatch.setattr(tactics_module, "tactics_for", lambda target: candidates)
    return choose_tactics(graph, TARGET, level, say or (lambda msg: None), cache, timer=clock, tune=True)


def test_the_fastest_candidate_and_configuration_wins(monkeypatch):
    clock = Clock({("a", key({"block": 64})): 2.0, ("a", key({"block": 128})): 0.5, ("b", key({})): 1.0})
    chosen = choose(relu_graph(), [Fake("a", clock, configs=[{"block": 64}, {"block": 128}]), Fake("b", clock)],
                    clock, monkeypatch)
    assert (chosen["relu0"].tactic, chosen["relu0"].config) == ("a", {"block": 128})
    assert sorted(clock.calls) == sorted(clock.times)  # each candidate timed once


def test_without_tuning_the_first_supporting_candidate_is_taken_untimed(monkeypatch):
    clock = Clock({("a", key({})): 9.0, ("b", key({})): 1.0})
    candidates = [Fake("x", clock, supports=False), Fake("a", clock), Fake("b", clock)]
    assert choose(relu_graph(), candidates, clock, monkeypatch, level=0)["relu0"].tactic == "a"
    monkeypatch.setattr(tactics_module, "tactics_for", lambda target: candidates)
    cpu = choose_tactics(relu_graph(), TARGET, 3, lambda msg: None, None, timer=clock)  # the CPU is not tuned
    assert cpu["relu0"].tactic == "a" and clock.calls == []


def test_a_single_candidate_is_not_timed(monkeypatch):
    clock = Clock({})
    chosen = choose(relu_graph(), [Fake("x", clock, supports=False), Fake("only", clock)], clock, monkeypatch)
    assert chosen["relu0"].tactic == "only" and clock.calls == []


@pytest.mark.parametrize("how", ["compile_fails", "run_fails", "wrong", "nan", "inf"])
def test_a_faster_candidate_that_fails_or_is_wrong_is_dropped(monkeypatch, how):
    clock = Clock({("bad", key({})): 0.1, ("good", key({})): 1.0})
    said: list[str] = []
    chosen = choose(relu_graph(), [Fake("good", clock), Fake("bad", clock, how=how)], clock, monkeypatch,
                    say=said.append)
    assert chosen["relu0"].tactic == "good"
    assert ("bad", key({})) not in clock.calls
    assert any("bad" in line and ("failed" in line or "disagrees" in line) for line in said), said


def test_a_candidate_that_fails_while_timed_is_dropped_not_raised(monkeypatch):
    clock = Clock({("flaky", key({})): 0.1, ("good", key({})): 1.0})
    chosen = choose(relu_graph(), [Fake("good", clock), Fake("flaky", clock, how="fails_when_timed")], clock,
                    monkeypatch)
    assert chosen["relu0"].tactic == "good"


def test_a_wrong_first_candidate_does_not_become_the_reference(monkeypatch):
    """The agreement check compares with the op's own reference implementation, not with whichever
    candidate happened to run first: a wrong fast kernel listed first must not win."""
    clock = Clock({("wrong", key({})): 0.1, ("good", key({})): 1.0, ("also_good", key({})): 2.0})
    chosen = choose(relu_graph(), [Fake("wrong", clock, how="wrong"), Fake("good", clock), Fake("also_good", clock)],
                    clock, monkeypatch)
    assert chosen["relu0"].tactic == "good"


def test_when_no_candidate_runs_the_error_names_the_layer_and_the_candidates(monkeypatch):
    clock = Clock({})
    with pytest.raises(UnsupportedError, match=r"'relu0' \(Relu\).*a, b"):
        choose(relu_graph(), [Fake("a", clock, how="compile_fails"), Fake("b", clock, how="run_fails")], clock,
               monkeypatch)


def test_view_tactics_are_not_timed_and_win(monkeypatch):
    clock = Clock({("copy", key({})): 0.001})
    chosen = choose(relu_graph(), [Fake("copy", clock), Fake("view", clock, view=True)], clock, monkeypatch)
    assert chosen["relu0"].tactic == "view"
    assert ("view", key({})) not in clock.calls


def test_uncapturable_kernels_lose_to_timed_ones_without_being_timed(monkeypatch):
    clock = Clock({("graphable", key({})): 50.0})
    host = Fake("host", clock)
    compile_host = host.compile

    def uncapturable(node, config, target):
        kernel = compile_host(node, config, target)
        kernel.capturable = False
        return kernel

    host.compile = uncapturable
    chosen = choose(relu_graph(), [host, Fake("graphable", clock)], clock, monkeypatch)
    assert chosen["relu0"].tactic == "graphable" and ("host", key({})) not in clock.calls


def test_ties_go_to_the_earlier_candidate_every_time(monkeypatch):
    times = {("a", key({"k": 1})): 1.0, ("a", key({"k": 2})): 1.0, ("b", key({})): 1.0}
    for _ in range(3):
        clock = Clock(times)
        chosen = choose(relu_graph(), [Fake("a", clock, configs=[{"k": 1}, {"k": 2}]), Fake("b", clock)], clock,
                        monkeypatch)
        assert (chosen["relu0"].tactic, chosen["relu0"].config) == ("a", {"k": 1})


def test_the_cache_records_the_decision_and_a_rebuild_takes_it_without_timing(monkeypatch, tmp_path):
    path = tmp_path / "timing.cache"
    device = DEVICE
    times = {("a", key({"block": 64})): 2.0, ("a", key({"block": 128})): 0.5, ("b", key({})): 1.0}
    clock = Clock(times)
    graph = relu_graph(2)
    cache = TimingCache(device, path)
    first = choose(graph, [Fake("a", clock, configs=[{"block": 64}, {"block": 128}]), Fake("b", clock)], clock,
                   monkeypatch, cache)
    cache.save()
    assert cache.misses == 1 and cache.hits == 1  # the two layers have one signature: the second is not timed
    assert len(clock.calls) == 3 and first["relu1"] == first["relu0"]
    entry = json.loads(path.read_text())["entries"][layer_key(graph.nodes[0])]
    assert entry["tactic"] == "a" and entry["config"] == {"block": 128} and entry["ms"] == 0.5
    assert entry["candidates"] == {"a{'block': 64}": 2.0, "a{'block': 128}": 0.5, "b": 1.0}

    again = Clock({})  # any timing raises KeyError
    candidates = [Fake("a", again, configs=[{"block": 64}, {"block": 128}]), Fake("b", again)]
    reread = TimingCache(device, path)
    second = choose(relu_graph(2), candidates, again, monkeypatch, reread)
    assert second == first and again.calls == [] and all(not c.compiled for c in candidates)
    assert reread.hits == 2 and reread.misses == 0


def test_a_cached_tactic_that_no_longer_supports_the_layer_is_timed_again(monkeypatch, tmp_path):
    graph = relu_graph()
    cache = TimingCache(DEVICE, tmp_path / "c.json")
    cache.put(layer_key(graph.nodes[0]), "gone", {}, 0.01, {})
    cache.put(layer_key(graph.nodes[0]) + "x", "a", {}, 0.01, {})
    clock = Clock({("a", key({"k": 1})): 1.0, ("b", key({})): 2.0})
    chosen = choose(graph, [Fake("gone", clock, supports=False), Fake("a", clock, configs=[{"k": 1}]),
                            Fake("b", clock)], clock, monkeypatch, cache)
    assert chosen["relu0"].tactic == "a" and len(clock.calls) == 2
    # a cached configuration the tactic no longer offers is not trusted either
    cache.put(layer_key(graph.nodes[0]), "a", {"k": 99}, 0.01, {})
    clock = Clock({("a", key({"k": 1})): 3.0, ("b", key({})): 2.0})
    chosen = choose(graph, [Fake("a", clock, configs=[{"k": 1}]), Fake("b", clock)], clock, monkeypatch, cache)
    assert chosen["relu0"].tactic == "b" and len(clock.calls) == 2


def test_a_layer_that_draws_random_numbers_is_still_tuned(monkeypatch):
    """No single right answer: the op's reference is not the yardstick, and the build does not fail."""
    x, y = Tensor("x", DType.float32, (4, 8)), Tensor("y", DType.float32, (4, 8))
    graph = Graph([x], [y], [Node("RandomUniformLike", [x], [y], name="noise")])
    clock = Clock({("a", key({})): 2.0, ("b", key({})): 1.0})
    a, b = Fake("a", clock, how="random"), Fake("b", clock, how="random")
    assert choose(graph, [a, b], clock, monkeypatch)["noise"].tactic == "a"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_cpu_tactics_all_agree_with_the_reference_when_tuned(monkeypatch, precision):
    """The real CPU candidates (oneDNN with prepared weights, views, reference) pass the tuner's check on an
    optimized graph; with equal times each layer keeps the first candidate, as an untuned build does."""
    import braze
    from tests.conftest import tiny_cnn

    engine = braze.Builder("cpu").build(tiny_cnn(), braze.BuilderConfig(precision=precision))
    said: list[str] = []
    timed: list[int] = []

    def same_time(run, device, *, flush=None):
        run()
        timed.append(1)
        return 1.0

    chosen = choose_tactics(engine.graph, TARGET, 3, said.append, None, timer=same_time, tune=True)
    assert {n: (c.tactic, c.config) for n, c in chosen.items()} == \
        {n: (c.tactic, c.config) for n, c in engine.plan.layers.items()}
    assert not [line for line in said if "failed" in line or "disagrees" in line], said
    assert timed


class FakeInt8(TacticBase):
    """A QGemm kernel: the reference's int8 output, then `off` added to every other element (saturating)."""

    def __init__(self, name: str, clock: Clock, off: int):
        self.name, self.clock, self.off = name, clock, off

    def supports(self, node: Node, target: Target) -> bool:
        return True

    def compile(self, node: Node, config: dict[str, Any], target: Target):
        from braze.ops import REGISTRY

        opdef = REGISTRY.for_node(node)

        def kernel(inputs, outputs):
            self.clock.last = (self.name, key(config))
            assert inputs[0].abs().sum() > 0, "INT8 activations sampled as zeros"
            y = opdef.run(list(inputs), node.attrs, 1, None)[0].to(torch.int32)
            y.view(-1)[::2] += self.off
            outputs[0].copy_(y.clamp(-128, 127).to(torch.int8))

        return kernel


@pytest.mark.parametrize("off, kept", [(1, True), (2, False)])
def test_int8_candidates_may_differ_from_the_reference_by_one_step(monkeypatch, off, kept):
    g = torch.Generator().manual_seed(0)
    x = Tensor("x", DType.int8, (4, 16))
    w = Tensor("w", DType.int8, (16, 8), torch.randint(-127, 128, (16, 8), generator=g, dtype=torch.int8))
    s = Tensor("s", DType.float32, (8,), torch.full((8,), 0.01))
    y = Tensor("y", DType.int8, (4, 8))
    node = Node("QGemm", [x, w, s], [y], {"x_scale": 0.05, "out_scale": 0.5, "output_dtype": 3}, name="qgemm",
                domain="braze")
    clock = Clock({("exact", key({})): 1.0, ("close", key({})): 0.5})
    chosen = choose(Graph([x], [y], [node], name="q"), [FakeInt8("exact", clock, 0), FakeInt8("close", clock, off)],
                    clock, monkeypatch)
    assert chosen["qgemm"].tactic == ("close" if kept else "exact")
