"""The build side: Builder and BuilderConfig turn a graph into an Engine (passes, tactic choice,
memory planning)."""

from .builder import Builder, BuilderConfig

__all__ = ["Builder", "BuilderConfig"]
