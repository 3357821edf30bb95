"""``transport = "auto"`` moves a live tunnel to a better carrier when one becomes available.

A real private squid first allows plain HTTP only (no ``CONNECT``): ``auto`` ends up on
``websocket`` via plain HTTP. Then squid is reconfigured (``squid -k reconfigure``, as an
administrator would) to allow ``CONNECT`` to the tunnel port: within ``auto_retry_s`` the
connector finds ``tls`` working, dials it, and lets the websocket tunnel go, while a request
that was streaming on the old tunnel finishes there.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

from tests.integration.test_tunnel_support import make_rig, read_body, wait_until
from tests.integration.test_websocket_support import ws_front
from tests.support.squid import SQUID, Squid, SquidOptions, render_conf
from tunnel.api import PoolStatus

STILL_REFUSED = "tls: still refused — the proxy answered 'HTTP/1.1 403 Forbidden'"
SLOW_CHAT = {
    "model": "m",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
    "standin": {"chunks": 50, "pace_ms": 100},  # five seconds: still streaming during the move
}


def allow_connect(squid: Squid, port: int) -> None:
    """Rewrite the running squid's config to allow CONNECT to ``port``, then reconfigure it."""
    options = SquidOptions(guise="default", ssl_ports=(port,))
    conf = squid.work / "squid.conf"
    conf.write_text(render_conf(options, squid.port, squid.work, squid.run_as))
    subprocess.run([SQUID, "-k", "reconfigure", "-f", str(conf)], check=True, timeout=10)


def carriers(status: PoolStatus) -> list[tuple[str, bool]]:
    """(carrier, draining) of every tunnel the gateway holds."""
    return [(t.carrier, t.draining) for t in status.tunnels]


async def test_auto_moves_from_websocket_to_tls_when_connect_opens(tmp_path: Path) -> None:
    async with (
        make_rig(tmp_path) as rig,
        ws_front(rig.listener) as front,
        Squid(options=SquidOptions(guise="http_only"), log_dir=tmp_path) as squid,
    ):
        gateway = {
            "transport": "auto",
            "proxy": squid.url,
            "websocket_url": front.url(),
            "auto_retry_s": 0.5,
        }
        proc = rig.start_connector(rig.connector_toml(gateway=gateway))
        await rig.wait_tunnels(1, timeout=30.0)
        await proc.wait_for_log("websocket via plain HTTP: works")
        assert carriers(rig.listener.pool.status()) == [("websocket", False)]
        await proc.wait_for_log(re.escape(STILL_REFUSED))  # probed, and stays put

        resp = await rig.listener.pool.request(
            "office-llm",
            "POST",
            "/v1/chat/completions",
            [("content-type", "application/json")],
            json.dumps(SLOW_CHAT).encode(),
        )
        assert resp.status == 200
        in_flight = asyncio.create_task(read_body(resp))

        await asyncio.to_thread(allow_connect, squid, rig.listener.port)
        await proc.wait_for_log("tls works again; the tunnel will move to it", timeout=20.0)
        await proc.wait_for_log("tunnel: tls is available; moving the tunnel to it")

        def moved_while_streaming() -> bool:
            now = sorted(carriers(rig.listener.pool.status()))
            return now == [("tls", False), ("websocket", True)]

        def on_tls_only() -> bool:
            return carriers(rig.listener.pool.status()) == [("tls", False)]

        await wait_until(moved_while_streaming, 20.0, "tls up, websocket draining")
        assert not in_flight.done()
        body = await asyncio.wait_for(in_flight, 20.0)
        assert body.count(b"data: ") == 1 + 50 + 1 + 1  # role, 50 pieces, finish, [DONE]
        assert body.rstrip().endswith(b"data: [DONE]")
        await wait_until(on_tls_only, 10.0, "the tunnel on tls alone")
        assert not proc.log_has("lost")  # moved, never dropped

        status, answer = await rig.chat({"model": "m", "messages": []})
        assert status == 200, answer
        assert "CONNECT 127.0.0.1:" in squid.access_log()
