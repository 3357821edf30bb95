"""The facts the status page and the metrics read from the pool, with real connectors: when each
tunnel came up, its PING round trip, its client certificate's expiry, and why tunnels ended."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from cryptography import x509

from pki import CA
from tests.integration.test_tunnel_support import (
    PING_INTERVAL_S,
    PING_TIMEOUT_S,
    Rig,
    make_rig,
    wait_until,
)
from tunnel.api import Disconnect


def ends(rig: Rig) -> tuple[Disconnect, ...]:
    return rig.listener.pool.status().recent_disconnects


async def wait_end(rig: Rig, count: int, timeout: float = PING_TIMEOUT_S + 3.0) -> Disconnect:
    """The newest end once there are ``count`` of them."""
    await wait_until(lambda: len(ends(rig)) >= count, timeout, f"{count} disconnect(s)")
    return ends(rig)[0]


async def test_a_live_tunnel_reports_when_it_came_up_its_rtt_and_its_certificate(
    tmp_path: Path,
) -> None:
    async with make_rig(tmp_path) as rig:
        CA.load(rig.pki.dir).issue_client("office-2", days=10, force=True)
        before = time.time()
        rig.start_connector(rig.connector_toml("office-2"))
        await rig.wait_tunnels(1)
        await wait_until(
            lambda: rig.listener.pool.status().tunnels[0].rtt_s is not None,
            PING_INTERVAL_S * 4 + 1.0,
            "a PING answered",
        )
        info = rig.listener.pool.status().tunnels[0]
        assert before <= info.connected_at <= time.time()
        assert info.rtt_s is not None
        assert 0 < info.rtt_s < PING_TIMEOUT_S
        cert = x509.load_pem_x509_certificate(rig.pki.cert("office-2").read_bytes())
        assert info.client_cert_not_after == cert.not_valid_after_utc.timestamp()
        assert (info.client_cert_not_after - time.time()) / 86_400 < 10.01
        assert ends(rig) == ()


async def test_a_killed_connector_is_a_peer_closed_disconnect(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig:
        proc = rig.start_connector(rig.connector_toml())
        await rig.wait_tunnels(1)
        tunnel_id = rig.listener.pool.status().tunnels[0].tunnel_id
        killed = time.time()
        await proc.akill()
        end = await wait_end(rig, 1)
        assert end.reason == "peer_closed", end
        assert (end.connector, end.tunnel_id, end.carrier) == ("office-1", tunnel_id, "tls")
        assert end.remote.startswith("127.0.0.1:")
        assert killed <= end.at <= time.time()
        assert "closed the connection" in end.detail or "reset" in end.detail
        # restarted, it is up again and the end stays on record
        rig.start_connector(rig.connector_toml())
        await rig.wait_tunnels(1)
        assert [e.tunnel_id for e in ends(rig)] == [tunnel_id]
        counts = dict(rig.listener.pool.status().disconnects_total)
        assert counts["peer_closed"] == 1
        assert sum(counts.values()) == 1


async def test_a_frozen_connector_is_a_ping_timeout(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig:
        proc = rig.start_connector(rig.connector_toml())
        await rig.wait_tunnels(1)
        proc.send_signal(signal.SIGSTOP)
        try:
            end = await wait_end(rig, 1, PING_INTERVAL_S + PING_TIMEOUT_S + 3.0)
        finally:
            proc.send_signal(signal.SIGCONT)
        assert end.reason == "ping_timeout", end
        assert end.detail == f"no PING answer within {PING_TIMEOUT_S:g}s"


async def test_a_stopped_connector_is_a_goaway(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig:
        proc = rig.start_connector(rig.connector_toml())
        await rig.wait_tunnels(1)
        proc.send_signal(signal.SIGTERM)
        end = await wait_end(rig, 1)
        assert end.reason == "goaway", end
        assert await proc.await_exit(5.0) == 0


async def test_a_revoked_connector_and_the_gateway_stopping(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig:
        rig.start_connector(rig.connector_toml("office-1"), "c1")
        rig.start_connector(rig.connector_toml("office-2"), "c2")
        await rig.wait_tunnels(2)
        CA.load(rig.pki.dir).revoke("office-2")
        end = await wait_end(rig, 1)
        assert (end.connector, end.reason, end.detail) == (
            "office-2",
            "revoked",
            "certificate revoked",
        )
        await rig.listener.aclose(drain_timeout_s=1.0)
        end = await wait_end(rig, 2)
        assert (end.connector, end.reason) == ("office-1", "shutdown")
