"""The private squid in each guise behaves like the proxies the tunnel must get through."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiohttp import WSMsgType, web
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Request, TextMessage

from tests.support.squid import Squid, SquidOptions, render_conf
from tests.support.standin_llm import StandinLLM

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


# --------------------------------------------------------------------------- small raw clients


async def read_head(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return head.split(b"\r\n", 1)[0].decode(), head


async def proxy_connect(
    proxy_port: int, target: str, auth: tuple[str, str] | None = None
) -> tuple[str, Conn]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {token}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    status, _head = await read_head(reader)
    return status, (reader, writer)


async def proxy_get(proxy_port: int, url: str, auth: tuple[str, str] | None = None) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    lines = [f"GET {url} HTTP/1.1", f"Host: {url.split('/')[2]}", "Connection: close"]
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {token}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        status, _head = await read_head(reader)
    finally:
        writer.close()
    return status


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
async def standin() -> AsyncIterator[StandinLLM]:
    async with StandinLLM() as s:
        yield s


@pytest.fixture
def server_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_standin(server_ca: trustme.CA) -> AsyncIterator[StandinLLM]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    s = StandinLLM()
    await s.start(ssl_context=ctx)
    try:
        yield s
    finally:
        await s.stop()


# --------------------------------------------------------------------------- config (no squid)


def test_render_conf_per_guise(tmp_path: Path) -> None:
    default = render_conf(SquidOptions(), 3128, tmp_path, None)
    assert "http_access deny CONNECT !SSL_ports" in default
    assert "acl SSL_ports port 443\n" in default
    assert "ssl-bump" not in default
    bump = render_conf(SquidOptions(guise="bump", ssl_ports=(443, 9443)), 3128, tmp_path, "proxy")
    assert "acl SSL_ports port 443 9443" in bump
    assert "ssl_bump bump all" in bump
    assert "flags=DONT_VERIFY_PEER" in bump
    assert "cache_effective_user proxy" in bump
    http_only = render_conf(SquidOptions(guise="http_only", auth=("u", "p")), 1, tmp_path, None)
    assert "http_access deny CONNECT\n" in http_only
    assert "acl authed proxy_auth REQUIRED" in http_only
    with pytest.raises(ValueError, match="guise"):
        SquidOptions(guise="nope")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- default


async def test_default_refuses_connect_to_non_443_with_403(
    standin: StandinLLM, tmp_path: Path
) -> None:
    async with Squid(SquidOptions(), log_dir=tmp_path) as squid:
        status, (_r, writer) = await proxy_connect(squid.port, f"127.0.0.1:{standin.port}")
        writer.close()
        assert status == "HTTP/1.1 403 Forbidden"
        # plain HTTP to a high port is fine under squid's default Safe_ports
        assert await proxy_get(squid.port, standin.url + "/v1/models") == "HTTP/1.1 200 OK"
    assert "TCP_DENIED/403" in (tmp_path / f"squid-{squid.port}-access.log").read_text()


async def test_default_allows_connect_to_the_port_that_stands_for_443(
    standin: StandinLLM, tmp_path: Path
) -> None:
    async with Squid(SquidOptions(ssl_ports=(443, standin.port)), log_dir=tmp_path) as squid:
        status, (reader, writer) = await proxy_connect(squid.port, f"127.0.0.1:{standin.port}")
        assert status == "HTTP/1.1 200 Connection established"
        writer.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        inner_status, _ = await read_head(reader)
        writer.close()
    assert inner_status == "HTTP/1.1 200 OK"


async def test_basic_proxy_auth(standin: StandinLLM, tmp_path: Path) -> None:
    options = SquidOptions(ssl_ports=(standin.port,), auth=("office", "s3cret"))
    async with Squid(options, log_dir=tmp_path) as squid:
        target = f"127.0.0.1:{standin.port}"
        status, (_r, writer) = await proxy_connect(squid.port, target)
        writer.close()
        assert status == "HTTP/1.1 407 Proxy Authentication Required"
        status, (_r, writer) = await proxy_connect(squid.port, target, ("office", "wrong"))
        writer.close()
        assert status == "HTTP/1.1 407 Proxy Authentication Required"
        status, (_r, writer) = await proxy_connect(squid.port, target, ("office", "s3cret"))
        writer.close()
        assert status == "HTTP/1.1 200 Connection established"
        assert squid.url_with_auth == f"http://office:s3cret@127.0.0.1:{squid.port}"


# --------------------------------------------------------------------------- bump


async def test_bump_resigns_the_server_certificate_with_the_proxy_ca(
    tls_standin: StandinLLM, server_ca: trustme.CA, tmp_path: Path
) -> None:
    options = SquidOptions(guise="bump", ssl_ports=(tls_standin.port,))
    async with Squid(options, log_dir=tmp_path) as squid:
        target = f"127.0.0.1:{tls_standin.port}"
        # trusting only the server's own CA: the handshake fails, the proxy intercepts
        strict = ssl.create_default_context()
        server_ca.configure_trust(strict)
        status, (_reader, writer) = await proxy_connect(squid.port, target)
        assert status == "HTTP/1.1 200 Connection established"
        with pytest.raises(ssl.SSLCertVerificationError):
            await writer.start_tls(strict, server_hostname="127.0.0.1")
        writer.close()
        # trusting the proxy's CA: it works, and the certificate is the proxy's
        corp = ssl.create_default_context(cafile=str(squid.proxy_ca_path))
        status, (reader, writer) = await proxy_connect(squid.port, target)
        await writer.start_tls(corp, server_hostname="127.0.0.1")
        ssl_object = writer.get_extra_info("ssl_object")
        issuer = dict(item[0] for item in ssl_object.getpeercert()["issuer"])
        writer.write(
            f"GET /v1/models HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n".encode()
        )
        inner_status, _ = await read_head(reader)
        writer.close()
    assert issuer["commonName"] == "Corp Proxy CA"
    assert inner_status == "HTTP/1.1 200 OK"
    assert tls_standin.requests[-1].path == "/v1/models"


async def test_bump_refuses_non_ssl_ports_inside_the_intercepted_tls(
    standin: StandinLLM, tmp_path: Path
) -> None:
    """An intercepting squid answers a refused CONNECT with 200, then shows its 403 inside TLS."""
    async with Squid(SquidOptions(guise="bump"), log_dir=tmp_path) as squid:
        target = f"127.0.0.1:{standin.port}"
        status, (reader, writer) = await proxy_connect(squid.port, target)
        assert status == "HTTP/1.1 200 Connection established"
        corp = ssl.create_default_context(cafile=str(squid.proxy_ca_path))
        corp.check_hostname = False  # for a refused CONNECT squid names the host in CN only
        await writer.start_tls(corp, server_hostname="127.0.0.1")
        writer.write(f"GET /v1/models HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        inner_status, head = await read_head(reader)
        writer.close()
    assert inner_status == "HTTP/1.1 403 Forbidden"
    assert b"ERR_ACCESS_DENIED" in head
    assert standin.requests == []


async def test_bump_with_upstream_ca_verifies_servers(
    tls_standin: StandinLLM, server_ca: trustme.CA, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    good_ca = tmp_path / "good-ca.pem"
    server_ca.cert_pem.write_to_path(str(good_ca))
    target = f"127.0.0.1:{tls_standin.port}"
    statuses = []
    for upstream_ca in (good_ca, other_ca):
        options = SquidOptions(guise="bump", ssl_ports=(tls_standin.port,), upstream_ca=upstream_ca)
        async with Squid(options, log_dir=tmp_path) as squid:
            _status, (reader, writer) = await proxy_connect(squid.port, target)
            corp = ssl.create_default_context(cafile=str(squid.proxy_ca_path))
            corp.check_hostname = False  # an unverified server's stand-in cert names it in CN only
            await writer.start_tls(corp, server_hostname="127.0.0.1")
            writer.write(f"GET /v1/models HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            statuses.append((await read_head(reader))[0])
            writer.close()
    assert statuses == ["HTTP/1.1 200 OK", "HTTP/1.1 503 Service Unavailable"]


async def test_bump_passes_websocket_inside_intercepted_tls(
    server_ca: trustme.CA, tmp_path: Path
) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    runner, ws_port = await ws_echo_app_runner(server_ctx)
    try:
        options = SquidOptions(guise="bump", ssl_ports=(ws_port,))
        async with Squid(options, log_dir=tmp_path) as squid:
            corp = ssl.create_default_context(cafile=str(squid.proxy_ca_path))
            echoed = await websocket_through_proxy(squid.port, f"127.0.0.1:{ws_port}", corp)
    finally:
        await runner.cleanup()
    assert echoed == b"olleh"


# --------------------------------------------------------------------------- http_only


async def ws_echo_app_runner(
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, int]:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
    return runner, int(runner.addresses[0][1])


async def websocket_through_proxy(
    proxy_port: int, target: str, tls: ssl.SSLContext | None = None
) -> bytes:
    """A WebSocket through the proxy, one binary message each way: absolute-form ``GET`` for
    plain HTTP, or ``CONNECT`` then TLS (``tls``) then an origin-form ``GET``."""
    ws = WSConnection(ConnectionType.CLIENT)
    if tls is None:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        writer.write(ws.send(Request(host=target, target=f"http://{target}/ws")))
    else:
        status, (reader, writer) = await proxy_connect(proxy_port, target)
        assert status == "HTTP/1.1 200 Connection established"
        await writer.start_tls(tls, server_hostname=target.split(":", maxsplit=1)[0])
        writer.write(ws.send(Request(host=target, target="/ws")))
    got: list[bytes] = []
    accepted = False
    try:
        async with asyncio.timeout(10):
            while not got:
                data = await reader.read(65536)
                assert data, "proxy closed the connection"
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        accepted = True
                        writer.write(ws.send(BytesMessage(data=b"hello")))
                    elif isinstance(event, BytesMessage | TextMessage):
                        got.append(bytes(event.data) if isinstance(event.data, bytes) else b"")
                    else:
                        raise AssertionError(f"unexpected {event!r}")
    finally:
        writer.close()
    assert accepted
    return got[0]


async def test_http_only_refuses_connect_and_forwards_plain_http_and_websocket(
    standin: StandinLLM, tmp_path: Path
) -> None:
    runner, ws_port = await ws_echo_app_runner()
    try:
        options = SquidOptions(guise="http_only", ssl_ports=(443, standin.port))
        async with Squid(options, log_dir=tmp_path) as squid:
            status, (_r, writer) = await proxy_connect(squid.port, f"127.0.0.1:{standin.port}")
            writer.close()
            assert status == "HTTP/1.1 403 Forbidden"
            assert await proxy_get(squid.port, standin.url + "/v1/models") == "HTTP/1.1 200 OK"
            assert await websocket_through_proxy(squid.port, f"127.0.0.1:{ws_port}") == b"olleh"
    finally:
        await runner.cleanup()
    assert standin.requests[-1].headers.get("via", "").endswith("(squid/5.7)")


async def test_websocket_upgrade_stripped_when_not_allowed(tmp_path: Path) -> None:
    runner, ws_port = await ws_echo_app_runner()
    try:
        options = SquidOptions(guise="http_only", websocket_upgrade=False)
        async with Squid(options, log_dir=tmp_path) as squid:
            with pytest.raises(AssertionError):
                await websocket_through_proxy(squid.port, f"127.0.0.1:{ws_port}")
    finally:
        await runner.cleanup()
