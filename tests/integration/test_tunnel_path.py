"""The full path: listener (in-process) -> real `connector run` process -> stand-in LLM."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_tunnel_support import Rig, make_rig, read_body, wait_until
from tests.support.squid import Squid, SquidOptions
from tests.support.standin_llm import bulk_sha256
from tunnel.headers import request_head

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with make_rig(tmp_path) as rig:
        rig.start_connector(rig.connector_toml())
        await rig.wait_tunnels(1)
        yield rig


async def test_chat_direct_with_the_upstream_key_not_the_clients(rig: Rig) -> None:
    status, body = await rig.chat(CHAT, headers=[("authorization", "Bearer client-gateway-key")])
    assert status == 200, body
    assert json.loads(body)["object"] == "chat.completion"
    headers = rig.standin.requests[-1].headers
    assert headers["authorization"] == "Bearer sk-upstream-secret"
    assert "client-gateway-key" not in json.dumps(headers)
    resp = await rig.listener.pool.request("office-llm", "GET", "/v1/models", [], b"")
    assert resp.status == 200
    assert b'"data"' in await read_body(resp)
    info = rig.listener.pool.status().tunnels[0]
    assert (info.connector, info.carrier, info.upstreams) == ("office-1", "tls", ("office-llm",))


async def test_chat_through_a_real_squid_with_proxy_auth(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig:
        options = SquidOptions(ssl_ports=(rig.listener.port,), auth=("corp", "s3cret"))
        async with Squid(options=options, log_dir=tmp_path) as squid:
            proc = rig.start_connector(rig.connector_toml(gateway={"proxy": squid.url_with_auth}))
            await rig.wait_tunnels(1)
            status, body = await rig.chat(CHAT)
            assert status == 200, body
            await proc.wait_for_log(rf"up to 127\.0\.0\.1:\d+ via proxy 127\.0\.0\.1:{squid.port}")
            await proc.akill()  # squid logs a CONNECT when it ends
            connect = f"CONNECT 127.0.0.1:{rig.listener.port}"
            await wait_until(lambda: connect in squid.access_log(), 5.0, "squid's access log")


async def test_a_squid_that_refuses_the_port_is_quoted_in_the_log(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig, Squid(log_dir=tmp_path) as squid:  # CONNECT to 443 only
        proc = rig.start_connector(rig.connector_toml(gateway={"proxy": squid.url}))
        await proc.wait_for_log(r"cannot connect: the proxy refused: HTTP/1\.1 403 Forbidden")
        assert rig.tunnels() == 0


async def test_sse_chunks_arrive_at_the_upstreams_pace(rig: Rig) -> None:
    # The stand-in runs in this process: its timestamps share our monotonic clock.
    standin = {"chunks": 6, "pace_ms": 120, "timestamps": True}
    body = {**CHAT, "stream": True, "standin": standin}
    resp = await rig.listener.pool.request(
        "office-llm", "POST", "/v1/chat/completions", [], json.dumps(body).encode()
    )
    assert resp.status == 200
    delays, arrivals = [], []
    async for chunk in resp.body():
        now = time.monotonic_ns()
        for sent in re.findall(rb"w\d+@t=(\d+)", chunk):
            delays.append((now - int(sent)) / 1e9)
            arrivals.append(now / 1e9)
    await resp.aclose()
    assert len(delays) == 6
    assert max(delays) < 0.06, delays  # each chunk is relayed at once, never held back
    assert arrivals[-1] - arrivals[0] > 0.5  # spread over the upstream's 5 x 120 ms


async def test_100_concurrent_streams_over_one_tunnel(rig: Rig) -> None:
    async def one(i: int) -> str:
        body = {**CHAT, "standin": {"reply": f"answer number {i}"}}
        status, raw = await rig.chat(body)
        assert status == 200
        content: str = json.loads(raw)["choices"][0]["message"]["content"]
        return content

    answers = await asyncio.gather(*(one(i) for i in range(100)))
    assert all(f"answer number {i}" in a for i, a in enumerate(answers)), answers[:3]
    assert len(rig.listener.pool.status().tunnels) == 1


async def test_50_mb_each_way_byte_exact(rig: Rig) -> None:
    size = 50 * 1024 * 1024
    block = hashlib.sha256(b"x").digest() * 2048  # 64 KiB

    async def upload() -> AsyncIterator[bytes]:
        for _ in range(size // len(block)):
            yield block

    expected = hashlib.sha256(block * (size // len(block))).hexdigest()
    resp = await rig.listener.pool.request("office-llm", "POST", "/v1/bulk/upload", [], upload())
    assert resp.status == 200
    assert json.loads(await read_body(resp)) == {"bytes": size, "sha256": expected}

    resp = await rig.listener.pool.request(
        "office-llm", "GET", f"/v1/bulk/download?bytes={size}", [], b""
    )
    digest, got = hashlib.sha256(), 0
    async for chunk in resp.body():
        digest.update(chunk)
        got += len(chunk)
    await resp.aclose()
    assert (got, digest.hexdigest()) == (size, bulk_sha256(size))


async def test_paths_outside_v1_and_unknown_upstreams_get_403(rig: Rig) -> None:
    for upstream, path in (("office-llm", "/admin"), ("office-llm", "/v1/../admin"),
                           ("elsewhere", "/v1/models")):  # fmt: skip
        session = rig.listener.pool.pick("office-llm").session
        stream = session.open_stream(request_head("GET", upstream, path), end_stream=True)
        head = dict(await stream.response_head())
        body = b""
        while chunk := await stream.read():
            body += chunk
        assert head[":status"] == "403", (path, body)
        assert json.loads(body)["error"]["code"] == "not_allowed"
    assert not rig.standin.requests
    assert "outside /v1/" in rig.connectors[0].log_text()
    assert "'elsewhere' is not configured" in rig.connectors[0].log_text()


ATTACKS = (
    ("POST", "/v1/%25252e%25252e/admin", "403"),  # decoded three times
    ("POST", "/v1/..;/admin", "403"),  # a path parameter some servers read as ".."
    ("GET", "/v1//models", "403"),
    ("POST", "/v1/a%00b", "403"),
    ("DELETE", "/v1/models", "405"),
    ("PUT", "/v1/chat/completions", "405"),
)


async def test_encoded_escapes_and_other_methods_never_reach_the_upstream(rig: Rig) -> None:
    session = rig.listener.pool.pick("office-llm").session
    for method, path, status in ATTACKS:
        stream = session.open_stream(request_head(method, "office-llm", path), end_stream=True)
        head = dict(await stream.response_head())
        body = b""
        while chunk := await stream.read():
            body += chunk
        assert head[":status"] == status, (method, path, body)
        assert json.loads(body)["error"]["code"] == "not_allowed"
    assert not rig.standin.requests
    log = rig.connectors[0].log_text()
    assert "contains a dot segment" in log
    assert "method 'DELETE' is not allowed (only GET, POST)" in log


async def test_client_going_away_closes_the_upstream_request(rig: Rig) -> None:
    body = {**CHAT, "stream": True, "standin": {"chunks": 200, "pace_ms": 50}}
    resp = await rig.listener.pool.request(
        "office-llm", "POST", "/v1/chat/completions", [], json.dumps(body).encode()
    )
    seen = 0
    async for _chunk in resp.body():
        seen += 1
        if seen == 3:
            break
    gone_at = time.monotonic()
    await resp.aclose()
    record = await rig.standin.wait_for_request(lambda r: r.disconnected, timeout=1.0)
    assert record.chunks_sent < 200
    assert time.monotonic() - gone_at < 1.0


async def test_upstream_unreachable_is_a_502_in_openai_shape(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig:
        toml = rig.connector_toml(upstream={"url": "http://127.0.0.1:9", "connect_timeout_s": 2})
        rig.start_connector(toml)
        await rig.wait_tunnels(1)
        status, body = await rig.chat(CHAT)
        assert status == 502
        error = json.loads(body)["error"]
        # the gateway's own 502 shape (docs/api.md "Errors"), whichever side failed
        assert error["type"] == "server_error"
        assert error["code"] == "upstream_error"
        assert error["message"].startswith("upstream office-llm unreachable: ")
