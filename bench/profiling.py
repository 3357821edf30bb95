"""``PROFILE=1``: py-spy flame graphs of the gateway and the connector under workload (b).

py-spy attaches with ptrace; where that is refused (some containers), the run says so in the
report instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.procs import script_path

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"


@dataclass
class Profiler:
    """One py-spy recording per (name, pid), all started together and awaited together."""

    out_dir: Path = PROFILE_DIR
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def start(self, name: str, pid: int, seconds: float) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        try:
            pyspy = script_path("py-spy")
        except FileNotFoundError as exc:
            self.notes[name] = f"py-spy not installed: {exc}"
            return
        argv = [
            str(pyspy), "record", "-o", str(self.out_dir / f"{name}.svg"), "--pid", str(pid),
            "-d", str(max(1, round(seconds))), "--subprocesses", "--rate", "200",
        ]  # fmt: skip
        self.running[name] = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )

    async def finish(self, timeout_s: float = 60.0) -> dict[str, str]:
        """Wait for every recording; returns ``{name: svg path or why not}``."""
        for name, proc in self.running.items():
            try:
                output, _ = await asyncio.to_thread(proc.communicate, None, timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                self.notes[name] = "py-spy did not finish in time"
                continue
            svg = self.out_dir / f"{name}.svg"
            if proc.returncode == 0 and svg.exists():
                self.notes[name] = str(svg)
            else:
                text = output.decode(errors="replace").strip().splitlines()
                self.notes[name] = "py-spy failed: " + (text[-1] if text else f"rc {proc.returncode}")
        self.running.clear()
        return self.notes

    def kill_all(self) -> None:
        for proc in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
