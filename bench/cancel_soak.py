"""(h) An IDE-like, cancel-heavy soak on the gateway path (issue 11 item 1).

Closed-loop workers send chats the way an IDE does (mostly streamed, some with large prompts,
some with long answers); half of the requests are abandoned at a random point of their life:
before the answer's head, in the middle of its body, or after its end without reading it. At the
end, with no request in flight, the bench reads the gateway's tunnel windows from ``/metrics``
(``gateway_tunnel_window_bytes``) and the RSS of the gateway and the connector. Every
abandoned request must give its bytes back: both connection windows back at their full size.

The connector's receive window is read on the gateway as its outbound window: at rest (nothing
in flight, given-back credit announced within ``SessionSettings.window_check_s``) they are equal.

Alone: ``.venv/bin/python -m bench.cancel_soak [--seconds S]`` (the whole stack, then only (h)).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench import client
from bench.client import Endpoint
from bench.sampler import rss_mb
from bench.stack import GATEWAY, GATEWAY_ROUTES, Stack
from tunnel.h2.session import SessionSettings

Metrics = dict[str, float | None]
FULL_WINDOW = SessionSettings().connection_window
WINDOW_LINE = re.compile(
    r'^gateway_tunnel_window_bytes\{tunnel="(?P<tunnel>[^"]+)",window="(?P<window>\w+)"\} '
    r"(?P<value>\S+)$",
    re.MULTILINE,
)
STALLS_LINE = re.compile(r"^gateway_tunnel_stalls_total (\S+)$", re.MULTILINE)
STREAMS_LINE = re.compile(r'^gateway_tunnel_streams\{tunnel="([^"]+)"\} (\S+)$', re.MULTILINE)
LARGE_PROMPT = "lorem ipsum " * 90_000  # ~1 MB of prompt, as an IDE sends a few files


@dataclass
class Tally:
    requests: int = 0
    cancelled: int = 0
    failed: int = 0


def chat_body(endpoint: Endpoint, rng: random.Random) -> bytes:
    large = rng.random() < 0.1
    content = LARGE_PROMPT if large else "Complete this function."
    body: dict[str, object] = {
        "model": endpoint.model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 64,
    }
    if rng.random() < 0.8:  # IDEs stream; some answers are long
        chunks = 2000 if rng.random() < 0.1 else rng.randint(5, 60)
        body["stream"] = True
        body["standin"] = {"chunks": chunks, "pace_ms": rng.choice((0.0, 1.0, 5.0))}
    return json.dumps(body).encode()


async def _complete(session: aiohttp.ClientSession, endpoint: Endpoint, body: bytes) -> bool:
    async with session.post("/v1/chat/completions", data=body, headers=endpoint.headers()) as r:
        await r.read()
        return r.status == 200


async def _abandon(
    session: aiohttp.ClientSession, endpoint: Endpoint, body: bytes, rng: random.Random
) -> None:
    """Go away at a random point: before the head, mid-body, or after the end unread."""
    point = rng.choice(("before_head", "mid_body", "after_end"))
    if point == "before_head":
        task = asyncio.create_task(_complete(session, endpoint, body))
        await asyncio.sleep(rng.uniform(0.0, 0.01))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError, TimeoutError):
            await task
        return
    async with session.post("/v1/chat/completions", data=body, headers=endpoint.headers()) as r:
        if point == "mid_body":
            for _ in range(rng.randint(0, 3)):
                if not await r.content.readany():
                    break
        else:
            await asyncio.sleep(rng.uniform(0.01, 0.1))  # the answer ends meanwhile, unread
        r.close()  # the connection goes away with what is unread


async def _worker(
    session: aiohttp.ClientSession, endpoint: Endpoint, seed: int, stop_at: float, tally: Tally
) -> None:
    rng = random.Random(seed)  # noqa: S311 - the shape of a load, not a secret
    while time.monotonic() < stop_at:
        body = chat_body(endpoint, rng)
        tally.requests += 1
        try:
            if rng.random() < 0.5:
                tally.cancelled += 1
                await _abandon(session, endpoint, body, rng)
            elif not await _complete(session, endpoint, body):
                tally.failed += 1
        except (aiohttp.ClientError, TimeoutError):
            tally.failed += 1


async def read_windows(stack: Stack, connector: str) -> tuple[dict[str, float], float | None]:
    """The tunnel windows of ``connector`` (CN) and the stall count, from ``/metrics``."""
    url = f"http://127.0.0.1:{stack.admin_port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        text = await resp.text()
    windows = {
        m["window"]: float(m["value"])
        for m in WINDOW_LINE.finditer(text)
        if m["tunnel"].split("#")[0] == connector
    }
    for name, value in STREAMS_LINE.findall(text):
        if name.split("#")[0] == connector:
            windows["streams"] = float(value)
    stalls = STALLS_LINE.search(text)
    return windows, float(stalls.group(1)) if stalls else None


def _rss(pid: int | None) -> float | None:
    return rss_mb(pid) if pid is not None else None


async def cancel_soak(
    endpoint: Endpoint,
    stack: Stack,
    duration_s: float,
    concurrency: int,
    *,
    settle_s: float = 3.0,
    sample_s: float = 2.0,
) -> Metrics:
    """Run (h) for ``duration_s`` on ``endpoint`` (the gateway path).

    RSS is sampled every ``sample_s``: under this load it is a sawtooth (seen: 115 to 145 MiB
    every few tens of seconds over 8 minutes, with no trend), so two single readings say more
    about the tooth they land on than about a leak. Growth compares the peak of the last third
    with the peak of the middle third (the first third fills the allocator's pools)."""
    tally = Tally()
    front, connector = stack.front_pid(endpoint.name), stack.connector_pid(endpoint.name)
    start = (_rss(front), _rss(connector))
    stop_at = time.monotonic() + duration_s
    samples: list[tuple[float, float | None, float | None]] = []

    async def sample() -> None:
        began = time.monotonic()
        while time.monotonic() < stop_at:
            samples.append((time.monotonic() - began, _rss(front), _rss(connector)))
            await asyncio.sleep(sample_s)

    async with client.session_for(endpoint, concurrency) as session:
        await asyncio.gather(
            sample(),
            *(_worker(session, endpoint, i, stop_at, tally) for i in range(concurrency)),
        )
    await asyncio.sleep(settle_s)  # the connector's handlers end, given-back credit announced
    windows, stalls = await read_windows(stack, GATEWAY_ROUTES[endpoint.name][2])
    inbound, held, outbound = (windows.get(k) for k in ("inbound", "held", "outbound"))
    full = inbound == outbound == FULL_WINDOW and held == 0
    middle = [s for s in samples if duration_s / 3 <= s[0] < 2 * duration_s / 3]
    last = [s for s in samples if s[0] >= 2 * duration_s / 3]
    front_mid, front_last = _peak(middle, 1), _peak(last, 1)
    conn_mid, conn_last = _peak(middle, 2), _peak(last, 2)
    return {
        "requests": tally.requests,
        "cancelled": tally.cancelled,
        "failed": tally.failed,
        "stalls": stalls,
        "gateway_window_in": inbound,
        "gateway_held_bytes": held,
        "connector_window_in": outbound,  # = the gateway's outbound window, at rest
        "windows_full": float(full) if windows else None,
        "streams_open": windows.get("streams"),
        "front_rss_start_mb": start[0],
        "front_rss_warm_mb": front_mid,
        "front_rss_end_mb": front_last,
        "front_rss_growth_pct": _growth(front_mid, front_last),
        "connector_rss_start_mb": start[1],
        "connector_rss_warm_mb": conn_mid,
        "connector_rss_end_mb": conn_last,
        "connector_rss_growth_pct": _growth(conn_mid, conn_last),
    }


def _peak(samples: list[tuple[float, float | None, float | None]], index: int) -> float | None:
    values = [v for s in samples if (v := s[index]) is not None]
    return max(values) if values else None


def _growth(warm: float | None, end: float | None) -> float | None:
    """RSS growth from the middle third's peak to the last third's, in percent."""
    if warm is None or end is None or warm <= 0:
        return None
    return round(100.0 * (end - warm) / warm, 1)


async def _alone(seconds: float, concurrency: int) -> Metrics:
    work = Path(tempfile.mkdtemp(prefix="bench-h-"))
    stack = Stack(work)
    try:
        await stack.start()
        if GATEWAY not in stack.endpoints:
            raise RuntimeError(stack.unavailable.get(GATEWAY, "the gateway path is not up"))
        return await cancel_soak(stack.endpoints[GATEWAY], stack, seconds, concurrency)
    finally:
        await stack.stop()
        stack.stop_now()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.cancel_soak", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    figures = asyncio.run(_alone(args.seconds, args.concurrency))
    for name, value in figures.items():
        print(f"{name:>24}  {value}")
    return 0 if figures.get("windows_full") == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
