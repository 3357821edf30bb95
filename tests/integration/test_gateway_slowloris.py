"""Issue 11 (6b): slowloris on the public TLS port. A connection that has done its TLS handshake
and then dribbles a request head is closed once ``[server] header_timeout_s`` has passed, and
one source address holds at most ``[server] max_connections_per_ip`` connections; a client from
another address is served all along."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.integration.test_gateway_api import MESSAGES, GatewayRig, gateway_rig

HEADER_TIMEOUT_S = 2.0
ATTACKERS = 300
SERVER_1000 = {"header_timeout_s": HEADER_TIMEOUT_S, "max_connections_per_ip": 1000}
GIVE_UP_S = 20.0  # bounds each dribbling connection (the server should close it long before)
HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nX-Slow: "


@dataclass
class Slow:
    opened: float = 0.0
    closed: float | None = None  # when the server closed it; None: still open at GIVE_UP_S
    refused: bool = False  # the TLS connection could not be made


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_tls(port: int, ctx: ssl.SSLContext) -> Conn | None:
    try:
        return await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
        )
    except (OSError, ssl.SSLError):
        return None


async def dribble(conn: Conn, opened: float | None = None) -> Slow:
    """The head of a request, then one byte every 0.25 s, until the server closes."""
    reader, writer = conn
    slow = Slow(opened=time.monotonic() if opened is None else opened)
    try:
        writer.write(HEAD)
        while time.monotonic() - slow.opened < GIVE_UP_S:
            try:
                data = await asyncio.wait_for(reader.read(1024), 0.25)
            except TimeoutError:
                writer.write(b"a")
                continue
            if not data:
                break
        else:
            writer.close()
            return slow  # still open: not closed by the server
    except (OSError, ssl.SSLError):
        pass
    slow.closed = time.monotonic()
    writer.close()
    return slow


async def slowloris(port: int, ctx: ssl.SSLContext, gate: asyncio.Semaphore) -> Slow:
    """One attacker; ``opened`` is when it began to connect, as the server's header timer counts
    from the accept (on a busy machine the TLS handshake alone can take a good part of it, and
    one that outlasts the timeout is closed by it, which counts as ``refused`` at that time)."""
    async with gate:
        opened = time.monotonic()
        conn = await open_tls(port, ctx)
    if conn is None:
        return Slow(opened=opened, closed=time.monotonic(), refused=True)
    return await dribble(conn, opened)


async def served_from_another_address(rig: GatewayRig) -> int:
    """A normal chat completion from 127.0.0.2 (another source address on loopback)."""
    transport = httpx.AsyncHTTPTransport(verify=rig.ssl_context(), local_address="127.0.0.2")
    async with httpx.AsyncClient(transport=transport, timeout=10.0) as http:
        resp = await http.post(
            f"{rig.base_url}/chat/completions",
            json={"model": "qwen3-coder", "messages": MESSAGES},
            headers=rig.headers(),
        )
    return resp.status_code


def client_ctx(rig: GatewayRig) -> ssl.SSLContext:
    ctx = rig.ssl_context()
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def test_dribbled_heads_are_closed_after_the_header_timeout(tmp_path: Path) -> None:
    server = SERVER_1000
    async with gateway_rig(tmp_path, server=server) as rig:
        gate = asyncio.Semaphore(50)  # TLS handshakes in flight from this test
        attack = [
            asyncio.ensure_future(slowloris(rig.ports["public"], client_ctx(rig), gate))
            for _ in range(ATTACKERS)
        ]
        await asyncio.sleep(1.0)
        assert await served_from_another_address(rig) == 200
        results = await asyncio.gather(*attack)
        assert "Traceback" not in rig.gateway.log_text()
    lived = sorted((r.closed or float("inf")) - r.opened for r in results)
    early = [
        r for r in results if r.refused and (r.closed or 0.0) - r.opened < HEADER_TIMEOUT_S - 0.5
    ]
    assert not early, "refused before the header timeout (the per-address limit is 1000)"
    assert lived[-1] < HEADER_TIMEOUT_S + 5.0, lived[-5:]  # closed by the server, in time
    assert lived[0] > HEADER_TIMEOUT_S - 0.5, lived[:5]  # ... and not before the timeout


async def test_one_address_holds_at_most_max_connections_per_ip(tmp_path: Path) -> None:
    limit = 8
    server = {"header_timeout_s": HEADER_TIMEOUT_S, "max_connections_per_ip": limit}
    async with gateway_rig(tmp_path, server=server) as rig:
        port, ctx = rig.ports["public"], client_ctx(rig)
        conns = [await open_tls(port, ctx) for _ in range(limit)]
        held = [asyncio.ensure_future(dribble(c)) for c in conns if c is not None]
        assert len(held) == limit
        await asyncio.sleep(0.3)
        extra = await slowloris(port, ctx, asyncio.Semaphore(1))
        assert extra.refused or (extra.closed is not None and extra.closed - extra.opened < 1.0)
        assert await served_from(rig, "127.0.0.2") == 200  # another address: served
        results = await asyncio.gather(*held)
        assert all(r.closed is not None for r in results)  # by the header timeout
        assert await served_from(rig, "127.0.0.1") == 200  # the address is let in again
        log = rig.gateway.log_text()
        assert "refused a connection from 127.0.0.1" in log
        assert "Traceback" not in log


async def served_from(rig: GatewayRig, address: str) -> int:
    transport = httpx.AsyncHTTPTransport(verify=rig.ssl_context(), local_address=address)
    async with httpx.AsyncClient(transport=transport, timeout=10.0) as http:
        resp = await http.get(f"https://localhost:{rig.ports['public']}/healthz")
    return resp.status_code


async def test_a_tls_handshake_that_never_comes_is_closed_after_the_header_timeout(
    tmp_path: Path,
) -> None:
    async with gateway_rig(tmp_path, connector=False, server=SERVER_1000) as rig:
        conns = [await asyncio.open_connection("127.0.0.1", rig.ports["public"]) for _ in range(50)]
        opened = time.monotonic()

        async def closed(reader: asyncio.StreamReader) -> float:
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(reader.read(), GIVE_UP_S)
            return time.monotonic() - opened

        lived = sorted(await asyncio.gather(*(closed(r) for r, _ in conns)))
        for _, writer in conns:
            writer.close()
    assert lived[0] > HEADER_TIMEOUT_S - 0.5, lived
    assert lived[-1] < HEADER_TIMEOUT_S + 5.0, lived
