"""`make demo` end to end: `python -m scripts.demo` with real processes, as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.support.demoproc import DEMO_TIMEOUT_S, running_demo
from tests.support.procs import REPO_ROOT, base_env


def run_demo_once(work: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.demo", "--once", "--dir", str(work), *extra],
        cwd=REPO_ROOT,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )


def processes_under(work: Path) -> list[psutil.Process]:
    """Live processes whose command line mentions WORK (what the demo started there)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(work) in cmdline and proc.pid != os.getpid():
            found.append(proc)
    return found


def copy_paste_blocks(output: str) -> tuple[str, str]:
    """The curl command and the Python heredoc the demo printed for the user."""
    lines = output.splitlines()
    start = lines.index("curl:") + 1
    end = lines.index("", start)
    curl = "\n".join(lines[start:end])
    start = lines.index("Python (the OpenAI SDK):") + 1
    end = lines.index("PY", start) + 1
    return curl, "\n".join(lines[start:end])


def test_demo_once_passes_every_check_and_prints_the_copy_paste_lines(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    done = run_demo_once(work)
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert "demo: PKI" in out
    assert "demo: stand-in   http://127.0.0.1:" in out
    assert "demo: gateway    https://127.0.0.1:" in out
    assert "demo: ready      /readyz: 1 tunnel up: office-1 over tls" in out
    assert "ok: chat" in out
    assert "ok: chat       'Hello from the stand-in LLM." in out
    assert "ok: stream     Hello from the stand-in LLM." in out
    assert "ok: stream     (5 chunks)" in out
    assert "ok: models     qwen3-coder" in out
    assert "Base URL : https://127.0.0.1:" in out
    assert f"CA file  : {work / 'pki' / 'ca.crt'}" in out
    assert "curl --cacert " in out
    assert '-H "Authorization: Bearer ' in out
    assert out.rstrip().endswith("demo: all checks passed")
    via_squid = "dials through squid at http://127.0.0.1:" in out
    assert via_squid or "dials directly, without a proxy (squid is not installed)" in out
    assert (work / "gateway.toml").exists()
    assert (work / "connector.toml").exists()
    assert not processes_under(work), "the demo left processes running"


def test_demo_through_squid_is_seen_by_squid(tmp_path: Path) -> None:
    if subprocess.run(["which", "squid"], capture_output=True, check=False).returncode != 0:
        pytest.skip("squid is not installed")
    work = tmp_path / "demo"
    done = run_demo_once(work)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    logs = list((work / "logs").glob("squid-*-access.log"))
    assert logs, "squid's access log was not kept"
    assert "TCP_TUNNEL/200" in logs[0].read_text()  # the connector's CONNECT went through squid


def test_demo_fails_with_status_1_when_the_upstream_is_unreachable(tmp_path: Path) -> None:
    """The failure twin: a dead upstream makes the checks fail, and the demo says so."""
    work = tmp_path / "demo"
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    done = run_demo_once(work, "--upstream", dead, "--model", "some-model")
    assert done.returncode == 1, f"{done.stdout}\n{done.stderr}"
    assert "FAILED: chat" in done.stdout
    assert "demo: some checks FAILED" in done.stdout
    assert not processes_under(work)


def run_shell(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", text], capture_output=True, text=True, timeout=60, check=False
    )


def test_demo_runs_until_interrupted_and_its_printed_lines_work(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    with running_demo(work) as (demo, text):
        assert "press Ctrl-C" in text, text
        assert "dials directly, without a proxy (--no-squid was given)" in text
        curl, python = copy_paste_blocks(text)
        answer = run_shell(curl)
        assert answer.returncode == 0, answer.stderr
        assert '"chat.completion"' in answer.stdout
        answer = run_shell(python)
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.strip() == "Hello from the stand-in LLM."
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=30) == 0
        assert not processes_under(work), "Ctrl-C left processes running"
