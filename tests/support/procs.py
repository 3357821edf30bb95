"""Start, watch and stop real processes for integration tests, the demo and the bench.

Every wait is bounded; every process started is stopped (SIGTERM, then SIGKILL after a timeout).
Readiness is a condition polled on a short interval (a port that answers, a file that appears,
a line in the log), and a process that dies before it is ready fails at once with its log's tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_INTERVAL_S = 0.02

ReadyCheck = Callable[[], bool]


class ProcessFailedError(RuntimeError):
    """A managed process exited early or did not become ready in time."""


# --------------------------------------------------------------------------- ports


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (prefer binding port 0 where the program allows it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_answers(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    """Block until ``host:port`` accepts a TCP connection; TimeoutError after ``timeout`` s."""
    wait_until(lambda: port_answers(host, port), timeout, f"{host}:{port} to answer")


async def async_wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    await async_wait_until(lambda: port_answers(host, port), timeout, f"{host}:{port} to answer")


def wait_until(check: ReadyCheck, timeout: float, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(POLL_INTERVAL_S)


async def async_wait_until(check: ReadyCheck, timeout: float, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL_S)


# --------------------------------------------------------------------------- readiness checks


def port_ready(host: str, port: int) -> ReadyCheck:
    return lambda: port_answers(host, port)


def file_ready(path: Path) -> ReadyCheck:
    """The file exists and is not empty (write it atomically on the other side)."""

    def check() -> bool:
        try:
            return path.stat().st_size > 0
        except OSError:
            return False

    return check


def read_port_file(path: Path) -> int:
    return int(path.read_text().strip())


# --------------------------------------------------------------------------- our commands


def script_path(name: str) -> Path:
    """A console script of this project (``gateway``, ``connector``, ``pki``) next to the Python."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return beside
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"console script {name!r} not found beside {sys.executable}")
    return Path(found)


def python_module_cmd(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment, unbuffered, the repository importable, no proxy leaking in."""
    env = dict(os.environ)
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.pop(key, None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------- the process


@dataclass
class ManagedProcess:
    """One child process with its own log file; use as a (async) context manager or call stop()."""

    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    ready: ReadyCheck | None = None
    ready_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or Path(self.argv[0]).name
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    # ---- start

    def launch(self) -> None:
        """Start the process without waiting for readiness."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.env) if self.env is not None else base_env(),
                cwd=self.cwd or REPO_ROOT,
                start_new_session=True,  # its own group: our SIGKILL reaches its children too
            )

    def start(self) -> ManagedProcess:
        self.launch()
        try:
            wait_until(self._ready_or_dead, self.ready_timeout_s, f"{self.name} to be ready")
        except TimeoutError:
            self._fail_started("did not become ready")
        return self

    async def astart(self) -> ManagedProcess:
        self.launch()
        try:
            await async_wait_until(
                self._ready_or_dead, self.ready_timeout_s, f"{self.name} to be ready"
            )
        except TimeoutError:
            self._fail_started("did not become ready")
        return self

    def _ready_or_dead(self) -> bool:
        if self.poll() is not None:
            self._fail_started(f"exited with status {self.returncode} before it was ready")
        return self.ready is None or self.ready()

    def _fail_started(self, why: str) -> None:
        self.stop()
        raise ProcessFailedError(f"{self.name} {why}; log {self.log_path}:\n{self.log_tail()}")

    # ---- watch

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def poll(self) -> int | None:
        if self.proc is not None and self.returncode is None:
            self.returncode = self.proc.poll()
        return self.returncode

    @property
    def running(self) -> bool:
        return self.proc is not None and self.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_has(self, pattern: str) -> bool:
        return re.search(pattern, self.log_text()) is not None

    async def wait_for_log(self, pattern: str, timeout: float = 15.0) -> None:
        """Wait until the log matches the regular expression ``pattern``."""
        await async_wait_until(
            lambda: self.log_has(pattern), timeout, f"{pattern!r} in {self.name}'s log"
        )

    # ---- stop

    def send_signal(self, sig: int) -> None:
        if self.running:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def kill(self) -> int:
        """SIGKILL now (``kill -9``); returns the exit status."""
        return self._kill_group()

    def stop(self, timeout: float | None = None) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit status."""
        if self.proc is None:
            return 0
        if self.poll() is not None:
            return self._reap()
        self.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=self.stop_timeout_s if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            return self._kill_group()
        return self._reap()

    async def astop(self, timeout: float | None = None) -> int:
        return await asyncio.to_thread(self.stop, timeout)

    async def akill(self) -> int:
        return await asyncio.to_thread(self.kill)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit on its own; TimeoutError after ``timeout`` s."""
        assert self.proc is not None
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.name} still running after {timeout:.1f}s") from None
        return self._reap()

    async def await_exit(self, timeout: float) -> int:
        return await asyncio.to_thread(self.wait, timeout)

    def _kill_group(self) -> int:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        return self._reap()

    def _reap(self) -> int:
        assert self.proc is not None
        self.returncode = self.proc.wait(timeout=10)
        return self.returncode

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> ManagedProcess:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()


# --------------------------------------------------------------------------- common launchers


@dataclass
class StandinProcess(ManagedProcess):
    """The stand-in LLM as its own process; ``url`` once started."""

    port_file: Path | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (add ``/v1`` for an SDK's ``base_url``)."""
        assert self.port_file is not None
        return f"http://127.0.0.1:{read_port_file(self.port_file)}"


def standin_process(work_dir: Path, *extra_args: str, name: str = "standin_llm") -> StandinProcess:
    """``python -m tests.support.standin_llm`` on an ephemeral port (``extra_args``: its flags)."""
    port_file = work_dir / f"{name}.port"
    with contextlib.suppress(FileNotFoundError):
        port_file.unlink()
    argv = python_module_cmd(
        "tests.support.standin_llm", "--host", "127.0.0.1", "--port", "0",
        "--port-file", str(port_file), *extra_args,
    )  # fmt: skip
    return StandinProcess(
        argv, log_path=work_dir / f"{name}.log", ready=file_ready(port_file), name=name,
        port_file=port_file,
    )  # fmt: skip


def our_command(
    command: str, *args: str, work_dir: Path, name: str | None = None,
    ready: ReadyCheck | None = None, env: Mapping[str, str] | None = None,
) -> ManagedProcess:  # fmt: skip
    """``gateway``/``connector``/``pki`` with ``args``, logging to ``work_dir/NAME.log``."""
    label = name or command
    return ManagedProcess(
        [str(script_path(command)), *args],
        log_path=work_dir / f"{label}.log",
        env=base_env(env),
        cwd=work_dir,
        ready=ready,
        name=label,
    )


def run_command(
    command: str, *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None,
    timeout: float = 60.0, input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run one of our console scripts to completion; returns stdout/stderr/returncode (no raise)."""
    return subprocess.run(
        [str(script_path(command)), *args],
        cwd=cwd or REPO_ROOT,
        env=base_env(env),
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class ProcessGroup:
    """The processes of one test, all stopped (newest first) at its end: the ``procs`` fixture."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self._procs: list[ManagedProcess] = []

    def add(self, proc: ManagedProcess) -> ManagedProcess:
        """Track ``proc`` (started or not) so that it is stopped at the end."""
        self._procs.append(proc)
        return proc

    def start(self, proc: ManagedProcess) -> ManagedProcess:
        return self.add(proc).start()

    async def astart(self, proc: ManagedProcess) -> ManagedProcess:
        return await self.add(proc).astart()

    def ours(self, command: str, *args: str, **kwargs: Any) -> ManagedProcess:
        """An unstarted, tracked ``our_command`` (``gateway``, ``connector``); then ``astart()``."""
        kwargs.setdefault("work_dir", self.work_dir)
        return self.add(our_command(command, *args, **kwargs))

    def stop_all(self) -> dict[str, int]:
        """Stop every process still running; returns their exit codes by name."""
        codes: dict[str, int] = {}
        for proc in reversed(self._procs):
            codes[proc.name] = proc.stop()
        return codes


#: How many free ports a private server tries: the port may be taken again before it binds.
PORT_ATTEMPTS = 3


class PrivateServer:
    """What squid, redis and nginx share: start on a free port, stop, keep the logs, and the
    sync/async context managers. A subclass provides ``_process_for(port)``; ``start()`` sets
    ``port`` and ``process``. The other hooks are optional."""

    port: int
    process: ManagedProcess | None

    def _process_for(self, port: int) -> ManagedProcess:
        raise NotImplementedError

    def _before_start(self) -> None:
        """Prepare what every attempt needs (a folder, files)."""

    def _start_failed(self, error: ProcessFailedError) -> ProcessFailedError:
        """The error to raise when the last attempt failed."""
        return error

    def _keep_logs(self) -> None:
        """Copy the logs somewhere before the server's files go away."""

    def _cleanup(self) -> None:
        """Remove the server's own files after it stopped."""

    def start(self) -> Self:
        self._before_start()
        for attempt in range(PORT_ATTEMPTS):
            self.port = free_port()
            self.process = self._process_for(self.port)
            try:
                self.process.start()
                return self
            except ProcessFailedError as error:
                if attempt == PORT_ATTEMPTS - 1:
                    raise self._start_failed(error) from None
        raise AssertionError("unreachable")

    def stop(self) -> int:
        code = self.process.stop() if self.process is not None else 0
        self._keep_logs()
        self._cleanup()
        return code

    async def astart(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def astop(self) -> int:
        return await asyncio.to_thread(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()


def copy_logs(work: Path, log_dir: Path | None, prefix: str, names: Sequence[str]) -> None:
    """Copy ``names`` from ``work`` to ``log_dir`` as ``PREFIX-NAME`` (nothing when no log_dir)."""
    if log_dir is None:
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (work / name).exists():
            shutil.copyfile(work / name, log_dir / f"{prefix}-{name}")
