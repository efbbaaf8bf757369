"""ExecutionContext: one engine's activation memory, allocated once, and the loop that runs it.

Each context owns an arena (one allocation, carved into the views the builder planned); weights and
kernels are the engine's, shared. On CUDA the context also owns static input buffers, and the first
run captures the whole engine as one CUDA graph on the context's own stream, which later runs
replay; tensors that library kernels allocate come from that graph's private pool, once.

A context runs one inference at a time, as TensorRT's do: use one context per thread (or per stream)
to run an engine concurrently. Two threads inside one context's run at once would share its arena
and corrupt each other's outputs, so a call that finds the context busy raises a BrazeError saying
so rather than wait (a lock would hide the misuse and serialize what the user meant to run in
parallel). On CUDA, a run enqueued on another stream than the previous run waits for it on the GPU.

Sequences and optionals travel as a list of tensors and as their element or None; they are never
in the arena, and their inputs get no static buffer.

`run_layers` runs layer by layer (never the CUDA graph) and hands each layer's outputs, copied, to an
observer: what `braze compare --per-layer` compares, with every fusion in place.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, Callable, Mapping

import numpy as np
import torch

from ..device import check_memory
from ..errors import BrazeError, ExecutionError, InputError
from ..ir import (OPTIONAL_SEQUENCE, OPTIONAL_TENSOR, SEQUENCE, TENSOR, DType, Tensor, contiguous_strides, format_shape,
                  to_numpy, to_torch)
from ..tune.timing import time_in_cuda_graph, time_kernel
from .engine import Binding, Engine


Observer = Callable[[str, list[str], list[Any]], None]
"""Called after each layer by `run_layers`: (layer name, its output tensor names, copies of its outputs)."""

_CAPTURE_LOCK = threading.Lock()
_BUSY = ("this execution context is being used by another thread; create one context per thread "
         "(engine.create_execution_context()): contexts share the engine's weights, each has its own activations")


class ExecutionContext:
    def __init__(self, engine: Engine):
        # NOTE: here, not in create_execution_context, so that a context made directly is checked too
        check_memory(engine.device_memory_size, 0, engine.target, what="an execution context of this engine")
        self.engine = engine
        device = engine.target.device
        self.device = device
        self.arena = torch.empty(engine.plan.memory.arena_size, dtype=torch.uint8, device=device)
        self._values: list[torch.Tensor | None] = list(engine.weights)
        strides = engine.plan.memory.strides
        for i, slot in enumerate(engine.slots):
            if slot.kind == "activation":
                t = slot.tensor
                typed = self.arena[slot.offset:].view(t.dtype.torch)  # type: ignore[union-attr]
                stride = strides.get(t.name) or contiguous_strides(t.shape)  # type: ignore[arg-type]
                self._values[i] = typed.as_strided(t.shape, stride)  # type: ignore[arg-type]
        self._cuda = engine.target.is_cuda
        # NOTE: a run-time allocated slot is handed to its kernel as None on every run, never last run's tensor
        self._dynamic = frozenset(i for i, slot in enumerate(engine.slots) if slot.kind == "dynamic")
        self._static_inputs: list[torch.Tensor | None] = []  # per input; None for sequences and optionals
        if self._cuda:
            for b, slot in zip(engine.inputs, engine.input_slots):
                buffer = None
                if b.kind == TENSOR:
                    buffer = torch.zeros(b.shape, dtype=b.dtype.torch, device=device)  # type: ignore[arg-type]
                    self._values[slot] = buffer
                self._static_inputs.append(buffer)
            self.stream = torch.cuda.Stream(device)
        self._fixed = list(self._values)
        # NOTE: held for the whole of every run (infer, execute_async, profile); taken without waiting
        self._busy = threading.Lock()
        self._last_stream: torch.cuda.Stream | None = None  # the stream the last CUDA run was enqueued on
        self._graph: torch.cuda.CUDAGraph | None = None
        self.eager_reason: str | None = None  # why this context runs without a CUDA graph, if it does
        self.graph_pool_bytes = 0
        if self._cuda:
            if engine.graphable:
                with _CAPTURE_LOCK:
                    self._capture()
            else:
                self.eager_reason = "the engine has layers that cannot be captured (run-time shapes or host work)"

    # -- public ------------------------------------------------------------------------------------

    def infer(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Run the engine on `feeds` (name -> numpy array, or torch tensor on the CPU or the engine's device).

        Returns name -> output: numpy arrays, or torch tensors (on the engine's device) when any
        input was a torch tensor. Outputs are copies: the next run does not change them."""
        self._enter()
        try:
            return self._infer(feeds)
        finally:
            self._busy.release()

    def execute_async(self, bindings: Mapping[str, torch.Tensor], stream: torch.cuda.Stream | None = None
                      ) -> dict[str, torch.Tensor]:
        """Enqueue one run on `stream` (default: the current stream) without synchronizing (CUDA engines).

        `bindings` holds a CUDA tensor for every input and, optionally, for outputs to be written; inputs
        that are this context's own buffers (`input_buffer(name)`) are read in place, others are copied
        in on the stream. Returns every output: the given tensors, or this context's output tensors,
        valid until the next run. A run on another stream than the last one waits for the last on the GPU."""
        if not self._cuda:
            raise BrazeError("execute_async runs CUDA engines; for a CPU engine call infer()")
        if not isinstance(bindings, Mapping):
            raise InputError(f"execute_async takes a mapping of input name -> CUDA tensor, not a "
                             f"{type(bindings).__name__}; the engine's inputs are {self._describe_inputs()}")
        self._enter()
        try:
            inputs = {b.name: bindings[b.name] for b in self.engine.inputs if b.name in bindings}
            values = self._check(inputs, copy=False)
            stream = stream or torch.cuda.current_stream(self.device)
            with torch.cuda.stream(stream):
                self._follow(stream)
                for buffer, value, slot in zip(self._static_inputs, values, self.engine.input_slots):
                    if buffer is None:
                        self._values[slot] = value
                    elif value.data_ptr() != buffer.data_ptr():
                        buffer.copy_(value, non_blocking=True)
                self._execute()
                results = {}
                for b, slot in zip(self.engine.outputs, self.engine.output_slots):
                    out = self._values[slot]
                    given = bindings.get(b.name)
                    if given is not None and isinstance(out, torch.Tensor):
                        given.copy_(out, non_blocking=True)
                        out = given
                    results[b.name] = out
            return results
        finally:
            self._busy.release()

    def input_buffer(self, name: str) -> torch.Tensor:
        """The static device buffer of input `name` (CUDA): write into it and execute_async reads it in place."""
        for b, buffer in zip(self.engine.inputs, self._static_inputs):
            if b.name == name:
                if buffer is None:
                    raise InputError(f"input {name!r} is a {b.kind.replace('_', ' ')}: it has no static buffer")
                return buffer
        raise InputError(f"no input named {name!r}; the engine's inputs are {self._describe_inputs()}")

    def run_layers(self, feeds: Mapping[str, Any], observe: Observer) -> dict[str, Any]:
        """Run the engine on `feeds` layer by layer (never as the CUDA graph) and call `observe(layer, output_names,
        outputs)` after each layer, with copies of its outputs made before the arena reuses their memory: tensors
        on the engine's device (a sequence as a list, an absent optional as None), named as in the engine's graph.
        Returns the outputs as `infer` does. For accuracy tools (`braze compare --per-layer`): slower than `infer`,
        and the layers' outputs are what the fused layers compute, so no fusion is undone to observe them."""
        self._enter()
        try:
            values = self._check(feeds)
            as_torch = any(isinstance(x, torch.Tensor) for v in feeds.values()
                           for x in (v if isinstance(v, (list, tuple)) else [v]))
            saved = list(self._values)  # NOTE: a captured graph keeps writing to these tensors; restore them after
            try:
                with torch.cuda.stream(self.stream) if self._cuda else contextlib.nullcontext():
                    if self._cuda:
                        self._follow(self.stream)
                    self._bind(values)
                    with self._flags():
                        self._run(observe=observe)
                    outputs = [_copy(self._values[slot]) for slot in self.engine.output_slots]
                if self._cuda:
                    self.stream.synchronize()
            finally:
                self._values[:] = saved
            return {b.name: (v if as_torch else _to_numpy(v, b.dtype)) for b, v in zip(self.engine.outputs, outputs)}
        finally:
            self._busy.release()

    @property
    def uses_cuda_graph(self) -> bool:
        return self._graph is not None

    def profile(self, feeds: Mapping[str, Any], runs: int = 20) -> list[tuple[str, float]]:
        """Per-layer time as (layer, milliseconds): one eager pass computes every layer's real inputs, then
        each layer runs on them. On CUDA, `runs` back-to-back calls of the layer are captured as one CUDA
        graph and replayed, so the time is the layer's own GPU time with no host launch gaps (as in the
        engine's graph replay, L2 warm); a layer that cannot be captured is timed eagerly, launches
        included. On the CPU, the wall clock's median."""
        self._enter()
        try:
            return self._profile(feeds, runs)
        finally:
            self._busy.release()

    # -- running -----------------------------------------------------------------------------------

    def _enter(self) -> None:
        if not self._busy.acquire(blocking=False):
            raise BrazeError(_BUSY)

    def _follow(self, stream: torch.cuda.Stream) -> None:
        """Order this run after the last one when they are enqueued on different streams (they share the arena)."""
        last, self._last_stream = self._last_stream, stream
        if last is not None and last != stream:
            stream.wait_stream(last)

    def _infer(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        values = self._check(feeds)
        as_torch = any(isinstance(x, torch.Tensor) for v in feeds.values()
                       for x in (v if isinstance(v, (list, tuple)) else [v]))
        if self._cuda:
            with torch.cuda.stream(self.stream):
                self._follow(self.stream)
                self._bind(values)
                self._execute()
                outputs = [_copy(self._values[slot]) for slot in self.engine.output_slots]
            self.stream.synchronize()
        else:
            self._bind(values)
            self._execute()
            outputs = [_copy(self._values[slot]) for slot in self.engine.output_slots]
            self._values[:] = self._fixed
        return {b.name: (v if as_torch else _to_numpy(v, b.dtype)) for b, v in zip(self.engine.outputs, outputs)}

    def _profile(self, feeds: Mapping[str, Any], runs: int) -> list[tuple[str, float]]:
        self._infer(feeds)
        self._bind(self._check(feeds))
        saved = list(self._values)  # NOTE: a captured graph keeps writing to these tensors; restore them after
        timings = []
        with self._flags():
            self._run(release=False)
            for step in self.engine.steps:
                ins = [None if s is None else self._values[s] for s in step.inputs]
                outs = [self._values[s] if self.engine.slots[s].kind == "activation" else None for s in step.outputs]
                run = functools.partial(step.kernel, ins, outs)
                if self._cuda and step.capturable:
                    ms = time_in_cuda_graph(run, self.device, self.stream, runs)
                else:
                    ms = time_kernel(run, self.device, warmup=1, repeat=runs)
                timings.append((step.node.name, ms))
        self._values[:] = saved if self._cuda else self._fixed
        return timings

    def _bind(self, values: list[Any]) -> None:
        for buffer, value, slot in zip(self._static_inputs or [None] * len(values), values, self.engine.input_slots):
            if buffer is None:
                self._values[slot] = value
            else:
                buffer.copy_(value, non_blocking=True)

    def _execute(self) -> None:
        if self._graph is None:
            with self._flags():
                self._run()
            return
        self._graph.replay()

    def _capture(self) -> None:
        """Warm up eagerly on the (zeroed) static inputs (library handles, autotuned algorithms, Triton
        compiles), then capture on the context's own stream, so contexts never share a capture stream or
        workspace. Contexts capture when created, one at a time, and are then safe to run concurrently."""
        device = self.device
        with torch.cuda.stream(self.stream), self._flags():
            self._run()
            self._values[:] = self._fixed
            self.stream.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                    self._run()
            except (RuntimeError, ExecutionError) as e:
                # NOTE: a kernel that synchronizes with the host cannot be captured; the engine stays
                # correct, run layer by layer (`uses_cuda_graph` and `eager_reason` tell).
                self.eager_reason = f"CUDA graph capture failed: {str(e).splitlines()[0] if str(e) else type(e)}"
                self._values[:] = self._fixed
                torch.cuda.synchronize(device)
            else:
                self.graph_pool_bytes = torch.cuda.max_memory_allocated(device) - before
                self._graph = graph

    @contextlib.contextmanager
    def _flags(self):
        if not self._cuda:
            yield
            return
        tf32 = self.engine.tf32
        with torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False, allow_tf32=tf32):
            saved = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            try:
                yield
            finally:
                torch.backends.cuda.matmul.allow_tf32 = saved

    def _run(self, release: bool = True, observe: Observer | None = None) -> None:
        values = self._values
        for step in self.engine.steps:
            ins = [None if s is None else values[s] for s in step.inputs]
            outs = [values[s] for s in step.outputs]
            try:
                produced = step.kernel(ins, outs)
            except BrazeError as e:
                raise ExecutionError(f"layer {step.node.name!r} ({step.node.op}, tactic {step.tactic}): {e}") from e
            except Exception as e:
                shapes = ", ".join(_describe(x) for x in ins)
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise ExecutionError(f"layer {step.node.name!r} ({step.node.op}, tactic {step.tactic}) failed "
                                     f"on inputs ({shapes}): {first}") from e
            for i, (s, out) in enumerate(zip(step.outputs, outs)):
                if out is None:
                    if produced is None or i >= len(produced):
                        raise ExecutionError(f"layer {step.node.name!r} ({step.node.op}) produced no output for "
                                             f"{self.engine.slots[s].tensor.name!r}")
                    values[s] = produced[i]
            if observe is not None:  # NOTE: before the release below, which drops outputs that nothing reads
                observe(step.node.name, [self.engine.slots[s].tensor.name for s in step.outputs],
                        [_copy(values[s]) for s in step.outputs])
            if release:
                for s in step.release:
                    values[s] = None

    # -- checking inputs -----------------------------------------------------------------------------

    def _check(self, feeds: Mapping[str, Any], copy: bool = True) -> list[Any]:
        """Every input as the tensor (or list, or None) to bind. NOTE: names, kinds, dtypes, devices and shapes
        of all inputs are checked before any is converted: a broadcast view of the wrong shape, or a large input
        beside a wrong one, would otherwise be copied first."""
        values = self._fast_path(feeds, copy)
        if values is not None:
            return values
        if not isinstance(feeds, Mapping):
            example = ", ".join(f"{b.name!r}: array" for b in self.engine.inputs)
            raise InputError(f"feeds must be a mapping of input name -> numpy array or torch tensor, e.g. "
                             f"{{{example}}}, not a {type(feeds).__name__}; the engine's inputs are "
                             f"{self._describe_inputs()}")
        expected = [b.name for b in self.engine.inputs]
        missing = [n for n in expected if n not in feeds]
        extra = [n for n in feeds if n not in expected]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing input(s) {', '.join(map(repr, missing))}")
            if extra:
                parts.append(f"unknown input(s) {', '.join(map(repr, extra))}")
            raise InputError(f"{'; '.join(parts)}; the engine's inputs are {self._describe_inputs()}")
        for b in self.engine.inputs:
            self._inspect(b, feeds[b.name], copy)
        return [self._converted(b, feeds[b.name]) for b in self.engine.inputs]

    @functools.cached_property
    def _fast_inputs(self) -> list[tuple[str, torch.dtype, np.dtype | None, tuple[int, ...]]] | None:
        """Per input: its name, the torch dtype and numpy dtype (None: none) taken as they are, and its shape;
        None when an input is a sequence or an optional, whose feeds are always checked in full."""
        if any(b.kind != TENSOR for b in self.engine.inputs):
            return None
        # NOTE: only numpy's own dtypes: ml_dtypes' and emulated types' arrays go through to_torch's bit copies
        return [(b.name, b.dtype.torch, b.dtype.numpy if b.dtype.numpy.isbuiltin == 1 and not b.dtype.emulated
                 else None, tuple(b.shape)) for b in self.engine.inputs]  # type: ignore[arg-type]

    def _fast_path(self, feeds: Any, copy: bool) -> list[torch.Tensor] | None:
        """The inputs to bind when `feeds` is the common case, else None (then `_check` checks in full): a dict
        of exactly the inputs, each a dense torch tensor (on the CPU or, for a CUDA engine, its device) or a
        numpy array, of exactly its binding's dtype and shape. NOTE: every check `_check` makes is made here
        too, only on fewer attributes (a quantized or meta tensor has another dtype or device); any value
        it does not know for sure is left to the full check, which names what is wrong."""
        specs = self._fast_inputs
        if specs is None or type(feeds) is not dict or len(feeds) != len(specs):
            return None
        cpu_engine = not self._cuda
        fed = []
        for name, torch_dtype, numpy_dtype, shape in specs:
            x = feeds.get(name)
            kind = type(x)
            if kind is torch.Tensor:
                if x.dtype is not torch_dtype or x.layout is not torch.strided or x.is_nested:
                    return None
                if not (x.is_cpu if cpu_engine else (x.device == self.device or (copy and x.is_cpu))):
                    return None
            elif kind is not np.ndarray or not copy or numpy_dtype is None or x.dtype != numpy_dtype:
                # NOTE: not copy: execute_async, which refuses numpy arrays (the full check says so)
                return None
            if x.shape != shape:
                return None
            fed.append(x)
        values = []
        for x in fed:
            if type(x) is np.ndarray:
                values.append(torch.from_numpy(x.copy()))  # NOTE: C order; a byte-swapped dtype is not ==
            else:
                if x.requires_grad:
                    x = x.detach()
                values.append(x.contiguous() if cpu_engine else x)
        return values

    def _inspect(self, binding: Binding, raw: Any, copy: bool) -> None:
        """Refuse a value that does not fit `binding`, reading only its type, dtype, device and shape."""
        what = f"input {binding.name!r}"
        if binding.kind == TENSOR:
            shape, device = self._fitting(binding, raw, what)
            if tuple(shape) != tuple(binding.shape):  # type: ignore[arg-type]
                kind = "rank" if len(shape) != len(binding.shape) else "shape"  # type: ignore[arg-type]
                raise InputError(f"{what} has {kind} mismatch: got {format_shape(tuple(shape))}, "
                                 f"the engine was built for {format_shape(binding.shape)}")
            if not copy and device != self.device:
                raise InputError(f"{what} is {'a numpy array' if device is None else f'on {device}'}; "
                                 f"execute_async takes tensors on {self.device}")
            return
        if raw is None and binding.kind in (OPTIONAL_TENSOR, OPTIONAL_SEQUENCE):
            return
        if binding.kind in (SEQUENCE, OPTIONAL_SEQUENCE):
            if not isinstance(raw, (list, tuple)):
                raise InputError(f"{what} is a sequence; pass a list of arrays or tensors, not a {type(raw).__name__}")
            items = [(x, f"item {i} of {what}") for i, x in enumerate(raw)]
        else:
            items = [(raw, what)]
        expected = binding.shape
        for x, where in items:
            shape, _ = self._fitting(binding, x, where)
            if expected is not None and (len(shape) != len(expected) or any(
                    isinstance(d, int) and d != n for d, n in zip(expected, shape))):
                raise InputError(f"{where} has shape {format_shape(tuple(shape))}, the engine was built for "
                                 f"{format_shape(expected)}")

    def _fitting(self, binding: Binding, raw: Any, what: str) -> tuple[tuple[int, ...], torch.device | None]:
        """The shape and device (None for numpy) of a value whose type, dtype and device fit this engine."""
        shape, got, device = _metadata(raw, what, binding.dtype)
        if got != binding.dtype:
            raise InputError(f"{what} is {got}, the engine expects {binding.dtype} "
                             f"(cast it, e.g. {_cast_hint(binding.dtype)})")
        if device is not None and device.type != "cpu" and device != self.device:
            move = "x.cpu()" if self.device.type == "cpu" else f"x.to('{self.device}')"
            raise InputError(f"{what} is a tensor on {device}, but this engine runs on {self.device}: pass it "
                             f"on {self.device} ({move})")
        return shape, device

    def _converted(self, binding: Binding, raw: Any) -> Any:
        if binding.kind == TENSOR:
            value = _as_tensor(raw)
            return value if self._cuda else value.to(self.device).contiguous()
        if raw is None:
            return None
        if isinstance(raw, (list, tuple)):
            return [_as_tensor(x).to(self.device).contiguous() for x in raw]
        return _as_tensor(raw).to(self.device).contiguous()

    def _describe_inputs(self) -> str:
        return ", ".join(f"{b.name!r}: {_type_str(b)}" for b in self.engine.inputs) or "none"


def _type_str(b: Binding) -> str:
    return Tensor(b.name, b.dtype, b.shape, kind=b.kind).type_str()


def _copy(value: Any) -> Any:
    """An output's value that the next run cannot change (a sequence's tensors are its own already)."""
    if isinstance(value, list):
        return list(value)
    return None if value is None else value.clone()


def _to_numpy(value: Any, dtype: DType) -> Any:
    if isinstance(value, list):
        return [to_numpy(x, dtype) for x in value]
    return None if value is None else to_numpy(value, dtype)


def _describe(x: Any) -> str:
    if x is None:
        return "_"
    if isinstance(x, list):
        return f"sequence of {len(x)}"
    return f"{str(x.dtype).removeprefix('torch.')}{list(x.shape)}"


def _metadata(value: Any, what: str, expected: DType) -> tuple[tuple[int, ...], DType, torch.device | None]:
    """A fed value's shape, the DType it holds and its device (None for numpy), read without touching its data.
    NOTE: torch has no tensors of the types braze emulates (int4, float4_e2m1fn, ...): for such an input, a
    tensor of its storage dtype holds its elements."""
    if isinstance(value, torch.Tensor):
        if value.is_quantized:
            raise InputError(f"{what} is a quantized tensor ({value.dtype}); the engine expects {expected}: "
                             f"pass x.dequantize() (or its int_repr())")
        if value.layout != torch.strided or value.is_nested:
            layout = "nested" if value.is_nested else str(value.layout).removeprefix("torch.")
            raise InputError(f"{what} is a {layout} tensor; pass a dense one (x.to_dense())")
        if value.device.type == "meta":
            raise InputError(f"{what} is a meta tensor: it has a shape but no data to run on")
        if expected.emulated and value.dtype == expected.torch:
            return tuple(value.shape), expected, value.device
        try:
            return tuple(value.shape), DType.from_torch(value.dtype), value.device
        except TypeError:
            raise InputError(f"{what} has torch dtype {str(value.dtype).removeprefix('torch.')}, which braze "
                             f"does not support; the engine expects {expected}") from None
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if isinstance(value, np.ndarray):
        try:
            return value.shape, DType.from_numpy(value.dtype), None
        except TypeError:
            raise InputError(f"{what} has numpy dtype {value.dtype}, which braze does not support; the engine "
                             f"expects {expected}") from None
    raise InputError(f"{what} is a {type(value).__name__}; pass a numpy array or a torch tensor")


def _as_tensor(value: Any) -> torch.Tensor:
    """A value `_metadata` accepted, as a torch tensor (numpy arrays copied into one)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    return to_torch(np.asarray(value))


def _cast_hint(dtype: DType) -> str:
    if dtype.emulated:  # NOTE: torch has no such dtype: a tensor of the storage dtype holds the elements
        held = "bit patterns" if dtype.is_floating else "values"
        return f"x.astype(ml_dtypes.{dtype}), or a {dtype.torch} tensor of its {held}"
    return f"x.astype(np.{dtype}) or x.to(torch.{dtype})"
