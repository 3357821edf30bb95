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


def own_frames(svg: str, count: int = 8) -> list[tuple[str, float]]:
    """The hottest frames in this project's code (gateway/, tunnel/) or in a thread/SQLite call."""
    mine = ("(gateway/", "(tunnel/", "sqlite", "to_thread")
    entry = ("/cli.py", "gateway/server.py")  # the process's entry frames hold everything
    frames = [
        (label, pct)
        for label, _, pct in top_frames(svg, 400)
        if any(m in label for m in mine) and not any(e in label for e in entry)
    ]
    return frames[:count]


def summary_text(svg: str, count: int = 25) -> str:
    lines = [f"{pct:5.1f}% {n:7d}  {label}" for label, n, pct in top_frames(svg, count)]
    return "inclusive samples per frame (summed over the graph)\n" + "\n".join(lines) + "\n"


@dataclass
class Profiler:
    """One py-spy recording per (name, pid), all started together and awaited together."""

    out_dir: Path = PROFILE_DIR
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    hot: dict[str, list[tuple[str, float]]] = field(default_factory=dict)

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
                text = svg.read_text(errors="replace")
                top = self.out_dir / f"{name}.top.txt"
                top.write_text(summary_text(text))
                self.hot[name] = own_frames(text)
                self.notes[name] = f"{_shown(svg)} (top frames: {_shown(top)})"
            else:
                said = output.decode(errors="replace").strip().splitlines()
                self.notes[name] = "py-spy failed: " + (
                    said[-1] if said else f"rc {proc.returncode}"
                )
        self.running.clear()
        return self.notes

    def kill_all(self) -> None:
        for proc in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()


def _shown(path: Path) -> str:
    """A path relative to the repository when it is inside it."""
    try:
        return str(path.relative_to(PROFILE_DIR.parents[1]))
    except ValueError:
        return str(path)
