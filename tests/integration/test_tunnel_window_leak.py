"""Issue 11 item 1: thousands of requests cancelled at every point of their life through one
tunnel leave both connection windows at their full size, and a 16 MiB body still crosses.

Everything runs in the test's event loop, but over real sockets: a ``Listener`` (gateway side),
a ``Connector`` dialling it with mutual TLS on 127.0.0.1, and an aiohttp upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from aiohttp import web

from tests.integration.test_tunnel_support import listener_config, wait_until
from tests.support.pki_fixtures import PkiPaths, make_pki
from tunnel.api import TunnelResponse
from tunnel.config import ConnectorConfig
from tunnel.connector import Connector
from tunnel.errors import StreamResetError
from tunnel.h2.session import Session, SessionSettings
from tunnel.listener import Listener

UP = "office-llm"
MIB = 1024 * 1024
SETTINGS = SessionSettings(ping_interval_s=1.0, ping_timeout_s=5.0, window_check_s=0.1)


# --------------------------------------------------------------------------- the upstream


async def answer(request: web.Request) -> web.StreamResponse:
    """Waits ``delay_ms``, reads the whole request body, then sends ``bytes`` bytes."""
    try:
        return await _answer(request)
    except ConnectionResetError:  # the connector went away (a cancelled request): fine
        return web.Response(status=499)


async def _answer(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(int(request.query.get("delay_ms", "0")) / 1000)
    received = 0
    async for piece in request.content.iter_any():
        received += len(piece)
    size = int(request.query.get("bytes", "0"))
    response = web.StreamResponse(headers={"x-received": str(received)})
    await response.prepare(request)
    piece = bytes(64 * 1024)
    sent = 0
    while sent < size:
        part = piece[: size - sent]
        await response.write(part)
        sent += len(part)
    await response.write_eof()
    return response


async def refuse(_request: web.Request) -> web.Response:
    """Answers 400 at once, never reading the (large) prompt."""
    return web.json_response(
        {"error": {"message": "no", "type": "invalid_request_error"}}, status=400
    )


async def silent(_request: web.Request) -> web.Response:
    """Never answers, never reads."""
    await asyncio.sleep(60)
    return web.Response()


@contextlib.asynccontextmanager
async def upstream() -> AsyncIterator[str]:
    app = web.Application(client_max_size=64 * MIB)
    app.router.add_route("*", "/v1/answer", answer)
    app.router.add_post("/v1/refuse", refuse)
    app.router.add_post("/v1/silent", silent)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------------- the rig


@dataclass
class Rig:
    listener: Listener
    connector: Connector

    def pair(self) -> tuple[Session, Session]:
        (gateway,) = self.listener.sessions()
        (office,) = self.connector.sessions()
        return gateway, office

    async def request(
        self, method: str, path: str, body: bytes | AsyncIterator[bytes] = b""
    ) -> TunnelResponse:
        return await self.listener.pool.request(UP, method, path, [], body)


def connector_config(pki: PkiPaths, port: int, upstream_url: str) -> ConnectorConfig:
    data = {
        "gateway": {
            "address": f"127.0.0.1:{port}",
            "server_name": "localhost",
            "ca": str(pki.ca_cert),
            "cert": str(pki.client_cert),
            "key": str(pki.client_key),
            "transport": "tls",
            "reconnect_base_s": 0.1,
            "reconnect_max_s": 0.3,
        },
        "upstreams": {UP: {"url": upstream_url, "timeout_s": 1.0}},
    }
    return ConnectorConfig.from_dict(data, pki.dir)


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path, gateway: SessionSettings = SETTINGS, office: SessionSettings = SETTINGS
) -> AsyncIterator[Rig]:
    pki = make_pki(tmp_path)
    async with upstream() as url:
        listener = Listener(listener_config(pki), settings=gateway)
        await listener.start()
        connector = Connector(connector_config(pki, listener.port, url), {}, settings=office)
        stop = asyncio.Event()
        running = asyncio.create_task(connector.run(stop))
        try:
            await wait_until(lambda: listener.status().ready, 10.0, "the tunnel")
            yield Rig(listener, connector)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await running
            await listener.aclose(drain_timeout_s=1.0)


async def big_body(size: int) -> AsyncIterator[bytes]:
    piece = bytes(MIB)
    for _ in range(size // MIB):
        yield piece
        await asyncio.sleep(0)


# --------------------------------------------------------------------------- the cancellations


async def before_headers(rig: Rig, rng: random.Random) -> None:
    task = asyncio.create_task(rig.request("POST", "/v1/answer?delay_ms=30&bytes=1000", b"{}"))
    await asyncio.sleep(rng.uniform(0, 0.01))
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, StreamResetError):
        await task


async def mid_body(rig: Rig, _rng: random.Random) -> None:
    resp = await rig.request("POST", "/v1/answer?bytes=300000", b"{}")
    await resp.read()
    await resp.aclose()


async def after_the_last_chunk(rig: Rig, _rng: random.Random) -> None:
    """The answer arrived whole; nobody reads it (a client gone just after the end)."""
    resp = await rig.request("POST", "/v1/answer?bytes=20000", b"{}")
    stream = resp._stream  # type: ignore[attr-defined]
    await wait_until(lambda: stream.remote_closed, 5.0, "the end of the answer")
    await resp.aclose()


async def error_unread(rig: Rig, _rng: random.Random) -> None:
    """A non-200 answer closed without reading it (as the gateway's /v1/models does)."""
    resp = await rig.request("POST", "/v1/refuse", b"{}")
    assert resp.status == 400
    await asyncio.sleep(0.002)
    await resp.aclose()


async def refused_by_the_connector(rig: Rig, _rng: random.Random) -> None:
    """The connector answers 403 at once (a path outside /v1/), never reading the prompt."""
    resp = await rig.request("POST", "/v2/elsewhere", bytes(100_000))
    assert resp.status == 403
    await resp.read()
    await resp.aclose()


async def large_prompt_refused(rig: Rig, _rng: random.Random) -> None:
    """A large prompt to an upstream that answers without reading it (connector side)."""
    resp = await rig.request("POST", "/v1/refuse", bytes(2 * MIB))
    assert resp.status == 400
    await resp.read()
    await resp.aclose()


async def large_prompt_cancelled(rig: Rig, rng: random.Random) -> None:
    """A large prompt to an upstream that never answers, cancelled mid-upload or after."""
    task = asyncio.create_task(rig.request("POST", "/v1/silent", big_body(3 * MIB)))
    await asyncio.sleep(rng.uniform(0, 0.3))
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, StreamResetError):
        await task


async def large_prompt_unanswered(rig: Rig, _rng: random.Random) -> None:
    """The upstream never answers; the connector's upstream timeout answers 502."""
    resp = await rig.request("POST", "/v1/silent", bytes(3 * MIB))
    assert resp.status == 502
    await resp.aclose()


async def large_answer_cancelled(rig: Rig, rng: random.Random) -> None:
    resp = await rig.request("GET", "/v1/answer?bytes=8000000")
    for _ in range(rng.randint(0, 3)):
        await resp.read()
    await resp.aclose()


Ending = Callable[[Rig, random.Random], Awaitable[None]]
SMALL: tuple[Ending, ...] = (
    before_headers,
    mid_body,
    after_the_last_chunk,
    error_unread,
    refused_by_the_connector,
)
LARGE: tuple[Ending, ...] = (
    large_prompt_refused,
    large_prompt_cancelled,
    large_prompt_unanswered,
    large_answer_cancelled,
)


async def run_all(rig: Rig, endings: list[Ending], concurrency: int) -> None:
    rng = random.Random(11)
    queue = list(endings)

    async def worker() -> None:
        while queue:
            await queue.pop()(rig, rng)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def at_rest(rig: Rig) -> None:
    gateway, office = rig.pair()
    await wait_until(
        lambda: gateway.active_streams == 0 and office.active_streams == 0, 10.0, "no streams"
    )
    full = SETTINGS.connection_window

    def settled() -> bool:
        g, o = gateway.window_state(), office.window_state()
        return g.inbound == g.outbound == o.inbound == o.outbound == full

    with contextlib.suppress(TimeoutError):
        await wait_until(settled, 3.0, "the windows back to full")
    g, o = gateway.window_state(), office.window_state()
    assert (g.inbound_held, o.inbound_held) == (0, 0), (g, o)  # nothing received is lost
    assert (g.inbound, g.outbound, o.inbound, o.outbound) == (full,) * 4, (g, o)


@pytest.mark.timeout(90)
async def test_thousands_of_cancellations_leave_both_windows_full(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        started = time.monotonic()
        endings = [*SMALL * 400, *LARGE * 3]
        random.Random(7).shuffle(endings)
        await run_all(r, endings, concurrency=16)
        await at_rest(r)
        # a 16 MiB body still crosses, both ways
        resp = await r.request("POST", "/v1/answer", big_body(16 * MIB))
        assert dict(resp.headers)["x-received"] == str(16 * MIB)
        await resp.aclose()
        resp = await r.request("GET", f"/v1/answer?bytes={16 * MIB}")
        received = 0
        while piece := await resp.read():
            received += len(piece)
        assert received == 16 * MIB
        await resp.aclose()
        await at_rest(r)
        assert time.monotonic() - started < 60


@pytest.mark.timeout(60)
async def test_a_stalled_tunnel_is_closed_and_the_connector_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    quick = replace(SETTINGS, stall_timeout_s=0.5)
    async with rig(tmp_path, gateway=quick) as r:
        gateway, office = r.pair()
        first = r.listener.status().tunnels[0].tunnel_id
        # a peer that never gives credit back, at either level
        monkeypatch.setattr(office, "ack", lambda *_args: None)
        monkeypatch.setattr(office.conn, "credit_connection", lambda *_args: None)
        uploads = [
            asyncio.create_task(r.request("POST", "/v1/answer", big_body(8 * MIB)))
            for _ in range(6)  # 6 stream windows of 4 MiB > the 16 MiB connection window
        ]
        await wait_until(lambda: r.listener.status().stalls_total == 1, 10.0, "the stall")
        assert gateway.stalled is not None
        assert gateway.stalled.startswith("outbound")
        results = await asyncio.gather(*uploads, return_exceptions=True)
        assert all(isinstance(x, StreamResetError) for x in results), results

        def replaced() -> bool:
            tunnels = r.listener.status().tunnels
            return (
                len(tunnels) == 1 and tunnels[0].tunnel_id != first and tunnels[0].stalled is None
            )

        await wait_until(replaced, 10.0, "a new tunnel")
        assert r.listener.status().ready
        resp = await r.request("POST", "/v1/answer?bytes=10", bytes(5 * MIB))
        assert dict(resp.headers)["x-received"] == str(5 * MIB)
        await resp.aclose()


@pytest.mark.timeout(60)
async def test_clients_that_stop_reading_hold_back_only_their_own_streams(tmp_path: Path) -> None:
    # Five answers larger than a stream window, nobody reading them (suspended IDEs): 5 x 4 MiB
    # would be more than the 16 MiB connection window if unread DATA kept connection credit.
    quick = replace(SETTINGS, stall_timeout_s=0.5)
    async with rig(tmp_path, gateway=quick, office=quick) as r:
        gateway, office = r.pair()
        unread = [await r.request("GET", f"/v1/answer?bytes={6 * MIB}") for _ in range(5)]
        streams = [resp._stream for resp in unread]  # type: ignore[attr-defined]
        await wait_until(
            lambda: all(s.buffered == SETTINGS.stream_window for s in streams), 10.0, "full"
        )
        started = time.monotonic()
        resp = await r.request("POST", f"/v1/answer?bytes={5 * MIB}", big_body(4 * MIB))
        assert dict(resp.headers)["x-received"] == str(4 * MIB)
        received = 0
        while piece := await resp.read():
            received += len(piece)
        await resp.aclose()
        assert received == 5 * MIB
        assert time.monotonic() - started < 10.0
        await asyncio.sleep(2.0)  # four stall timeouts with the five still unread
        assert gateway.stalled is None
        assert office.stalled is None
        assert r.listener.status().stalls_total == 0
        assert gateway.window_state().inbound_held == 0
        (info,) = r.listener.status().tunnels
        assert info.inbound_buffered == 5 * SETTINGS.stream_window  # each holds its own window
        assert info.inbound_window > 0
        for response in unread:
            total = 0
            while piece := await response.read():
                total += len(piece)
            await response.aclose()
            assert total == 6 * MIB
        await at_rest(r)
