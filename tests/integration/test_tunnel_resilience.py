"""Tunnels dying, frozen, restarted and stopped: the pool and the connector recover."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path

from tests.integration.test_tunnel_support import (
    PING_TIMEOUT_S,
    make_rig,
    read_body,
    wait_until,
)
from tests.support.procs import free_port
from tunnel.errors import NoTunnelError, StreamResetError
from tunnel.listener import Listener

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def connectors_of(listener: Listener) -> set[str]:
    return {t.connector for t in listener.pool.status().tunnels}


async def test_kill_9_one_of_two_connectors_moves_traffic_to_the_other(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig:
        one = rig.start_connector(rig.connector_toml("office-1"), "c1")
        rig.start_connector(rig.connector_toml("office-2"), "c2")
        await rig.wait_tunnels(2)
        body = {**CHAT, "stream": True, "standin": {"chunks": 30, "pace_ms": 50}}
        streams = [
            await rig.listener.pool.request(
                "office-llm", "POST", "/v1/chat/completions", [], json.dumps(body).encode()
            )
            for _ in range(4)
        ]
        killed_at = time.monotonic()
        await one.akill()
        await wait_until(
            lambda: connectors_of(rig.listener) == {"office-2"}, PING_TIMEOUT_S, "c1 gone"
        )
        results = await asyncio.gather(*(read_body(r) for r in streams), return_exceptions=True)
        failed = [r for r in results if isinstance(r, StreamResetError)]
        assert all("tunnel closed" in str(exc) for exc in failed), results
        assert len(failed) == 2  # the two on office-1 failed at once, the others finished
        assert time.monotonic() - killed_at < 4.0
        for _ in range(10):
            status, _ = await rig.chat(CHAT)
            assert status == 200
        assert connectors_of(rig.listener) == {"office-2"}


async def test_a_frozen_connector_is_dropped_after_ping_timeout(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig:
        proc = rig.start_connector(rig.connector_toml())
        await rig.wait_tunnels(1)
        proc.send_signal(signal.SIGSTOP)
        try:
            stopped_at = time.monotonic()
            await wait_until(lambda: rig.tunnels() == 0, PING_TIMEOUT_S + 1.5, "tunnel dropped")
            assert time.monotonic() - stopped_at >= PING_TIMEOUT_S * 0.5
        finally:
            proc.send_signal(signal.SIGCONT)
        with contextlib.suppress(NoTunnelError):
            await rig.chat(CHAT)


async def test_listener_restart_connector_is_back_within_3s(tmp_path: Path) -> None:
    port = free_port()
    async with make_rig(tmp_path, listen=f"127.0.0.1:{port}") as rig:
        defaults = {"reconnect_base_s": 0.5, "reconnect_max_s": 30}  # the shipped schedule
        proc = rig.start_connector(rig.connector_toml(gateway=defaults))
        await rig.wait_tunnels(1)
        await rig.listener.aclose(drain_timeout_s=1.0)
        restarted = Listener(rig.listener.cfg)
        await restarted.start()
        restarted_at = time.monotonic()
        rig.listener = restarted
        await rig.wait_tunnels(1, timeout=3.0)
        assert time.monotonic() - restarted_at < 3.0
        status, _ = await rig.chat(CHAT)
        assert status == 200
        assert proc.log_has("tunnel lost: ")


async def test_sigterm_drains_in_flight_streams_and_exits_0(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig:
        proc = rig.start_connector(rig.connector_toml())
        await rig.wait_tunnels(1)
        body = {**CHAT, "stream": True, "standin": {"chunks": 10, "pace_ms": 100}}
        resp = await rig.listener.pool.request(
            "office-llm", "POST", "/v1/chat/completions", [], json.dumps(body).encode()
        )
        proc.send_signal(signal.SIGTERM)
        await wait_until(lambda: rig.tunnels() == 0, 2.0, "tunnel draining")
        assert rig.listener.pool.status().tunnels[0].draining
        text = await read_body(resp)  # the in-flight stream finishes
        assert text.rstrip().endswith(b"data: [DONE]")
        assert await proc.await_exit(5.0) == 0
        assert proc.log_has("stopping: draining 1 tunnel")


async def test_listener_aclose_lets_in_flight_streams_finish(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig:
        rig.start_connector(rig.connector_toml())
        await rig.wait_tunnels(1)
        body = {**CHAT, "stream": True, "standin": {"chunks": 5, "pace_ms": 100}}
        resp = await rig.listener.pool.request(
            "office-llm", "POST", "/v1/chat/completions", [], json.dumps(body).encode()
        )
        reader = asyncio.create_task(read_body(resp))
        await rig.listener.aclose(drain_timeout_s=5.0)
        assert (await reader).rstrip().endswith(b"data: [DONE]")
