"""The whole path over the websocket carrier: the OpenAI SDK -> real `gateway serve` (its public
HTTPS port carries the WebSocket too) <- real `connector run` (auto, through an inspecting squid)
-> the stand-in LLM."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tests.integration.test_gateway_api import (
    MESSAGES,
    GatewayRig,
    create_key,
    gateway_rig,
    gateway_toml,
)
from tests.integration.test_tunnel_support import write_connector_toml
from tests.support.pki_fixtures import make_pki
from tests.support.procs import ManagedProcess, file_ready, our_command
from tests.support.squid import Squid, SquidOptions
from tests.support.standin_llm import StandinLLM

WS_PATH = "/.well-known/llm-tunnel"
INTERCEPTED = "tls: refused — the proxy intercepts TLS (certificate issued by 'Corp Proxy CA')"


def start_ws_connector(rig: GatewayRig, gateway: dict[str, object]) -> ManagedProcess:
    toml = write_connector_toml(
        rig.tmp / "connector-ws.toml",
        rig.pki,
        rig.ports["tunnel"],
        rig.standin.url,
        gateway=gateway,
    )
    proc = our_command("connector", "run", "-c", str(toml), work_dir=rig.tmp, name="connector-ws")
    proc.launch()
    rig.processes.append(proc)
    return proc


async def chat_and_stream(rig: GatewayRig) -> None:
    client = rig.client()
    reply = await client.chat.completions.create(model="qwen3-coder", messages=MESSAGES)
    assert reply.choices[0].message.content
    stream = await client.chat.completions.create(
        model="qwen3-coder",
        messages=MESSAGES,
        stream=True,
        extra_body={"standin": {"chunks": 6, "pace_ms": 120}},
    )
    times: list[float] = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            times.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(times)][1:]
    assert len(gaps) >= 4, times
    assert all(0.07 < gap < 0.3 for gap in gaps), gaps


async def test_sdk_through_an_inspecting_proxy_over_websocket(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path, connector=False) as rig:
        public = rig.ports["public"]
        options = SquidOptions(
            guise="bump", ssl_ports=(rig.ports["tunnel"], public), upstream_ca=rig.pki.ca_cert
        )
        async with Squid(options=options, log_dir=tmp_path) as squid:
            proc = start_ws_connector(
                rig,
                {
                    "transport": "auto",
                    "proxy": squid.url,
                    "websocket_url": f"https://localhost:{public}{WS_PATH}",
                    "proxy_ca": str(squid.proxy_ca_path),
                },
            )
            await rig.wait_ready(timeout=30.0)
            await proc.wait_for_log(re.escape(INTERCEPTED))
            await proc.wait_for_log("websocket via HTTPS: works")
            await chat_and_stream(rig)


@contextlib.asynccontextmanager
async def gateway_with_plain_ws_listener(tmp: Path) -> AsyncIterator[GatewayRig]:
    """`gateway serve` with ``[tunnel] websocket_http_listen`` on; no connector yet."""
    pki = make_pki(tmp / "pki")
    toml = gateway_toml(tmp, pki)
    text = toml.read_text().replace(
        "[tunnel]\n", '[tunnel]\nwebsocket_http_listen = "127.0.0.1:0"\n'
    )
    toml.write_text(text)
    key = create_key(toml, "alice")
    ready = tmp / "ready.json"
    standin = StandinLLM()
    await standin.start()
    gateway = our_command(
        "gateway", "serve", "-c", str(toml), "--ready-file", str(ready),
        work_dir=tmp, ready=file_ready(ready),
    )  # fmt: skip
    try:
        await gateway.astart()
        rig = GatewayRig(tmp, pki, standin, toml, gateway, json.loads(ready.read_text()), key)
        try:
            yield rig
        finally:
            for client in rig.clients:
                await client.close()
            for proc in reversed(rig.processes):
                await proc.astop()
    finally:
        await gateway.astop()
        await standin.stop()


async def test_sdk_through_an_http_only_proxy_over_the_plain_http_listener(
    tmp_path: Path,
) -> None:
    async with gateway_with_plain_ws_listener(tmp_path) as rig:
        plain = rig.ports["websocket_http"]
        async with httpx.AsyncClient() as http:  # that listener carries the tunnel and nothing else
            assert (await http.get(f"http://127.0.0.1:{plain}/v1/models")).status_code == 404
        auth = ("corp", "s3cret")
        async with Squid(SquidOptions(guise="http_only", auth=auth), log_dir=tmp_path) as squid:
            proc = start_ws_connector(
                rig,
                {
                    "transport": "auto",
                    "proxy": squid.url_with_auth,
                    "websocket_url": f"http://127.0.0.1:{plain}{WS_PATH}",
                },
            )
            await rig.wait_ready(timeout=30.0)
            await proc.wait_for_log("websocket via plain HTTP: works")
            await chat_and_stream(rig)
