"""The figures on ``/metrics`` read at scrape time (tunnels, certificates) or observed per
request beyond the counters (time to first token and output speed per model)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from gateway.certificates import CertificateFact
from gateway.metrics import GatewayMetrics, RequestRecord, output_tokens_per_second
from tunnel.api import DISCONNECT_REASONS, PoolStatus, TunnelInfo

DAY = 86_400.0


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


def test_rtt_per_connector_disconnects_by_reason_and_tunnels_per_upstream() -> None:
    pool = StubPool()
    metrics = GatewayMetrics(pool, upstreams=["office-llm", "gpu-box"])  # type: ignore[arg-type]
    text = metrics.render()[0].decode()
    for reason in DISCONNECT_REASONS:  # every reason is there from the start, at 0
        assert f'gateway_tunnel_disconnects_total{{reason="{reason}"}} 0.0' in text
    assert 'gateway_upstream_tunnels{upstream="gpu-box"} 0.0' in text
    assert 'gateway_upstream_tunnels{upstream="office-llm"} 0.0' in text
    assert "gateway_tunnel_rtt_seconds{" not in text
    tunnels = (
        replace(info("office-1#1"), rtt_s=0.02),
        replace(info("office-1#2"), rtt_s=0.05),
        replace(info("office-2#3"), connector="office-2", rtt_s=None),
        replace(info("office-2#4"), connector="office-2", draining=True),
    )
    totals = tuple((r, 2 if r == "ping_timeout" else 0) for r in DISCONNECT_REASONS)
    pool.status_now = PoolStatus(tunnels, disconnects_total=totals)
    text = metrics.render()[0].decode()
    assert 'gateway_tunnel_rtt_seconds{connector="office-1"} 0.05' in text  # its slowest
    assert 'connector="office-2"' not in text  # no PING answered yet
    assert 'gateway_tunnel_disconnects_total{reason="ping_timeout"} 2.0' in text
    assert 'gateway_upstream_tunnels{upstream="office-llm"} 3.0' in text  # not the draining one
    assert 'gateway_upstream_tunnels{upstream="gpu-box"} 0.0' in text


def test_certificates_and_crl_seconds_left_at_scrape_time() -> None:
    now = time.time()
    facts = [
        CertificateFact("ca", "Home LLM CA", now + 3650 * DAY),
        CertificateFact("server", "gateway", now + 397 * DAY),
        CertificateFact("crl", "Home LLM CA", now + 6 * DAY),
        CertificateFact("connector:office-1", "office-1", now - DAY),
    ]
    metrics = GatewayMetrics()
    metrics.watch_certificates(lambda: facts)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in metrics.registry.collect()
        for s in family.samples
    }
    left = "gateway_certificate_remaining_seconds"
    assert samples[left, (("role", "ca"), ("subject", "Home LLM CA"))] == pytest.approx(
        3650 * DAY, abs=60
    )
    assert samples[left, (("role", "connector"), ("subject", "office-1"))] == pytest.approx(
        -DAY, abs=60
    )
    assert samples["gateway_crl_next_update_remaining_seconds", ()] == pytest.approx(
        6 * DAY, abs=60
    )
    assert len([k for k in samples if k[0] == left]) == 3


def record(**changes: Any) -> RequestRecord:
    base = RequestRecord(
        request_id="req_1",
        route="/v1/chat/completions",
        model="qwen3-coder",
        status=200,
        identity="alice",
        remote="127.0.0.1",
        stream=True,
        prompt_tokens=10,
        completion_tokens=41,
        latency_s=2.5,
        ttfb_s=0.5,
    )
    return replace(base, **changes)


def test_output_tokens_per_second_is_the_speed_after_the_first_token() -> None:
    assert output_tokens_per_second(record()) == pytest.approx(20.0)  # 40 tokens in 2 s
    assert output_tokens_per_second(record(stream=False)) is None
    assert output_tokens_per_second(record(status=499)) is None
    assert output_tokens_per_second(record(ttfb_s=None)) is None
    assert output_tokens_per_second(record(completion_tokens=1)) is None
    assert output_tokens_per_second(record(latency_s=0.5)) is None


def test_time_to_first_token_and_output_rate_per_model_for_successful_streams() -> None:
    metrics = GatewayMetrics()
    metrics.observe(record())
    metrics.observe(record(model="embed", stream=False))
    metrics.observe(record(status=502))
    metrics.observe(record(completion_tokens=1, ttfb_s=0.25))  # a TTFT, no rate
    text = metrics.render()[0].decode()
    assert 'gateway_output_tokens_per_second_count{model="qwen3-coder"} 1.0' in text
    assert 'gateway_output_tokens_per_second_sum{model="qwen3-coder"} 20.0' in text
    assert 'gateway_time_to_first_token_seconds_count{model="qwen3-coder"} 2.0' in text
    assert 'gateway_time_to_first_token_seconds_sum{model="qwen3-coder"} 0.75' in text
    assert 'model="embed"' not in text.split("gateway_time_to_first_token")[1]
