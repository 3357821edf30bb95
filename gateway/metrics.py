"""Prometheus metrics, on their own registry, observed once per request (never per chunk)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tunnel.api import TunnelPool

LATENCY_BUCKETS_S: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
)


LABEL_CACHE_SIZE: Final = 10_000  # bounds the lookup caches, not the metrics themselves


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What one finished request contributes to the metrics and the access log."""

    request_id: str
    route: str
    model: str
    status: int
    identity: str
    remote: str
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    ttfb_s: float | None
    #: for a request to a path the gateway does not serve (``route`` is then ``UNMATCHED``, a
    #: bounded label): the path and the client's User-Agent, for the access log only
    path: str | None = None
    user_agent: str | None = None


#: the ``route`` label of requests to paths the gateway does not serve (any number of paths)
UNMATCHED = "unmatched"


def refusal_record(
    request_id: str,
    route: str,
    status: int,
    remote: str,
    latency_s: float,
    *,
    identity: str = "-",
    model: str = "-",
    path: str | None = None,
    user_agent: str | None = None,
) -> RequestRecord:
    """A request answered without reaching an upstream (refused, or a path not served): no
    tokens, no first byte."""
    return RequestRecord(
        request_id=request_id,
        route=route,
        model=model,
        status=status,
        identity=identity,
        remote=remote,
        stream=False,
        prompt_tokens=0,
        completion_tokens=0,
        latency_s=latency_s,
        ttfb_s=None,
        path=path,
        user_agent=user_agent,
    )


class TunnelCollector(Collector):
    """Read from the pool at scrape time: the stall watchdog's count, and each live tunnel's
    connection windows (labelled by tunnel, so only the tunnels up now appear)."""

    def __init__(self, pool: TunnelPool) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Metric]:
        status = self._pool.status()
        yield CounterMetricFamily(
            "gateway_tunnel_stalls",
            "Tunnels closed because their HTTP/2 connection window stalled",
            value=status.stalls_total,
        )
        windows = GaugeMetricFamily(
            "gateway_tunnel_window_bytes",
            "HTTP/2 connection windows of each live tunnel, seen from the gateway: inbound "
            "(the connector may still send), held (received, not given back), outbound",
            labels=["tunnel", "window"],
        )
        streams = GaugeMetricFamily(
            "gateway_tunnel_streams", "Open HTTP/2 streams of each live tunnel", labels=["tunnel"]
        )
        for t in status.tunnels:
            windows.add_metric([t.tunnel_id, "inbound"], t.inbound_window)
            windows.add_metric([t.tunnel_id, "held"], t.inbound_held)
            windows.add_metric([t.tunnel_id, "outbound"], t.outbound_window)
            streams.add_metric([t.tunnel_id], t.active_streams)
        yield windows
        yield streams


class GatewayMetrics:
    """The gateway's metrics; :meth:`render` is what ``/metrics`` answers."""

    def __init__(self, pool: TunnelPool | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gateway_requests", "API requests", ["route", "model", "status"], registry=r
        )
        self.prompt_tokens = Counter(
            "gateway_prompt_tokens", "Prompt tokens reported by upstreams", ["identity"], registry=r
        )
        self.completion_tokens = Counter(
            "gateway_completion_tokens", "Completion tokens reported", ["identity"], registry=r
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds",
            "Time from request to the end of the answer",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.ttfb = Histogram(
            "gateway_time_to_first_byte_seconds",
            "Time from request to the first byte of the upstream's answer",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.active_streams = Gauge("gateway_active_streams", "Open SSE streams", registry=r)
        self.tunnels_up = Gauge("gateway_tunnels_up", "Tunnels not draining", registry=r)
        # the labelled children, looked up once (``labels()`` costs a lock and a tuple per call)
        self._routes: dict[str, tuple[Histogram, Histogram]] = {}
        self._requests: dict[tuple[str, str, int], Counter] = {}
        self._identities: dict[str, tuple[Counter, Counter]] = {}
        if pool is not None:
            self.watch_pool(pool)

    def watch_pool(self, pool: TunnelPool) -> None:
        """``gateway_tunnels_up``, the stall count and the windows are read from the pool at
        scrape time."""
        self.tunnels_up.set_function(
            lambda: float(
                sum(1 for t in pool.status().tunnels if not t.draining and t.stalled is None)
            )
        )
        self.registry.register(TunnelCollector(pool))

    def observe(self, record: RequestRecord) -> None:
        route = self._routes.get(record.route)
        if route is None:
            route = self._routes[record.route] = (
                self.latency.labels(record.route),
                self.ttfb.labels(record.route),
            )
        key = (record.route, record.model, record.status)
        counter = self._requests.get(key)
        if counter is None:
            counter = self.requests.labels(record.route, record.model, str(record.status))
            if len(self._requests) < LABEL_CACHE_SIZE:
                self._requests[key] = counter
        counter.inc()
        if record.prompt_tokens or record.completion_tokens:
            prompt, completion = self._identities.get(record.identity) or self._identity(
                record.identity
            )
            if record.prompt_tokens:
                prompt.inc(record.prompt_tokens)
            if record.completion_tokens:
                completion.inc(record.completion_tokens)
        route[0].observe(record.latency_s)
        if record.ttfb_s is not None:
            route[1].observe(record.ttfb_s)

    def _identity(self, identity: str) -> tuple[Counter, Counter]:
        pair = (self.prompt_tokens.labels(identity), self.completion_tokens.labels(identity))
        if len(self._identities) < LABEL_CACHE_SIZE:
            self._identities[identity] = pair
        return pair

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
