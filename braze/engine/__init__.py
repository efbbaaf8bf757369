"""Engines: the plan format (versioned header, JSON plan, safetensors weights; no pickle), the
Engine that binds a plan to kernels on a device, the Runtime that loads engines, and the
ExecutionContext that runs them. Nothing here imports the builder side.
"""

from .context import ExecutionContext
from .engine import Binding, Engine, Runtime
from .format import FORMAT_VERSION, read_header
from .plan import LayerChoice, MemoryPlan, Plan

__all__ = ["Binding", "Engine", "ExecutionContext", "FORMAT_VERSION", "LayerChoice", "MemoryPlan", "Plan",
           "Runtime", "read_header"]
