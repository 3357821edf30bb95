"""The websocket carrier end to end: a real `connector run` -> WebSocket (HTTP / HTTPS, direct)
-> Hypercorn/Quart endpoint -> inner mutual TLS -> the same listener and HTTP/2 tunnel."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

from tests.integration.test_tunnel_support import make_rig, read_body
from tests.integration.test_websocket_support import ws_front
from tests.support.standin_llm import bulk_sha256

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def test_chat_over_websocket_plain_http(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig, ws_front(rig.listener) as front:
        toml = rig.connector_toml(gateway={"transport": "websocket", "websocket_url": front.url()})
        proc = rig.start_connector(toml)
        await rig.wait_tunnels(1)
        status, body = await rig.chat(CHAT)
        assert status == 200, body
        assert json.loads(body)["object"] == "chat.completion"
        info = rig.listener.pool.status().tunnels[0]
        assert (info.connector, info.carrier) == ("office-1", "websocket")
        await proc.wait_for_log(r"websocket http://127\.0\.0\.1:\d+/\.well-known/llm-tunnel")
        assert ", inner TLSv1.3" in proc.log_text()


async def test_chat_and_stream_over_websocket_https(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig:
        pki = rig.pki
        async with ws_front(rig.listener, pki.server_cert, pki.server_key) as front:
            gateway = {
                "transport": "websocket",
                "websocket_url": front.url("localhost"),
                "proxy_ca": str(pki.ca_cert),  # the outer HTTPS: system store + this
            }
            rig.start_connector(rig.connector_toml(gateway=gateway))
            await rig.wait_tunnels(1)
            body = {**CHAT, "stream": True, "standin": {"chunks": 6, "pace_ms": 120}}
            resp = await rig.listener.pool.request(
                "office-llm", "POST", "/v1/chat/completions", [], json.dumps(body).encode()
            )
            assert resp.status == 200
            times: list[float] = []
            async for chunk in resp.body():
                if b'"content"' in chunk:
                    times.append(time.monotonic())
            await resp.aclose()
            # the role chunk and the first word leave together; then one word per pace
            gaps = [b - a for a, b in itertools.pairwise(times)][1:]
            assert len(gaps) >= 4, times
            assert all(0.07 < gap < 0.3 for gap in gaps), gaps


async def test_bulk_both_ways_byte_exact_over_websocket(tmp_path: Path) -> None:
    size = 20 * 1024 * 1024
    block = hashlib.sha256(b"y").digest() * 2048  # 64 KiB

    async def upload() -> AsyncIterator[bytes]:
        for _ in range(size // len(block)):
            yield block

    async with make_rig(tmp_path) as rig, ws_front(rig.listener) as front:
        toml = rig.connector_toml(gateway={"transport": "websocket", "websocket_url": front.url()})
        rig.start_connector(toml)
        await rig.wait_tunnels(1)
        expected = hashlib.sha256(block * (size // len(block))).hexdigest()
        resp = await rig.listener.pool.request(
            "office-llm", "POST", "/v1/bulk/upload", [], upload()
        )
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
