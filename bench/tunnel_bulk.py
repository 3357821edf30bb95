"""(f) 50 MB up and down through the tunnel, measured on the tunnel API itself.

The gateway forwards only the OpenAI routes (JSON bodies, parsed and accounted), so bulk bytes
cannot go through it. Here the bench holds a ``tunnel.listener.Listener`` in-process and a real
``connector`` process dials it (directly, or through a private squid); the bench then sends
``POST /v1/bulk/upload`` and ``GET /v1/bulk/download`` on the tunnel's ``TunnelPool``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from bench import stats
from bench.stack import GATEWAY_ROUTES, SQUID, Stack, connector_toml
from tests.support.procs import our_command
from tests.support.squid import Squid, SquidOptions
from tunnel.config import ListenerConfig
from tunnel.listener import Listener

BLOCK = bytes(1 << 20)
Metrics = dict[str, float | None]


async def _body(size: int) -> AsyncIterator[bytes]:
    view = memoryview(BLOCK)
    remaining = size
    while remaining > 0:
        piece = view[: min(len(BLOCK), remaining)]
        remaining -= len(piece)
        yield bytes(piece)


async def _wait_for_upstream(pool: Any, upstream: str, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        status = pool.status()
        if any(upstream in t.upstreams and not t.draining for t in status.tunnels):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no connector announced {upstream!r} within {within_s:.0f}s")


async def _transfer(pool: Any, upstream: str, size: int) -> Metrics:
    headers = [("content-type", "application/octet-stream"), ("content-length", str(size))]
    start = time.perf_counter()
    response = await pool.request(upstream, "POST", "/v1/bulk/upload", headers, _body(size))
    answer = b"".join([piece async for piece in response.body()])
    await response.aclose()
    up_s = time.perf_counter() - start
    counted = json.loads(answer).get("bytes") if response.status == 200 else None
    start = time.perf_counter()
    response = await pool.request(upstream, "GET", f"/v1/bulk/download?bytes={size}", [], b"")
    received = 0
    async for piece in response.body():
        received += len(piece)
    await response.aclose()
    down_s = time.perf_counter() - start
    return {
        "up_mb_s": stats.mb_per_s(size, up_s) if counted == size else None,
        "down_mb_s": stats.mb_per_s(size, down_s) if received == size else None,
        "errors": int(counted != size) + int(received != size),
    }


async def tunnel_bulk(stack: Stack, path: str, size: int) -> Metrics:
    """Run (f) for ``path`` ("gateway" or "gateway+squid") over a fresh in-process listener."""
    _, upstream, cert = GATEWAY_ROUTES[path]
    table = {
        "listen": "127.0.0.1:0",
        "cert": "gateway.crt",
        "key": "gateway.key",
        "ca": "ca.crt",
        "crl": "crl.pem",
        "allowed_connectors": [cert],
    }
    listener = Listener(ListenerConfig.from_table(table, stack.pki))
    await listener.start()
    squid: Squid | None = None
    proc = None
    try:
        carrier = "tls"
        if path == SQUID:
            squid = Squid(SquidOptions(ssl_ports=(listener.port,)), log_dir=stack.work)
            await squid.astart()
            carrier = f"squid:{squid.port}"
        role = f"bulk-connector-{path}"
        config = stack.work / f"{role}.toml"
        config.write_text(
            connector_toml(listener.port, cert, upstream, stack.upstream_url, carrier)
        )
        proc = our_command("connector", "run", "-c", str(config), work_dir=stack.work, name=role)
        await proc.astart()
        await _wait_for_upstream(listener.pool, upstream, 30.0)
        return await _transfer(listener.pool, upstream, size)
    finally:
        if proc is not None:
            await proc.astop(timeout=5.0)
        if squid is not None:
            with contextlib.suppress(Exception):
                await squid.astop()
        with contextlib.suppress(Exception):
            await listener.aclose(drain_timeout_s=1.0)
