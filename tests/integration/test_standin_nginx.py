"""The private nginx front: TLS terminated, API streamed unbuffered, WebSocket path upgraded."""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import pytest
import trustme
from aiohttp import WSMsgType, web

from tests.support.nginxproc import Nginx, NginxOptions
from tests.support.standin_llm import DEFAULT_MODELS, StandinLLM

WS_PATH = "/.well-known/llm-tunnel"


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def front_cert(ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path]:
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "front.crt", tmp_path / "front.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


@pytest.fixture
async def upstream(ca: trustme.CA) -> AsyncIterator[StandinLLM]:
    """The stand-in over TLS, with a WebSocket echo at WS_PATH (where the gateway's would be)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        return ws

    s = StandinLLM(extra_routes=[web.get(WS_PATH, echo)])
    await s.start(ssl_context=ctx)
    try:
        yield s
    finally:
        await s.stop()


async def test_sdk_and_websocket_through_nginx(
    upstream: StandinLLM, front_cert: tuple[Path, Path], ca_file: Path, tmp_path: Path
) -> None:
    options = NginxOptions(
        cert=front_cert[0], key=front_cert[1], upstream=upstream.url, upstream_ca=ca_file,
        websocket_path=WS_PATH,
    )  # fmt: skip
    client_ctx = ssl.create_default_context(cafile=str(ca_file))
    async with Nginx(options, log_dir=tmp_path) as nginx:
        http = openai.DefaultAsyncHttpxClient(verify=client_ctx)
        async with openai.AsyncOpenAI(
            base_url=nginx.url + "/v1", api_key="k", http_client=http
        ) as client:
            ids = [m.id async for m in client.models.list()]
            stream = await client.chat.completions.create(
                model=DEFAULT_MODELS[0],
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                extra_body={"standin": {"chunks": 4, "pace_ms": 150}},
            )
            arrivals = [
                time.monotonic() async for c in stream if c.choices and c.choices[0].delta.content
            ]
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(nginx.url + WS_PATH, ssl=client_ctx) as ws,
        ):
            await ws.send_bytes(b"abc")
            echoed = await ws.receive_bytes(timeout=10)
    assert ids == list(DEFAULT_MODELS)
    assert len(arrivals) == 4
    assert arrivals[-1] - arrivals[0] >= 0.3  # unbuffered: paced like the upstream
    assert echoed == b"cba"
    assert upstream.requests[0].headers["x-forwarded-for"] == "127.0.0.1"
