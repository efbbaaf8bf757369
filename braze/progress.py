"""Progress reporting, shown where a person is watching.

Long work reports through a `Progress` callback, one line per phase (the Builder's `say`), and loops
of known length through a `Counter`, one line rewritten in place. Either is shown by default only
where stderr is a terminal, so tests, pipes and logs stay quiet; `True` or `False` overrides that.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Union

Progress = Callable[[str], None]
# NOTE: None means "where stderr is a terminal"; a callable receives every line whatever the terminal
ProgressSetting = Union[Progress, bool, None]


def wanted(setting: bool | None) -> bool:
    """Whether to show progress: `setting` if given, else whether stderr is a terminal."""
    if setting is not None:
        return bool(setting)
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def to_stderr(msg: str) -> None:
    print(f"[braze] {msg}", file=sys.stderr, flush=True)


def _silent(msg: str) -> None:
    return None


def reporter(setting: ProgressSetting) -> Progress:
    """The callback that `setting` asks for: itself if callable, stderr lines, or nothing."""
    if callable(setting):
        return setting
    return to_stderr if wanted(setting) else _silent


class Counter:
    """`label: done/total` on one stderr line, redrawn at most ten times a second and ended with a newline."""

    def __init__(self, label: str, total: int, enabled: bool | None = None, prefix: str = "[braze] "):
        self.label, self.total, self.prefix = label, total, prefix
        self.enabled = wanted(enabled)
        self._drawn = 0.0

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < self.total and now - self._drawn < 0.1:
            return
        self._drawn = now
        end = "\n" if done >= self.total else ""
        print(f"\r{self.prefix}{self.label}: {done}/{self.total}", end=end, file=sys.stderr, flush=True)


__all__ = ["Counter", "Progress", "ProgressSetting", "reporter", "to_stderr", "wanted"]
