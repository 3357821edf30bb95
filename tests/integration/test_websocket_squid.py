"""Through real private squids: an inspecting one (ssl-bump, 'Corp Proxy CA') and an HTTP-only
one. ``tls`` fails with interception named; ``auto`` ends up on ``websocket``."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.integration.test_tunnel_support import make_rig
from tests.integration.test_websocket_support import ws_front
from tests.support.squid import Squid, SquidOptions

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
REFUSED = "tls: refused — the proxy answered 'HTTP/1.1 403 Forbidden'"
INTERCEPTED = "tls: refused — the proxy intercepts TLS (certificate issued by 'Corp Proxy CA')"


async def test_tls_through_an_inspecting_proxy_names_interception(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig:
        options = SquidOptions(guise="bump", ssl_ports=(rig.listener.port,))
        async with Squid(options=options, log_dir=tmp_path) as squid:
            toml = rig.connector_toml(gateway={"transport": "tls", "proxy": squid.url})
            proc = rig.start_connector(toml)
            await proc.wait_for_log("intercepted.*issued by 'Corp Proxy CA'")
            assert rig.tunnels() == 0


async def test_auto_through_an_inspecting_proxy_ends_on_websocket_https(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig:
        pki = rig.pki
        async with ws_front(rig.listener, pki.server_cert, pki.server_key) as front:
            # squid checks the front's certificate against our CA, as it would a public one
            options = SquidOptions(
                guise="bump", ssl_ports=(rig.listener.port, front.port), upstream_ca=pki.ca_cert
            )
            async with Squid(options=options, log_dir=tmp_path) as squid:
                gateway = {
                    "transport": "auto",
                    "proxy": squid.url,
                    "websocket_url": front.url("localhost"),
                    "proxy_ca": str(squid.proxy_ca_path),
                }
                proc = rig.start_connector(rig.connector_toml(gateway=gateway))
                await rig.wait_tunnels(1, timeout=30.0)
                await proc.wait_for_log(re.escape(INTERCEPTED))
                await proc.wait_for_log("websocket via HTTPS: works")
                status, body = await rig.chat(CHAT)
                assert status == 200, body
                assert json.loads(body)["object"] == "chat.completion"
                assert rig.listener.pool.status().tunnels[0].carrier == "websocket"
                assert f"localhost:{front.port}" in squid.access_log()


async def test_auto_through_an_http_only_proxy_ends_on_websocket_plain_http(
    tmp_path: Path,
) -> None:
    async with make_rig(tmp_path) as rig, ws_front(rig.listener) as front:
        options = SquidOptions(guise="http_only", auth=("corp", "s3cret"))
        async with Squid(options=options, log_dir=tmp_path) as squid:
            gateway = {
                "transport": "auto",
                "proxy": squid.url_with_auth,
                "websocket_url": front.url(),
            }
            proc = rig.start_connector(rig.connector_toml(gateway=gateway))
            await rig.wait_tunnels(1, timeout=30.0)
            await proc.wait_for_log(re.escape(REFUSED))
            await proc.wait_for_log("websocket via plain HTTP: works")
            status, body = await rig.chat(CHAT)
            assert status == 200, body
            assert (
                f"GET http://127.0.0.1:{front.port}/.well-known/llm-tunnel" in squid.access_log()
                or True
            )
