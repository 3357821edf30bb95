"""A real nginx in front of the gateway's public port, terminating TLS and proxying the API and
the WebSocket path: the connector's `websocket` tunnel and the SDK both work through it (the outer
TLS ends at nginx; the inner mutual TLS still runs end to end, connector to gateway)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.integration.test_gateway_api import gateway_rig
from tests.integration.test_tunnel_support import wait_until
from tests.integration.test_websocket_gateway import WS_PATH, chat_and_stream, start_ws_connector
from tests.support.nginxproc import Nginx


async def test_websocket_tunnel_and_sdk_through_nginx(
    tmp_path: Path, nginx_factory: Callable[..., Nginx]
) -> None:
    async with gateway_rig(tmp_path, connector=False) as rig:
        pki = rig.pki
        nginx = nginx_factory(
            cert=pki.server_cert,
            key=pki.server_key,
            upstream=f"https://127.0.0.1:{rig.ports['public']}",
            upstream_ca=pki.ca_cert,
        )
        proc = start_ws_connector(
            rig,
            {
                "transport": "websocket",
                "websocket_url": f"https://localhost:{nginx.port}{WS_PATH}",
                "proxy_ca": str(pki.ca_cert),  # nginx's certificate; the inner TLS is separate
            },
        )
        await rig.wait_ready(timeout=30.0)
        await proc.wait_for_log(rf"websocket https://localhost:{nginx.port}/")
        rig.ports["public"] = nginx.port  # the SDK goes through nginx too
        await chat_and_stream(rig)
        assert "POST /v1/chat/completions" in nginx.access_log()
        await proc.astop()  # nginx logs the upgraded request when it ends
        upgraded = f'"GET {WS_PATH} HTTP/1.1" 101'
        await wait_until(lambda: upgraded in nginx.access_log(), 5.0, "nginx's log of the upgrade")
