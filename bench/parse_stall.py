"""How long the event loop stalls while request bodies are parsed (issue 11, item 4).

Four bodies arrive together and are parsed on the loop (``json.loads`` as before; today's
``parse_body``) or through ``parse_body_async`` (large ones in one worker thread, one at a time),
while a tiny task (what a
``/healthz`` costs) starts at the same moment and a 1 ms ticker records the loop's longest stall.
Two kinds of body: a real prompt's (a few long strings) and an adversarial one (small objects).

Run: ``.venv/bin/python -m bench.parse_stall [MiB]`` (default 4, the default max_body_bytes).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable

from gateway.api.request_body import Json, parse_body, parse_body_async

CHAT = "/v1/chat/completions"
BODIES = 4


def prompt_body(size: int) -> bytes:
    line = "def f(x):\n    return {\"x\": [1]} + 'y'\t# code\n"
    text = line * (size // (len(line) + 8))
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}).encode()


def small_objects_body(size: int) -> bytes:
    part = [{"type": "text", "text": "w"}]
    messages = [{"role": "user", "content": part}] * (size // 60)
    return json.dumps({"model": "m", "messages": messages}).encode()


async def run(raw: bytes, parse: Callable[[bytes, str], Awaitable[Json]]) -> dict[str, float]:
    stalls: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            stalls.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    start = time.perf_counter()
    finished: list[float] = []

    waited: list[float] = []

    async def one() -> None:
        await parse(raw, CHAT)
        finished.append(time.perf_counter() - start)

    async def healthz() -> None:
        await asyncio.sleep(0)
        waited.append(time.perf_counter() - start)

    await asyncio.gather(*(one() for _ in range(BODIES)), healthz())
    tick.cancel()
    return {
        "healthz_ms": waited[0] * 1e3,
        "all_ms": max(finished) * 1e3,
        "stall_ms": max(stalls) * 1e3,
    }


async def before(raw: bytes, route: str) -> Json:
    """What the gateway did before: ``json.loads`` on the loop (the checks cost next to nothing)."""
    body: Json = json.loads(raw)
    return body


async def inline(raw: bytes, route: str) -> Json:
    return parse_body(raw, route)


def main(argv: list[str]) -> int:
    size = int(float(argv[0]) * (1 << 20)) if argv else 4 << 20
    for name, raw in (("prompt", prompt_body(size)), ("small objects", small_objects_body(size))):
        modes = (
            ("before", before),
            ("parse_body inline", inline),
            ("parse_body_async", parse_body_async),
        )
        for how, parse in modes:
            f = asyncio.run(run(raw, parse))
            print(
                f"{BODIES} x {len(raw) >> 10} KiB {name:13} {how:17}: healthz answered after "
                f"{f['healthz_ms']:6.0f} ms, all parsed after {f['all_ms']:6.0f} ms, "
                f"longest loop stall {f['stall_ms']:5.0f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
