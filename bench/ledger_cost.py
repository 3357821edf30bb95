"""What the durable usage ledger costs per request: ``UsageLedger.record`` awaited one at a time
(every record its own commit: the worst case) and 64 at a time (group commits, as under load).
Each record carries its outcome, as the gateway's do: a ``usage`` total and a ``request_log`` row.

Run: ``.venv/bin/python -m bench.ledger_cost [N]``. Prints wall-clock and process CPU (the
writer thread included) per record, and the commits made.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from gateway.ledger import RequestOutcome, UsageLedger


async def measure(n: int, concurrency: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        ledger = UsageLedger(Path(tmp) / "gateway.db")
        try:
            await ledger.record("warm", "m", 1, 1)
            wall, cpu = time.perf_counter(), time.process_time()
            for start in range(0, n, concurrency):
                batch = range(start, min(n, start + concurrency))
                done = RequestOutcome(time.time(), 200, 0.1, 0.5)
                await asyncio.gather(*(ledger.record(f"k{i % 8}", "m", 5, 5, done) for i in batch))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            commits = getattr(ledger, "commits", 0)
        finally:
            await ledger.aclose()
    return {"wall_us": wall / n * 1e6, "cpu_us": cpu / n * 1e6, "commits": float(commits)}


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 5000
    for concurrency in (1, 64):
        f = asyncio.run(measure(n, concurrency))
        print(
            f"ledger.record x{n}, {concurrency:>2} at a time: {f['wall_us']:6.1f} us wall, "
            f"{f['cpu_us']:6.1f} us CPU per record, {f['commits']:.0f} commits"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
