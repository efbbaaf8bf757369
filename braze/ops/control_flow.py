"""Control flow: If, Loop and Scan, their subgraphs run by `run_graph`.

Each node takes its own inputs, then the values its subgraphs read from enclosing graphs
(`subgraph.py`). Shape inference types the subgraphs from the node's inputs: an If whose condition
is known at build time takes the chosen branch's types (and values, so shape arithmetic folds
through it), otherwise both branches' merged; loop-carried values are typed to a fixed point (a
dim that changes between iterations becomes unknown). A Loop's scan outputs have a known length
only when its trip count is (M known, and the condition provably true); when every input is known
at build time, Loop and Scan run for real and their outputs are known values.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..errors import ExecutionError, ModelError, ShapeError
from ..ir import TENSOR, DType, Graph, Node, Tensor
from .evaluate import device_of
from .infer import VALUE_LIMIT, Inferred, describe_node
from .opdef import op
from .subgraph import bind_outer, has_random, infer_body, merge, n_own_inputs, run_body, same_type, split_args

_ROUNDS = 16  # loop-carried types settle in a few rounds: each round only makes them looser


# -- If --------------------------------------------------------------------------------------------

def _infer_if(node: Node, values: Sequence[torch.Tensor | None]) -> list[Inferred]:
    """NOTE: with the condition unknown at build time, a branch that cannot take these shapes (a voice model's
    8 kHz branch given 16 kHz frames) does not fail the build: the node records it in `_invalid_branch`, takes
    the other branch's types, and fails at run time only if that branch is taken."""
    values, known = bind_outer(node, values)
    then_branch, else_branch = node.attrs["then_branch"], node.attrs["else_branch"]
    node.attrs[INVALID_BRANCH] = ""
    cond = values[0]
    if cond is not None:
        chosen, what = (then_branch, "then branch") if _truth(cond) else (else_branch, "else branch")
        return infer_body(node, chosen, [], known, what)
    a, a_error = _try_branch(node, then_branch, known, "then branch")
    b, b_error = _try_branch(node, else_branch, known, "else branch")
    if a is None or b is None:
        if a is None and b is None:
            raise a_error  # type: ignore[misc]
        failed, error = ("then branch", a_error) if a is None else ("else branch", b_error)
        node.attrs[INVALID_BRANCH] = f"{failed}: {error}"
        return a if b is None else b  # type: ignore[return-value]
    if len(a) != len(b):
        raise ShapeError(f"{describe_node(node)}: the then branch gives {len(a)} outputs, the else branch {len(b)}")
    return [merge(x, y, f"{describe_node(node)}: output {i} of the branches") for i, (x, y) in enumerate(zip(a, b))]


def _try_branch(node: Node, branch: Graph, known: dict, what: str) -> tuple[list[Inferred] | None, ShapeError | None]:
    """The branch's output types, or (None, why) when it cannot take these shapes: its values are then left
    typed as the model declared them, as an untaken branch's are."""
    made = [t for g in branch.walk() for n in g.nodes for t in n.outputs]
    declared = [(t.dtype, t.shape, t.kind) for t in made]
    try:
        return infer_body(node, branch, [], known, what), None
    except ShapeError as e:
        for t, (dtype, shape, kind) in zip(made, declared):
            t.dtype, t.shape, t.kind = dtype, shape, kind
        return None, e


INVALID_BRANCH = "_invalid_branch"  # set by shape inference: "else branch: why it cannot take these shapes"


def invalid_branches(graph: Graph) -> list[str]:
    """A line for each If of `graph` and of its subgraphs with a branch that cannot take the shapes inferred (the
    builder shows them)."""
    return [f"If {n.name!r}: its {n.attrs[INVALID_BRANCH].split(':')[0]} cannot take these shapes and fails at run "
            "time if its condition chooses it (fix the condition's input with a build-time constant to drop it)"
            for g in graph.walk() for n in g.nodes if n.op == "If" and n.attrs.get(INVALID_BRANCH)]


@op("If", since=1, infer=_infer_if, outer_inputs=True)
def if_(cond, *outer, then_branch: Graph, else_branch: Graph, _invalid_branch: str = ""):
    (cond,), env = split_args((cond, *outer), 1, [else_branch, then_branch])
    what = "then branch" if _truth(cond) else "else branch"
    if _invalid_branch.startswith(what):
        raise ExecutionError(f"the condition chose its {what}, which cannot run on inputs of the shapes this engine "
                             f"was built for ({_invalid_branch.removeprefix(what + ': ')}); build the engine for "
                             "inputs that branch takes, or fix the condition's input with a build-time constant")
    return run_body(then_branch if what == "then branch" else else_branch, [], env, what)


def inline_if(node: Node, cond: torch.Tensor, taken: set[str]) -> list[Node] | None:
    """The nodes that replace an If whose condition is known at build time: its chosen branch's nodes, which
    read the enclosing graph's tensors directly (`bind_outer` ran), writing the If's outputs. None where a name
    of the branch is among `taken` (the enclosing graph's tensor and node names)."""
    branch: Graph = node.attrs["then_branch" if _truth(cond) else "else_branch"]
    outer = {id(t) for t in branch.outer}
    inner = [t for t in branch.tensors().values() if id(t) not in outer]
    if any(t.name in taken for t in inner) or any(n.name in taken for n in branch.nodes):
        return None
    nodes = list(branch.nodes)
    producers = {id(t): n for n in nodes for t in n.outputs}
    renamed: dict[int, Tensor] = {}
    for i, (made, out) in enumerate(zip(branch.outputs, node.outputs)):
        producer = producers.pop(id(made), None)
        if producer is None:  # an outer tensor, a constant, or a value given twice
            source = renamed.get(id(made), made)
            nodes.append(Node("Identity", [source], [out], name=f"{node.name}/output_{i}", origin=node.origin))
            continue
        renamed[id(made)] = out
        producer.outputs = [out if t is made else t for t in producer.outputs]
        for n in nodes:
            n.inputs = [out if t is made else t for t in n.inputs]
    return nodes


def _truth(cond: torch.Tensor) -> bool:
    if cond.numel() != 1:
        raise ValueError(f"the condition must hold one element, it has shape {list(cond.shape)}")
    return bool(cond.reshape(()))


# -- Loop ------------------------------------------------------------------------------------------

def _infer_loop(node: Node, values: Sequence[torch.Tensor | None]) -> list[Inferred]:
    body: Graph = node.attrs["body"]
    values, known = bind_outer(node, values)
    n_carried = len(body.inputs) - 2
    own = node.inputs[:n_own_inputs(node)]
    if n_carried < 0 or len(own) != 2 + n_carried or len(body.outputs) < 1 + n_carried:
        raise ShapeError(f"{describe_node(node)}: its body takes {len(body.inputs)} inputs and gives "
                         f"{len(body.outputs)} outputs; the node gives {len(own) - 2} loop-carried values")
    m, cond = values[0], values[1]
    if m is not None and int(m.reshape(())) <= VALUE_LIMIT:
        folded = _run_known(node, values)
        if folded is not None:
            return folded
    header = [Inferred(DType.int64, ()), Inferred(DType.bool, (), torch.tensor(True))]  # cond_in is true in every trip
    initial = [Inferred.of(t) for t in own[2:]]  # type: ignore[union-attr]
    carried, outs = _settle(node, body, header, initial, [], known, 1)
    starts = own[1] is None or (cond is not None and _truth(cond))
    if own[0] is None and starts and outs[0].value is not None and _truth(outs[0].value):
        raise ModelError(f"{describe_node(node)}: it has no trip count and its condition stays true (its body "
                         f"gives {body.outputs[0].name!r} true in every trip): the loop never ends")
    trips = _trips(m, own[1] is not None, cond, outs[0])
    return carried + [_stacked(node, o, 0, trips, f"scan output {i}") for i, o in enumerate(outs[1 + n_carried:])]


def _trips(m: torch.Tensor | None, has_cond: bool, cond: torch.Tensor | None, cond_out: Inferred) -> int | None:
    """A Loop's trip count when known at build time: none when its condition starts false; M when the
    condition starts true (or is absent) and the body's is known true."""
    if has_cond and cond is not None and not _truth(cond):
        return 0
    starts = not has_cond or (cond is not None and _truth(cond))
    stays = cond_out.value is not None and _truth(cond_out.value)
    return int(m.reshape(())) if m is not None and starts and stays else None


@op("Loop", since=1, infer=_infer_loop, outer_inputs=True)
def loop(m=None, cond=None, *rest, body: Graph):
    n_carried = len(body.inputs) - 2
    own, env = split_args((m, cond, *rest), 2 + n_carried, [body])
    m, cond, carried = own[0], own[1], own[2:]
    device = device_of([m, cond, *carried, *env.values()])
    limit = None if m is None else int(m.reshape(()))
    going = True if cond is None else _truth(cond)
    steps: list[list[torch.Tensor]] = []
    while going and (limit is None or len(steps) < limit):
        i = torch.tensor(len(steps), dtype=torch.int64, device=device)
        outs = run_body(body, [i, torch.tensor(True, device=device), *carried], env, "body")
        going, carried = _truth(outs[0]), outs[1:1 + n_carried]
        steps.append(outs[1 + n_carried:])
    scans = body.outputs[1 + n_carried:]
    return (*carried, *(_stack([s[k] for s in steps], 0, t, device) for k, t in enumerate(scans)))


# -- Scan ------------------------------------------------------------------------------------------

def _scan_types(node: Node, body: Graph, states: list[Inferred], scans: list[Inferred], known: dict,
                in_axes: list[int], out_axes: list[int]) -> list[Inferred]:
    """Scan-9's output types from its states' and scan inputs' (each with the scan axis)."""
    steps = None
    slices = []
    for i, (t, axis) in enumerate(zip(scans, in_axes)):
        if t.shape is None:
            slices.append(Inferred(t.dtype, None))
            continue
        axis = _axis(axis, len(t.shape), node, f"scan input {i}")
        if isinstance(steps, int) and isinstance(t.shape[axis], int) and steps != t.shape[axis]:
            raise ShapeError(f"{describe_node(node)}: its scan inputs differ in length along their scan axes "
                             f"({steps} and {t.shape[axis]})")
        steps = t.shape[axis] if steps is None else steps
        slices.append(Inferred(t.dtype, t.shape[:axis] + t.shape[axis + 1:]))
    carried, outs = _settle(node, body, [], states, slices, known, 0)
    return carried + [_stacked(node, o, axis, steps, f"scan output {i}")
                    for i, (o, axis) in enumerate(zip(outs[len(states):], out_axes))]


def _scan_attrs(body: Graph, num_scan_inputs: int, in_axes: list[int] | None, in_dirs: list[int] | None,
                out_axes: list[int] | None, out_dirs: list[int] | None) -> tuple[list[int], ...]:
    """Scan-9's axes and directions, defaults (0: axis 0, forward) filled in."""
    n_out = len(body.outputs) - (len(body.inputs) - num_scan_inputs)
    return (list(in_axes or [0] * num_scan_inputs), list(in_dirs or [0] * num_scan_inputs),
            list(out_axes or [0] * n_out), list(out_dirs or [0] * n_out))


def _infer_scan_9(node: Node, values: Sequence[torch.Tensor | None]) -> list[Inferred]:
    body: Graph = node.attrs["body"]
    values, known = bind_outer(node, values)
    own = node.inputs[:n_own_inputs(node)]
    k = int(node.attrs["num_scan_inputs"])
    if not 0 < k <= len(own) or len(body.inputs) != len(own):
        raise ShapeError(f"{describe_node(node)}: num_scan_inputs is {k}; the body takes {len(body.inputs)} inputs, "
                         f"the node gives {len(own)}")
    folded = _run_known(node, values)
    if folded is not None:
        return folded
    a = node.attrs
    in_axes, _, out_axes, _ = _scan_attrs(body, k, a["scan_input_axes"], a["scan_input_directions"],
                                          a["scan_output_axes"], a["scan_output_directions"])
    types = [Inferred.of(t) for t in own]  # type: ignore[union-attr]
    return _scan_types(node, body, types[:len(own) - k], types[len(own) - k:], known, in_axes, out_axes)


@op("Scan", since=9, infer=_infer_scan_9, outer_inputs=True)
def scan_9(*args, body: Graph, num_scan_inputs: int, scan_input_axes: list[int] | None = None,
           scan_input_directions: list[int] | None = None, scan_output_axes: list[int] | None = None,
           scan_output_directions: list[int] | None = None):
    own, env = split_args(args, len(body.inputs), [body])
    n_state = len(own) - num_scan_inputs
    dirs = _scan_attrs(body, num_scan_inputs, scan_input_axes, scan_input_directions, scan_output_axes,
                       scan_output_directions)
    return _scan(body, own[:n_state], own[n_state:], env, *dirs)


def _scan(body: Graph, states: list[Any], scans: list[torch.Tensor], env: dict, in_axes: list[int], in_dirs: list[int],
          out_axes: list[int], out_dirs: list[int]) -> list[Any]:
    axes = [a % x.dim() if x.dim() else a for a, x in zip(in_axes, scans)]
    lengths = {x.shape[a] for a, x in zip(axes, scans)}
    if len(lengths) != 1:
        raise ValueError(f"the scan inputs differ in length along their scan axes: {sorted(lengths)}")
    steps = lengths.pop()
    outputs: list[list[Any]] = []
    for i in range(steps):
        slices = [x.select(a, steps - 1 - i if d else i) for x, a, d in zip(scans, axes, in_dirs)]
        outs = run_body(body, [*states, *slices], env, "body")
        states = outs[:len(states)]
        outputs.append(outs[len(states):])
    device = scans[0].device
    stacked = []
    for k, (t, axis, d) in enumerate(zip(body.outputs[len(states):], out_axes, out_dirs)):
        items = [o[k] for o in outputs]
        stacked.append(_stack(items[::-1] if d else items, axis, t, device))
    return [*states, *stacked]


def _infer_scan_8(node: Node, values: Sequence[torch.Tensor | None]) -> list[Inferred]:
    body: Graph = node.attrs["body"]
    values, known = bind_outer(node, values)
    own = node.inputs[:n_own_inputs(node)]
    k = int(node.attrs["num_scan_inputs"])
    if not 0 < k < len(own) or len(body.inputs) != len(own) - 1:
        raise ShapeError(f"{describe_node(node)}: num_scan_inputs is {k}; the body takes {len(body.inputs)} inputs, "
                         f"the node gives {len(own) - 1} after sequence_lens")
    folded = _run_known(node, values)
    if folded is not None:
        return folded
    types = [Inferred.of(t) for t in own[1:]]  # type: ignore[union-attr]
    batch = next((t.shape[0] for t in types if t.shape), None)
    unbatched = [Inferred(t.dtype, None if t.shape is None else t.shape[1:]) for t in types]
    n_out = len(body.outputs) - (len(types) - k)
    inner = _scan_types(node, body, unbatched[:len(types) - k], unbatched[len(types) - k:], known, [0] * k, [0] * n_out)
    return [Inferred(t.dtype, None if t.shape is None else (batch, *t.shape)) for t in inner]


@op("Scan", since=8, infer=_infer_scan_8, outer_inputs=True)
def scan_8(sequence_lens, *args, body: Graph, num_scan_inputs: int, directions: list[int] | None = None):
    own, env = split_args(args, len(body.inputs), [body])
    n_state = len(own) - num_scan_inputs
    in_dirs, n_out = list(directions or [0] * num_scan_inputs), len(body.outputs) - n_state
    batch, steps = own[n_state].shape[0], own[n_state].shape[1]
    lens = [steps] * batch if sequence_lens is None else [int(n) for n in sequence_lens.reshape(-1)]
    if len(lens) != batch or any(not 0 <= n <= steps for n in lens):
        raise ValueError(f"sequence_lens {lens} must give a length in [0, {steps}] for each of {batch} batch entries")
    runs = [_scan(body, [s[b] for s in own[:n_state]], [x[b, :lens[b]] for x in own[n_state:]], env,
                  [0] * num_scan_inputs, in_dirs, [0] * n_out, [0] * n_out) for b in range(batch)]
    states = [torch.stack([r[j] for r in runs]) for j in range(n_state)]
    scans = []
    for j in range(n_state, n_state + n_out):
        padded = [torch.nn.functional.pad(r[j], [0, 0] * (r[j].dim() - 1) + [0, steps - r[j].shape[0]]) for r in runs]
        scans.append(torch.stack(padded))
    return [*states, *scans]


# -- shared ----------------------------------------------------------------------------------------

def _settle(node: Node, body: Graph, header: list[Inferred], carried: list[Inferred], extra: list[Inferred],
            known: dict, offset: int) -> tuple[list[Inferred], list[Inferred]]:
    """Type a loop body to a fixed point. Its inputs are header + carried + extra; the carried values
    come back as its outputs from `offset` on. Returns the settled carried types and the outputs' types."""
    for _ in range(_ROUNDS):
        outs = infer_body(node, body, header + carried + extra, known, "body")
        settled = [merge(c, o, f"{describe_node(node)}: loop-carried value {i} of its body")
                   for i, (c, o) in enumerate(zip(carried, outs[offset:]))]
        if all(same_type(a, b) for a, b in zip(settled, carried)):
            return carried, outs
        carried = [Inferred(t.dtype, t.shape, None, t.kind) for t in settled]
    raise ShapeError(f"{describe_node(node)}: the types of its loop-carried values do not settle")


def _stacked(node: Node, t: Inferred, axis: int, steps: int | None, what: str) -> Inferred:
    """The type of per-iteration values `t` stacked along `axis` (`steps` of them, None: unknown)."""
    if t.kind != TENSOR:
        raise ShapeError(f"{describe_node(node)}: its {what} is a {t.kind.replace('_', ' ')}; scan outputs are tensors")
    if t.shape is None:
        return Inferred(t.dtype, None)
    axis = _axis(axis, len(t.shape) + 1, node, what)
    return Inferred(t.dtype, (*t.shape[:axis], steps, *t.shape[axis:]))


def _stack(items: list[torch.Tensor], axis: int, t: Tensor, device: torch.device) -> torch.Tensor:
    """Per-iteration values stacked along `axis`; with none, an empty tensor of the body output's type."""
    if items:
        if any(x.shape != items[0].shape for x in items):
            shapes = sorted({tuple(x.shape) for x in items})
            raise ValueError(f"a scan output changes shape between iterations: {shapes}")
        return torch.stack(items, dim=axis % (items[0].dim() + 1))
    shape = list(t.shape) if t.is_static else []
    shape.insert(axis % (len(shape) + 1), 0)
    return torch.empty(shape, dtype=t.dtype.torch, device=device)


def _axis(axis: int, rank: int, node: Node, what: str) -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"{describe_node(node)}: axis {axis} of its {what} is out of range for rank {rank}")
    return axis % rank


def _run_known(node: Node, values: Sequence[torch.Tensor | None]) -> list[Inferred] | None:
    """Every input known at build time: run the node for real; its outputs are known values."""
    from . import REGISTRY

    present = [v for t, v in zip(node.inputs, values) if t is not None]
    if any(v is None for v in present) or any(not t.is_tensor for t in node.inputs if t is not None):
        return None
    if has_random([node.attrs["body"]]):
        return None
    outs = REGISTRY.for_node(node).run(list(values), node.attrs, len(node.outputs))
    if not all(isinstance(o, torch.Tensor) for o in outs):
        return None
    return [Inferred(DType.from_torch(o.dtype), tuple(o.shape), o) for o in outs]


OPS = [if_, loop, scan_8, scan_9]
