"""The tunnel figures on ``/metrics``: the stall count and each live tunnel's windows."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.metrics import GatewayMetrics
from tunnel.api import PoolStatus, TunnelInfo


def info(tunnel_id: str, stalled: str | None = None) -> TunnelInfo:
    return TunnelInfo(
        connector="office-1",
        tunnel_id=tunnel_id,
        carrier="tls",
        remote="127.0.0.1:1",
        upstreams=("office-llm",),
        active_streams=0,
        draining=False,
        connected_s=1.0,
        stalled=stalled,
        inbound_window=16_000_000,
        inbound_held=123,
        outbound_window=7,
    )


@dataclass
class StubPool:
    status_now: PoolStatus = field(default_factory=PoolStatus)

    def status(self) -> PoolStatus:
        return self.status_now


def test_stalls_and_windows_are_read_from_the_pool_at_scrape_time() -> None:
    pool = StubPool()
    metrics = GatewayMetrics(pool)  # type: ignore[arg-type]
    text = metrics.render()[0].decode()
    assert "gateway_tunnel_stalls_total 0.0" in text
    assert "gateway_tunnels_up 0.0" in text
    pool.status_now = PoolStatus((info("office-1#1"), info("office-1#2", "outbound: ...")), 3)
    text = metrics.render()[0].decode()
    assert "gateway_tunnel_stalls_total 3.0" in text
    assert 'gateway_tunnel_window_bytes{tunnel="office-1#1",window="held"} 123.0' in text
    assert 'gateway_tunnel_window_bytes{tunnel="office-1#2",window="outbound"} 7.0' in text
    assert "gateway_tunnels_up 1.0" in text  # the stalled one is not up


def test_a_stalled_tunnel_does_not_make_the_pool_ready() -> None:
    assert not PoolStatus((info("a#1", "inbound: ..."),)).ready
    assert PoolStatus((info("a#1", "inbound: ..."), info("a#2"))).ready
