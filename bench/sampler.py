"""RSS and CPU of a server process and its children (psutil), sampled while a workload runs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import psutil

MB = 1024 * 1024


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` and its children, in MiB."""
    total = 0
    found = False
    for proc in _tree(pid):
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
            found = True
    return total / MB if found else None


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for proc in _tree(pid):
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


@dataclass
class Watch:
    """Samples one process tree every ``interval_s`` until stopped: peak RSS, mean CPU%."""

    pid: int
    interval_s: float = 0.25
    rss_samples: list[float] = field(default_factory=list)
    _cpu_start: float = 0.0
    _wall_start: float = 0.0
    cpu_pct: float | None = None
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._cpu_start = cpu_seconds(self.pid)
        self._wall_start = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            value = await asyncio.to_thread(rss_mb, self.pid)
            if value is not None:
                self.rss_samples.append(value)
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        wall = time.monotonic() - self._wall_start
        if wall > 0:
            self.cpu_pct = (cpu_seconds(self.pid) - self._cpu_start) / wall * 100
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def peak_rss_mb(self) -> float | None:
        return max(self.rss_samples) if self.rss_samples else None
