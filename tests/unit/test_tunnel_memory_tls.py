"""tunnel.security.memory_tls: mutual TLS over an in-memory byte stream (no sockets)."""

from __future__ import annotations

import asyncio
import ssl

import pytest
import trustme

from tunnel.errors import HandshakeError
from tunnel.security.memory_tls import MemoryTLSStream


class _Pipe:
    """One direction of an in-memory stream with a bounded buffer (writes wait for room)."""

    def __init__(self, capacity: int) -> None:
        self.buffer = bytearray()
        self.capacity = capacity
        self.closed = False
        self.changed = asyncio.Condition()

    async def put(self, data: bytes) -> None:
        async with self.changed:
            view = memoryview(data)
            while view:
                await self.changed.wait_for(lambda: self.closed or len(self.buffer) < self.capacity)
                if self.closed:
                    raise ConnectionResetError("pipe closed")
                room = self.capacity - len(self.buffer)
                self.buffer += view[:room]
                view = view[room:]
                self.changed.notify_all()

    async def get(self, max_bytes: int) -> bytes:
        async with self.changed:
            await self.changed.wait_for(lambda: self.closed or bool(self.buffer))
            data = bytes(self.buffer[:max_bytes])
            del self.buffer[:max_bytes]
            self.changed.notify_all()
            return data

    async def close(self) -> None:
        async with self.changed:
            self.closed = True
            self.changed.notify_all()


class _End:
    def __init__(self, inbound: _Pipe, outbound: _Pipe) -> None:
        self.inbound, self.outbound = inbound, outbound
        self.writes = 0

    async def read(self, max_bytes: int) -> bytes:
        return await self.inbound.get(max_bytes)

    async def write(self, data: bytes) -> None:
        self.writes += 1
        await self.outbound.put(data)

    async def aclose(self) -> None:
        await self.outbound.close()
        await self.inbound.close()


def _pair(capacity: int = 32768) -> tuple[_End, _End]:
    a_to_b, b_to_a = _Pipe(capacity), _Pipe(capacity)
    return _End(b_to_a, a_to_b), _End(a_to_b, b_to_a)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def _server_ctx(ca: trustme.CA, trusted: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ca.issue_cert("gateway.test").configure_cert(ctx)
    trusted.configure_trust(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"])
    return ctx


def _client_ctx(ca: trustme.CA, trusted: trustme.CA, cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    trusted.configure_trust(ctx)
    if cert:
        ca.issue_cert(common_name="office-1").configure_cert(ctx)
    ctx.set_alpn_protocols(["h2"])
    return ctx


async def _connect(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str = "gateway.test"
) -> tuple[MemoryTLSStream, MemoryTLSStream]:
    a, b = _pair()
    results = await asyncio.gather(
        MemoryTLSStream.client(a, client_ctx, hostname, "test client"),
        MemoryTLSStream.server(b, server_ctx, "test server"),
        return_exceptions=True,
    )
    client, server = results
    for r in results:
        if isinstance(r, BaseException):
            for other in results:
                if isinstance(other, MemoryTLSStream):
                    await other.aclose()
            raise r
    assert isinstance(client, MemoryTLSStream)
    assert isinstance(server, MemoryTLSStream)
    return client, server


async def _read_exactly(stream: MemoryTLSStream, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = await stream.read(65536)
        assert chunk, "stream ended early"
        out += chunk
    return bytes(out)


async def test_handshake_names_both_peers(ca: trustme.CA) -> None:
    client, server = await _connect(_server_ctx(ca, ca), _client_ctx(ca, ca))
    assert client.peer.serial > 0
    assert server.peer.common_name == "office-1"
    assert client.tls_version == "TLSv1.3"
    assert client.alpn_protocol == "h2"
    assert server.description == "test server"
    await client.aclose()
    await server.aclose()


async def test_bytes_flow_both_ways_byte_exact(ca: trustme.CA) -> None:
    client, server = await _connect(_server_ctx(ca, ca), _client_ctx(ca, ca))
    up = bytes(range(256)) * 8192  # 2 MiB
    down = bytes(reversed(range(256))) * 4096
    results = await asyncio.gather(
        client.write(up),
        _read_exactly(server, len(up)),
        server.write(down),
        _read_exactly(client, len(down)),
    )
    assert results[1] == up
    assert results[3] == down
    await client.aclose()
    assert await server.read(100) == b""
    await server.aclose()


async def test_write_waits_for_the_lower_layer(ca: trustme.CA) -> None:
    client, server = await _connect(_server_ctx(ca, ca), _client_ctx(ca, ca))
    payload = b"x" * 1_000_000  # far more than the 32 KiB pipe holds
    writer = asyncio.create_task(client.write(payload))
    for _ in range(50):
        await asyncio.sleep(0)
    assert not writer.done(), "write returned before the lower layer took the bytes"
    assert await _read_exactly(server, len(payload)) == payload
    await writer
    await client.aclose()
    await server.aclose()


async def test_other_ca_gateway_refused_by_client(ca: trustme.CA) -> None:
    impostor = trustme.CA(organization_name="Corp Proxy CA")
    with pytest.raises(HandshakeError, match="certificate"):
        await _connect(_server_ctx(impostor, ca), _client_ctx(ca, ca))


async def test_wrong_name_refused_by_client(ca: trustme.CA) -> None:
    with pytest.raises(HandshakeError, match="certificate"):
        await _connect(_server_ctx(ca, ca), _client_ctx(ca, ca), hostname="other.test")


async def test_other_ca_client_refused_by_server(ca: trustme.CA) -> None:
    stranger = trustme.CA()
    with pytest.raises(HandshakeError):
        await _connect(_server_ctx(ca, ca), _client_ctx(stranger, ca))


async def test_no_client_certificate_refused(ca: trustme.CA) -> None:
    with pytest.raises(HandshakeError):
        await _connect(_server_ctx(ca, ca), _client_ctx(ca, ca, cert=False))
