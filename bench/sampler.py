"""RSS and CPU of a server process and its children (psutil), sampled while a workload runs.

:class:`CpuWindow` counts the CPU seconds of every process on a path (and how busy the whole
machine was) between two instants, for the CPU budget of workload (b).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import psutil

from bench import stats

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


@dataclass(frozen=True)
class Counted:
    """One process whose CPU a :class:`CpuWindow` counts: with its children, or alone (the bench
    process itself, whose children are the servers it started). ``pid=None``: no such process on
    this path; it counts as 0 s."""

    pid: int | None
    children: bool = True

    def seconds(self) -> float | None:
        """user + system CPU seconds so far; ``None`` if the process is gone."""
        if self.pid is None:
            return 0.0
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)] if self.children else [root]
            first = root.cpu_times()
        except psutil.Error:
            return None
        total = first.user + first.system
        for proc in procs[1:]:
            with contextlib.suppress(psutil.Error):  # a child that just ended
                times = proc.cpu_times()
                total += times.user + times.system
        return total


@dataclass
class CpuWindow:
    """CPU seconds each named process used between :meth:`start` and :meth:`stop`, and how busy
    the machine's cores were (``machine_pct``, 100 = all cores busy). Both calls are cheap and
    synchronous, so they can run at the exact instants a measurement starts and ends."""

    roles: Mapping[str, Counted]
    cpu_s: dict[str, float | None] = field(default_factory=dict)
    machine_pct: float | None = None
    wall_s: float = 0.0
    _start: dict[str, float | None] = field(default_factory=dict)
    _machine: dict[str, float] = field(default_factory=dict)
    _wall: float = 0.0

    def start(self) -> None:
        self._machine = psutil.cpu_times()._asdict()
        self._wall = time.monotonic()
        self._start = {role: counted.seconds() for role, counted in self.roles.items()}

    def stop(self) -> None:
        ends = {role: counted.seconds() for role, counted in self.roles.items()}
        self.wall_s = time.monotonic() - self._wall
        self.machine_pct = stats.busy_pct(self._machine, psutil.cpu_times()._asdict())
        for role, end in ends.items():
            begin = self._start.get(role)
            self.cpu_s[role] = None if begin is None or end is None else end - begin
