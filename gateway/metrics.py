"""Prometheus metrics, on their own registry, observed once per request (never per chunk)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.certificates import CertificateFact
from tunnel.api import DISCONNECT_REASONS, PoolStatus, TunnelPool

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


#: output tokens per second of one streamed answer: from a CPU-bound small model to a fast GPU
TOKEN_RATE_BUCKETS: Final = (1, 2, 5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300, 500, 1000)


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


def output_tokens_per_second(record: RequestRecord) -> float | None:
    """How fast a streamed answer came once it started: the tokens after the first over the
    time after the first, ``(completion_tokens - 1) / (latency_s - ttfb_s)``; None for anything
    but a successful stream of two tokens or more."""
    if not record.stream or not 200 <= record.status < 300 or record.ttfb_s is None:
        return None
    generating_s = record.latency_s - record.ttfb_s
    if record.completion_tokens < 2 or generating_s <= 0:
        return None
    return (record.completion_tokens - 1) / generating_s


class TunnelCollector(Collector):
    """Read from the pool at scrape time: the stall watchdog's count, the ends by reason, each
    connector's PING round trip, the tunnels per upstream, and each live tunnel's connection
    windows (labelled by tunnel, so only the tunnels up now appear)."""

    def __init__(self, pool: TunnelPool, upstreams: Iterable[str] = ()) -> None:
        self._pool = pool
        self._upstreams = tuple(upstreams)

    def collect(self) -> Iterator[Metric]:
        status = self._pool.status()
        yield CounterMetricFamily(
            "gateway_tunnel_stalls",
            "Tunnels closed because their HTTP/2 connection window stalled",
            value=status.stalls_total,
        )
        disconnects = CounterMetricFamily(
            "gateway_tunnel_disconnects",
            "Tunnels ended since the gateway started, by reason (docs/operations.md)",
            labels=["reason"],
        )
        counts = dict(status.disconnects_total)
        for reason in DISCONNECT_REASONS:  # each one from the start: alerts see the 0 -> 1
            disconnects.add_metric([reason], counts.get(reason, 0))
        yield disconnects
        yield self._rtt(status)
        yield self._per_upstream(status)
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

    @staticmethod
    def _rtt(status: PoolStatus) -> GaugeMetricFamily:
        slowest: dict[str, float] = {}
        for t in status.tunnels:
            if t.rtt_s is not None:
                slowest[t.connector] = max(t.rtt_s, slowest.get(t.connector, 0.0))
        rtt = GaugeMetricFamily(
            "gateway_tunnel_rtt_seconds",
            "Round trip of the last answered PING, per connector (its slowest live tunnel)",
            labels=["connector"],
        )
        for connector, seconds in sorted(slowest.items()):
            rtt.add_metric([connector], seconds)
        return rtt

    def _per_upstream(self, status: PoolStatus) -> GaugeMetricFamily:
        counts = dict.fromkeys(self._upstreams, 0)
        for t in status.tunnels:
            if not t.draining and t.stalled is None:
                for upstream in t.upstreams:
                    counts[upstream] = counts.get(upstream, 0) + 1
        family = GaugeMetricFamily(
            "gateway_upstream_tunnels",
            "Tunnels up (not draining) serving each upstream; the models' upstreams always appear",
            labels=["upstream"],
        )
        for upstream, count in sorted(counts.items()):
            family.add_metric([upstream], count)
        return family


class CertificateCollector(Collector):
    """Seconds left, at scrape time, for each certificate and for the CRL's next update (the
    facts come from :func:`gateway.certificates.certificate_facts`, files cached by mtime).
    A connector's certificate is labelled ``role="connector"`` with its name as ``subject``."""

    def __init__(
        self, facts: Callable[[], Iterable[CertificateFact]], clock: Callable[[], float] = time.time
    ) -> None:
        self._facts = facts
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        certificates = GaugeMetricFamily(
            "gateway_certificate_remaining_seconds",
            "Seconds until each certificate expires (negative once expired)",
            labels=["role", "subject"],
        )
        crl = GaugeMetricFamily(
            "gateway_crl_next_update_remaining_seconds",
            "Seconds until the CRL's nextUpdate (negative once past: re-sign it with pki crl)",
        )
        for fact in self._facts():
            if fact.role == "crl":
                crl.add_metric([], fact.not_after - now)
            else:
                role = fact.role.partition(":")[0]
                certificates.add_metric([role, fact.subject], fact.not_after - now)
        yield certificates
        yield crl


class GatewayMetrics:
    """The gateway's metrics; :meth:`render` is what ``/metrics`` answers."""

    def __init__(self, pool: TunnelPool | None = None, *, upstreams: Iterable[str] = ()) -> None:
        """``upstreams``: the names the models route to (``gateway_upstream_tunnels`` shows
        each, with 0 when no tunnel serves it)."""
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
        self.ttft = Histogram(
            "gateway_time_to_first_token_seconds",
            "Successful streamed answers: time from request to the first token, per model",
            ["model"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.output_rate = Histogram(
            "gateway_output_tokens_per_second",
            "Successful streamed answers: completion tokens per second after the first token",
            ["model"],
            buckets=TOKEN_RATE_BUCKETS,
            registry=r,
        )
        self.active_streams = Gauge("gateway_active_streams", "Open SSE streams", registry=r)
        self.tunnels_up = Gauge("gateway_tunnels_up", "Tunnels not draining", registry=r)
        # the labelled children, looked up once (``labels()`` costs a lock and a tuple per call)
        self._routes: dict[str, tuple[Histogram, Histogram]] = {}
        self._requests: dict[tuple[str, str, int], Counter] = {}
        self._identities: dict[str, tuple[Counter, Counter]] = {}
        self._models: dict[str, tuple[Histogram, Histogram]] = {}
        if pool is not None:
            self.watch_pool(pool, upstreams)

    def watch_pool(self, pool: TunnelPool, upstreams: Iterable[str] = ()) -> None:
        """``gateway_tunnels_up`` and the other tunnel figures are read from the pool at
        scrape time."""
        self.tunnels_up.set_function(
            lambda: float(
                sum(1 for t in pool.status().tunnels if not t.draining and t.stalled is None)
            )
        )
        self.registry.register(TunnelCollector(pool, upstreams))

    def watch_certificates(self, facts: Callable[[], Iterable[CertificateFact]]) -> None:
        """The certificates' and the CRL's seconds left, from ``facts`` at scrape time."""
        self.registry.register(CertificateCollector(facts))

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
            if record.stream and 200 <= record.status < 300:
                ttft, output_rate = self._models.get(record.model) or self._model(record.model)
                ttft.observe(record.ttfb_s)
                rate = output_tokens_per_second(record)
                if rate is not None:
                    output_rate.observe(rate)

    def _model(self, model: str) -> tuple[Histogram, Histogram]:
        pair = (self.ttft.labels(model), self.output_rate.labels(model))
        if len(self._models) < LABEL_CACHE_SIZE:
            self._models[model] = pair
        return pair

    def _identity(self, identity: str) -> tuple[Counter, Counter]:
        pair = (self.prompt_tokens.labels(identity), self.completion_tokens.labels(identity))
        if len(self._identities) < LABEL_CACHE_SIZE:
            self._identities[identity] = pair
        return pair

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
