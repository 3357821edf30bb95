"""A private ``redis-server`` on an ephemeral loopback port, nothing persisted."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import ManagedProcess, PrivateServer, port_answers


@dataclass
class RedisServer(PrivateServer):
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

    def _before_start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
