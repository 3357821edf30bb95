"""``PROFILE=1``: py-spy flame graphs of the gateway and the connector under workload (b).

py-spy attaches with ptrace; where that is refused (some containers), the run says so in the
report instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.procs import script_path

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
_FRAME = re.compile(r"<title>(.+?) \((\d[\d,]*) samples?, [\d.]+%\)</title>")


def top_frames(svg: str, count: int = 25) -> list[tuple[str, int, float]]:
    """``(frame, samples, % of all)`` with the most samples (inclusive), from a py-spy SVG."""
    frames: Counter[str] = Counter()
    total = 0
    for label, samples in _FRAME.findall(svg):
        n = int(samples.replace(",", ""))
        if label == "all":
            total = n
            continue
        frames[label.replace("&lt;", "<").replace("&gt;", ">")] += n
    total = total or max(frames.values(), default=1)
    return [(label, n, 100 * n / total) for label, n in frames.most_common(count)]


def summary_text(svg: str, count: int = 25) -> str:
    lines = [f"{pct:5.1f}% {n:7d}  {label}" for label, n, pct in top_frames(svg, count)]
    return "inclusive samples per frame (summed over the graph)\n" + "\n".join(lines) + "\n"


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
            "-d", str(max(1, round(seconds))), "--subprocesses", "--rate", "200", "--nonblocking",
        ]  # fmt: skip
        self.running[name] = subprocess.Popen(  # noqa: S603 - our own py-spy, fixed flags
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
                top = self.out_dir / f"{name}.top.txt"
                top.write_text(summary_text(svg.read_text(errors="replace")))
                self.notes[name] = f"{svg} (summary: {top})"
            else:
                text = output.decode(errors="replace").strip().splitlines()
                self.notes[name] = "py-spy failed: " + (
                    text[-1] if text else f"rc {proc.returncode}"
                )
        self.running.clear()
        return self.notes

    def kill_all(self) -> None:
        for proc in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
