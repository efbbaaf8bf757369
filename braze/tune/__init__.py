"""Tactic timing (CUDA events, warm-up, median, L2 flushed) and the timing cache that makes the
builder's choices replayable across builds and models."""

from .cache import TimingCache, layer_key
from .timing import time_kernel

__all__ = ["TimingCache", "layer_key", "time_kernel"]
