"""The stand-in LLM as its own process (how the demo and the bench run it), under ManagedProcess."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import openai
import pytest

from tests.support.procs import (
    ManagedProcess,
    ProcessFailedError,
    free_port,
    port_answers,
    standin_process,
    wait_for_port,
)


async def test_standin_cli_serves_sdk_and_stops_cleanly(tmp_path: Path) -> None:
    proc = standin_process(tmp_path, "--model", "m1", "--model", "m2", "--chunks", "2")
    async with proc:
        async with openai.AsyncOpenAI(base_url=proc.url + "/v1", api_key="x") as client:
            ids = [m.id async for m in client.models.list()]
            chat = await client.chat.completions.create(
                model="m1", messages=[{"role": "user", "content": "hi"}]
            )
        assert ids == ["m1", "m2"]
        assert chat.usage is not None
        assert chat.usage.completion_tokens == 2
        code = await proc.astop()
    assert code == 0
    assert "listening on" in proc.log_text()


def test_managed_process_reports_early_exit_with_log(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print('boom here'); sys.exit(3)"]
    proc = ManagedProcess(argv, log_path=tmp_path / "p.log", ready=lambda: False, name="boom")
    with pytest.raises(ProcessFailedError, match="boom here"):
        proc.start()
    assert proc.returncode == 3


def test_managed_process_sigkill_after_ignored_sigterm(tmp_path: Path) -> None:
    port = free_port()
    code = (
        "import signal, socket, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen()\n"
        "time.sleep(60)\n"
    )
    proc = ManagedProcess(
        [sys.executable, "-c", code],
        log_path=tmp_path / "p.log",
        ready=lambda: port_answers("127.0.0.1", port),
        stop_timeout_s=0.5,
    )
    with proc:
        wait_for_port("127.0.0.1", port, timeout=5)
        assert proc.running
        assert proc.stop() == -signal.SIGKILL
    assert not port_answers("127.0.0.1", port)


def test_wait_for_port_times_out() -> None:
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", free_port(), timeout=0.2)
