"""Patterns over the graph and the driver that rewrites with them to a fixed point.

A pattern describes a tensor by how it was produced:

    Op("Relu", Op("Conv", Any("x"), Const("w"), name="conv"), name="relu")

matches a Relu node whose input comes from a Conv whose weight is a constant. `Any` binds any
tensor, `Const` a constant one, `Op` a tensor produced by a node of the given op type(s) (of any
domain unless `domain=` says; `any_inputs=True` ignores the inputs, `partial=True` matches the
first inputs only); `name=`
binds the node (for Op) or tensor (for Any/Const) in the Match. Interior nodes must have no reader
outside the match and must not produce a graph output, so fusing them loses nothing: `one_use=True`
(the default) asks for a single consumer at once; `one_use=False` lets a node be read more than once
within the pattern (the centered x of a LayerNorm), and the driver checks the whole match is closed.
`where=` adds a predicate over the node (or tensor) and the match so far; `commute=True` also tries a
binary op's inputs swapped.

A Rule pairs a pattern with a replacement function `(match, graph) -> list[Node] | None`. The
replacement builds nodes that produce the matched root's outputs (the same Tensor objects), or
returns None to decline. `rewrite()` applies a table of rules until none fires, counting each rule.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any as AnyType
from typing import Callable, Iterable, Sequence

from ..ir import Graph, Node, Tensor

Predicate = Callable[[AnyType, "Match"], bool]
_NODES = "__nodes__"


class Match(dict):
    """Names bound by a pattern: Node for Op patterns, Tensor for Any/Const; `.root` is the matched node."""

    root: Node

    def nodes(self) -> list[Node]:
        """Every node the pattern matched, named or not, in match order."""
        seen: dict[int, Node] = {}
        for n in self.get(_NODES, ()):
            seen.setdefault(id(n), n)
        return list(seen.values())


@dataclass
class Pattern:
    name: str | None = None
    where: Predicate | None = None

    def match(self, t: Tensor, ctx: "_Ctx", m: Match) -> bool:
        raise NotImplementedError

    def _bind(self, value: AnyType, m: Match) -> bool:
        if self.name is None:
            return True
        if self.name in m:
            return m[self.name] is value
        m[self.name] = value
        return True


@dataclass
class Any(Pattern):
    """Any tensor (the same name twice must be the same tensor)."""

    def __init__(self, name: str | None = None, where: Predicate | None = None):
        super().__init__(name, where)

    def match(self, t: Tensor, ctx: "_Ctx", m: Match) -> bool:
        if self.where is not None and not self.where(t, m):
            return False
        return self._bind(t, m)


@dataclass
class Const(Pattern):
    """A constant tensor (an initializer or a folded value)."""

    def __init__(self, name: str | None = None, where: Predicate | None = None):
        super().__init__(name, where)

    def match(self, t: Tensor, ctx: "_Ctx", m: Match) -> bool:
        if not t.is_constant or (self.where is not None and not self.where(t, m)):
            return False
        return self._bind(t, m)


@dataclass
class Op(Pattern):
    """A tensor produced (as output 0) by a node of op type `op` (a name or a tuple of names)."""

    op: str | tuple[str, ...] = ""
    inputs: Sequence[Pattern] | None = None
    one_use: bool = True
    commute: bool = False
    partial: bool = False
    domain: str | None = None

    def __init__(self, op: str | tuple[str, ...], *inputs: Pattern, name: str | None = None,
                 where: Predicate | None = None, one_use: bool = True, commute: bool = False,
                 partial: bool = False, domain: str | None = None, any_inputs: bool = False):
        super().__init__(name, where)
        self.op = op
        self.inputs = None if any_inputs else list(inputs)
        self.one_use = one_use
        self.commute = commute
        self.partial = partial
        self.domain = domain

    def ops(self) -> tuple[str, ...]:
        return (self.op,) if isinstance(self.op, str) else tuple(self.op)

    def match(self, t: Tensor, ctx: "_Ctx", m: Match) -> bool:
        node = ctx.producer.get(id(t))
        if node is None or node.outputs[0] is not t:
            return False
        if self.one_use and not ctx.single_use(t):
            return False
        return self.match_node(node, ctx, m)

    def match_node(self, node: Node, ctx: "_Ctx", m: Match) -> bool:
        if node.op not in self.ops() or (self.domain is not None and node.domain != self.domain):
            return False
        if self.inputs is not None:
            if len(node.inputs) < len(self.inputs) or (not self.partial and len(node.inputs) != len(self.inputs)):
                return False
            orders = [list(node.inputs)]
            if self.commute and len(node.inputs) == 2:
                orders.append(list(reversed(node.inputs)))
            for order in orders:
                trial = Match(m)
                if all(t is not None and p.match(t, ctx, trial) for p, t in zip(self.inputs, order)):
                    m.clear()
                    m.update(trial)
                    break
            else:
                return False
        if self.where is not None and not self.where(node, m):
            return False
        m[_NODES] = m.get(_NODES, ()) + (node,)
        return self._bind(node, m)


@dataclass
class Rule:
    name: str
    pattern: Op
    replace: Callable[[Match, Graph], "list[Node] | None"]


class _Ctx:
    def __init__(self, graph: Graph):
        self.producer = {id(t): n for n in graph.nodes for t in n.outputs}
        self.uses: Counter[int] = Counter(id(t) for n in graph.nodes for t in n.inputs if t is not None)
        self.outputs = {id(t) for t in graph.outputs}

    def single_use(self, t: Tensor) -> bool:
        return self.uses[id(t)] == 1 and id(t) not in self.outputs

    def closed(self, m: Match) -> bool:
        """Whether every output of the match's interior nodes is read only by matched nodes."""
        nodes = m.nodes()
        reads: Counter[int] = Counter(id(t) for n in nodes for t in n.inputs if t is not None)
        return all(self.uses[id(t)] == reads[id(t)] and id(t) not in self.outputs
                   for n in nodes if n is not m.root for t in n.outputs)


def match(pattern: Op, node: Node, graph: Graph) -> Match | None:
    """Match `pattern` with `node` as its root; None if it does not fit."""
    m = Match()
    ctx = _Ctx(graph)
    m.root = node
    if not pattern.match_node(node, ctx, m) or not ctx.closed(m):
        return None
    return m


def rewrite(graph: Graph, rules: Iterable[Rule], fired: Counter[str] | None = None) -> int:
    """Apply `rules` until none fires; returns how many rewrites happened (counted per rule in `fired`).

    After each rewrite the nodes it made dead are removed at once, so no rule sees a stale node,
    and the scan resumes at the first new node (which may itself be the root of a further match).
    """
    fired = Counter() if fired is None else fired
    by_op: dict[str, list[Rule]] = {}
    for rule in rules:
        for op in rule.pattern.ops():
            by_op.setdefault(op, []).append(rule)
    total = 0
    while True:
        done = _scan(graph, by_op, fired)
        total += done
        if not done:
            return total


def _scan(graph: Graph, by_op: dict[str, list[Rule]], fired: Counter[str]) -> int:
    count = 0
    ctx = _Ctx(graph)
    index = 0
    while index < len(graph.nodes):
        node = graph.nodes[index]
        for rule in by_op.get(node.op, ()):
            m = Match()
            m.root = node
            if not rule.pattern.match_node(node, ctx, m) or not ctx.closed(m):
                continue
            new = rule.replace(m, graph)
            if new is None:
                continue
            graph.nodes[index:index + 1] = new
            graph.cleanup()
            fired[rule.name] += 1
            count += 1
            ctx = _Ctx(graph)
            index = _position(graph, new, index) - 1
            break
        index += 1
    return count


def _position(graph: Graph, new: list[Node], old_index: int) -> int:
    alive = {id(n): i for i, n in enumerate(graph.nodes)}
    return min((alive[id(n)] for n in new if id(n) in alive), default=min(old_index, len(graph.nodes)))
