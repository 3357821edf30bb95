"""``GATEWAY_TRACEMALLOC=N``: trace allocations (N frames) and, on SIGUSR1, print to standard error
what grew since the previous SIGUSR1 (or since start): the hunt for per-request state kept forever.

Off unless the variable is set: tracing slows every allocation down.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tracemalloc
from collections import Counter
from typing import Final

ENV: Final = "GATEWAY_TRACEMALLOC"
TOP: Final = 25


def tasks_line() -> str:
    """The asyncio tasks alive now, by coroutine (a growing count is a task never finished)."""
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:  # no running loop
        return "tasks: -"
    names = Counter(getattr(t.get_coro(), "__qualname__", "?") for t in tasks)
    return f"tasks: {len(tasks)} " + ", ".join(f"{n} x{c}" for n, c in names.most_common(12))


class AllocationWatch:
    def __init__(self, frames: int) -> None:
        tracemalloc.start(frames)
        self.base = self._snapshot()

    @staticmethod
    def _snapshot() -> tracemalloc.Snapshot:
        return tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__)]
        )

    def report(self) -> str:
        snapshot = self._snapshot()
        current, peak = tracemalloc.get_traced_memory()
        lines = [f"tracemalloc: traced {current / 1e6:.1f} MB (peak {peak / 1e6:.1f} MB); grew:"]
        for stat in snapshot.compare_to(self.base, "lineno")[:TOP]:
            lines.append(f"  {stat}")
        lines.append("tracemalloc: largest growth by traceback:")
        for stat in snapshot.compare_to(self.base, "traceback")[:3]:
            lines.append(f"  {stat.size_diff / 1e3:+.1f} kB in {stat.count_diff:+d} blocks")
            lines.extend(f"    {line}" for line in stat.traceback.format()[-12:])
        self.base = snapshot
        lines.append(tasks_line())
        return "\n".join(lines) + "\n"

    def dump(self) -> None:
        sys.stderr.write(self.report())
        sys.stderr.flush()


def install_from_env(loop: asyncio.AbstractEventLoop) -> AllocationWatch | None:
    """Start tracing and hook SIGUSR1 if ``GATEWAY_TRACEMALLOC`` is set to a frame count."""
    value = os.environ.get(ENV, "").strip()
    if not value or value == "0":
        return None
    frames = int(value) if value.isdigit() else 1
    watch = AllocationWatch(frames)
    with contextlib.suppress(NotImplementedError, AttributeError):  # Windows: no SIGUSR1
        loop.add_signal_handler(signal.SIGUSR1, watch.dump)
    return watch
