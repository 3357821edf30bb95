"""A private ``redis-server`` on an ephemeral loopback port, nothing persisted."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import ManagedProcess, ProcessFailedError, free_port, port_answers

PORT_ATTEMPTS = 3


@dataclass
class RedisServer:
    """``start()``/``astart()``, then ``url`` (``redis://127.0.0.1:PORT/0``); ``stop()``."""

    work_dir: Path
    ready_timeout_s: float = 15.0

    def __post_init__(self) -> None:
        self.port = 0
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _process_for(self, port: int) -> ManagedProcess:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        argv = [
            exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.work_dir), "--protected-mode", "yes", "--daemonize", "no",
        ]  # fmt: skip
        return ManagedProcess(
            argv,
            log_path=self.work_dir / f"redis-{port}.log",
            cwd=self.work_dir,
            ready=lambda: port_answers("127.0.0.1", port),
            ready_timeout_s=self.ready_timeout_s,
            stop_timeout_s=5.0,
            name="redis-server",
        )

    def start(self) -> RedisServer:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(PORT_ATTEMPTS):  # the free port may be taken again before redis binds
            self.port = free_port()
            self.process = self._process_for(self.port)
            try:
                self.process.start()
                return self
            except ProcessFailedError:
                if attempt == PORT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def astart(self) -> RedisServer:
        return await asyncio.to_thread(self.start)

    def stop(self) -> int:
        return self.process.stop() if self.process is not None else 0

    async def astop(self) -> int:
        return await asyncio.to_thread(self.stop)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
