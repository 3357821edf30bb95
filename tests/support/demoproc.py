"""``make demo`` in its long-running mode, for the tests that use its printed lines."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.procs import REPO_ROOT, base_env

DEMO_TIMEOUT_S = 90


def read_until_running(demo: subprocess.Popen[str]) -> str:
    """The demo's output up to its 'press Ctrl-C' line (or its end, if it stopped early)."""
    assert demo.stdout is not None
    lines = []
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    while time.monotonic() < deadline:
        line = demo.stdout.readline()
        lines.append(line)
        if not line or "press Ctrl-C" in line:
            break
    return "".join(lines)


@contextmanager
def running_demo(work: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The demo on free ports without squid, and what it printed until it was ready. A demo
    still running at the end gets Ctrl-C (it stops what it started), then a kill."""
    ports = ["--public-port", "0", "--tunnel-port", "0", "--admin-port", "0"]
    argv = [sys.executable, "-m", "scripts.demo", "--dir", str(work), "--no-squid", *ports]
    with subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        env=base_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as demo:
        try:
            yield demo, read_until_running(demo)
        finally:
            if demo.poll() is None:
                demo.send_signal(signal.SIGINT)
                try:
                    demo.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    demo.kill()
