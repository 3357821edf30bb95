"""The WebSocket carrier's endpoint before anyone is admitted: a stranger's bytes cost little.

A real `gateway serve` (public HTTPS port and ``websocket_http_listen``); the attacker speaks raw
RFC 6455 from this process and never gets as far as the inner TLS.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import time
import zlib
from pathlib import Path

import psutil

from tests.integration.test_gateway_api import GatewayRig
from tests.integration.test_websocket_gateway import WS_PATH, gateway_with_plain_ws_listener

BIG = 16 * 1024 * 1024
CONNECTIONS_PER_PORT = 5
SEND_CHUNK = 256 * 1024
MIB = 1024 * 1024

Pair = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def client_tls(rig: GatewayRig) -> ssl.SSLContext:
    ctx = rig.ssl_context()
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def connect(port: int, tls: ssl.SSLContext | None) -> Pair:
    """The gateway writes its ready file before Hypercorn listens: retry a refusal briefly."""
    deadline = time.monotonic() + 5.0
    while True:
        try:
            return await asyncio.open_connection(
                "127.0.0.1", port, ssl=tls, server_hostname="localhost" if tls else None
            )
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def open_websocket(port: int, tls: ssl.SSLContext | None, extra: str = "") -> Pair:
    """An RFC 6455 upgrade on ``WS_PATH``; returns once the gateway answered 101."""
    reader, writer = await connect(port, tls)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {WS_PATH} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"sec-websocket-extensions" not in head.lower(), head
    return reader, writer


def binary_frame_head(length: int) -> bytes:
    """FIN + binary, masked (RFC 6455 section 5.2) with an all-zero key: the payload goes as is."""
    return b"\x82\xff" + length.to_bytes(8, "big") + b"\0\0\0\0"


async def send_all_but_last_byte(writer: asyncio.StreamWriter, length: int) -> int:
    """One ``length``-byte message, less its last byte (so the gateway must hold or refuse it)."""
    writer.write(binary_frame_head(length))
    chunk, sent = b"\x17" * SEND_CHUNK, 0
    with contextlib.suppress(ConnectionError, TimeoutError):
        async with asyncio.timeout(30.0):
            while sent < length - 1:
                piece = chunk[: min(SEND_CHUNK, length - 1 - sent)]
                writer.write(piece)
                await writer.drain()
                sent += len(piece)
    return sent


async def what_the_gateway_did(reader: asyncio.StreamReader, timeout: float) -> str:
    """``"close 1009"`` (or another code), ``"eof"``, or ``"nothing"`` within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            head = await reader.readexactly(2)
            if head[0] & 0x0F != 0x8:
                return f"opcode {head[0] & 0x0F}"
            body = await reader.readexactly(head[1] & 0x7F)
            return f"close {int.from_bytes(body[:2], 'big')}"
    except asyncio.IncompleteReadError:
        return "eof"
    except ConnectionError:
        return "eof"
    except TimeoutError:
        return "nothing"


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


async def test_unauthenticated_16mib_messages_are_refused_without_holding_memory(
    tmp_path: Path,
) -> None:
    async with gateway_with_plain_ws_listener(tmp_path) as rig:
        pid = rig.gateway.pid
        ports = [(rig.ports["public"], client_tls(rig)), (rig.ports["websocket_http"], None)]
        pairs = [
            await open_websocket(port, tls)
            for port, tls in ports
            for _ in range(CONNECTIONS_PER_PORT)
        ]
        before = rss(pid)
        await asyncio.gather(*(send_all_but_last_byte(w, BIG) for _, w in pairs))
        await asyncio.sleep(0.5)  # let the gateway read what the sockets still hold
        grown = rss(pid) - before
        outcomes = await asyncio.gather(*(what_the_gateway_did(r, 5.0) for r, _ in pairs))
        for _, writer in pairs:
            writer.close()
        assert grown < 50 * MIB, f"the gateway grew by {grown / MIB:.0f} MiB; {outcomes}"
        assert all(o in ("close 1009", "eof") for o in outcomes), outcomes
        assert rig.gateway.running


async def test_an_idle_unauthenticated_websocket_is_closed(tmp_path: Path) -> None:
    """No inner handshake within ``[tunnel] handshake_timeout_s`` (2 s in these tests)."""
    async with gateway_with_plain_ws_listener(tmp_path) as rig:
        ports = [(rig.ports["public"], client_tls(rig)), (rig.ports["websocket_http"], None)]
        for port, tls in ports:
            reader, writer = await open_websocket(port, tls)
            start = time.monotonic()
            outcome = await what_the_gateway_did(reader, 8.0)
            writer.close()
            assert outcome in ("close 1000", "close 1008", "eof"), outcome
            assert time.monotonic() - start < 6.0
        assert "TLS handshake failed: handshake timed out" in rig.gateway.log_text()


def deflate_bomb(inflated: int) -> bytes:
    """A permessage-deflate message body (RFC 7692 section 7.2.1) of ``inflated`` zero bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = compressor.compress(bytes(inflated)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return body[:-4]  # the empty block's tail, as the RFC says to remove


async def test_compression_is_never_agreed_so_a_deflate_bomb_inflates_nothing(
    tmp_path: Path,
) -> None:
    """256 KiB on the wire would inflate to 256 MiB before any size check."""
    async with gateway_with_plain_ws_listener(tmp_path) as rig:
        offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        reader, writer = await open_websocket(rig.ports["websocket_http"], None, offer)
        proc = psutil.Process(rig.gateway.pid)
        before = peak = rss(rig.gateway.pid)
        body = deflate_bomb(256 * MIB)
        writer.write(b"\xc2\xff" + len(body).to_bytes(8, "big") + b"\0\0\0\0" + body)  # RSV1 set
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        outcome = "nothing"
        for _ in range(50):
            peak = max(peak, int(proc.memory_info().rss))
            outcome = await what_the_gateway_did(reader, 0.02)
            if outcome != "nothing":
                break
        writer.close()
        assert peak - before < 50 * MIB, f"the gateway grew by {(peak - before) / MIB:.0f} MiB"
        assert outcome in ("close 1002", "eof"), outcome  # RSV1 without the extension
