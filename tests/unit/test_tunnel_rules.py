"""Sans-IO rules of the tunnel: headers, allow-list, backoff, proxy selection and CONNECT, and
when ``auto`` moves a tunnel to a better carrier."""

from __future__ import annotations

import asyncio
import base64
import itertools
from pathlib import Path

import pytest

from tunnel.backoff import Backoff
from tunnel.carrier.proxy import (
    ProxySpec,
    bypasses_proxy,
    connect_request,
    parse_connect_response,
    parse_proxy_url,
    select_proxy,
)
from tunnel.config import ConnectorConfig
from tunnel.dialers import auto as auto_ladder
from tunnel.dialers.auto import TLS, WS_HTTP, AutoDialer, Rung
from tunnel.errors import ProxyRefusedError
from tunnel.headers import filter_headers, response_headers, upstream_request_headers

CLIENT_HEADERS = [
    ("Content-Type", "application/json"),
    ("Authorization", "Bearer client-key"),
    ("Connection", "keep-alive, X-Private"),
    ("X-Private", "1"),
    ("Keep-Alive", "timeout=5"),
    ("Proxy-Authorization", "Basic abc"),
    ("TE", "trailers"),
    ("Trailer", "x"),
    ("Transfer-Encoding", "chunked"),
    ("Upgrade", "h2c"),
    ("Host", "gateway.example"),
    (":path", "/v1/models"),
    ("Accept", "text/event-stream"),
]


def test_hop_by_hop_headers_are_dropped_and_names_lowered() -> None:
    assert filter_headers(CLIENT_HEADERS) == [
        ("content-type", "application/json"),
        ("authorization", "Bearer client-key"),
        ("accept", "text/event-stream"),
    ]


def test_the_clients_authorization_is_replaced_by_the_upstream_key() -> None:
    out = upstream_request_headers(CLIENT_HEADERS, "sk-upstream")
    assert ("authorization", "Bearer sk-upstream") in out
    assert all("client-key" not in v for _, v in out)


def test_without_an_upstream_key_no_authorization_is_sent() -> None:
    out = upstream_request_headers(CLIENT_HEADERS, "")
    assert all(n != "authorization" for n, _ in out)


def test_response_headers_are_filtered_too() -> None:
    got = response_headers(
        [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")]
    )
    assert got == [("content-type", "text/event-stream")]


def test_backoff_doubles_with_jitter_and_caps_at_30s() -> None:
    backoff = Backoff(rand=lambda: 0.5)  # jitter factor exactly 1.0
    delays = [backoff.next_delay() for _ in range(10)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert delays[-1] == 30.0
    assert max(delays) == 30.0


def test_backoff_jitter_spreads_delays() -> None:
    values = itertools.cycle([0.0, 1.0])
    backoff = Backoff(rand=lambda: next(values))
    low, high = backoff.next_delay(), Backoff(rand=lambda: 1.0).next_delay()
    assert low == pytest.approx(0.375)
    assert high == pytest.approx(0.625)


def test_backoff_resets_only_after_a_healthy_period() -> None:
    backoff = Backoff(rand=lambda: 0.5, healthy_reset_s=60)
    for _ in range(5):
        backoff.next_delay()
    backoff.up(100.0)
    backoff.down(110.0)  # 10 s up: not healthy enough
    assert backoff.next_delay() == 16.0
    backoff.up(200.0)
    backoff.down(300.0)  # 100 s up: schedule starts over
    assert backoff.next_delay() == 0.5


def test_proxy_url_with_credentials() -> None:
    spec = parse_proxy_url("http://us%40er:p%3Ass@proxy.corp:3128")
    assert spec == ProxySpec("proxy.corp", 3128, "us@er", "p:ss")
    assert parse_proxy_url("proxy.corp:8080").port == 8080
    with pytest.raises(ValueError, match="only http://"):
        parse_proxy_url("socks5://proxy:1080")


def test_proxy_selection_config_then_env_with_no_proxy() -> None:
    env = {"HTTPS_PROXY": "http://envproxy:3128", "NO_PROXY": "localhost,.home.example, 10.0.0.1"}
    assert select_proxy("http://cfg:1", "gw.example", env) == ProxySpec("cfg", 1)
    assert select_proxy("", "gw.example", env) == ProxySpec("envproxy", 3128)
    assert select_proxy("", "minipc.home.example", env) is None
    assert select_proxy("", "10.0.0.1", env) is None
    assert select_proxy("", "gw.example", {"https_proxy": "http://low:9"}) == ProxySpec("low", 9)
    assert select_proxy("", "gw.example", {}) is None


@pytest.mark.parametrize(
    ("host", "rule", "bypass"),
    [("a.corp", "*", True), ("a.corp", "corp", True), ("corp", ".corp", True),
     ("acorp", "corp", False), ("gw", "gw:443", True), ("gw", "", False)],
)  # fmt: skip
def test_no_proxy_rules(host: str, rule: str, bypass: bool) -> None:
    assert bypasses_proxy(host, rule) is bypass


def test_connect_request_carries_basic_auth() -> None:
    raw = connect_request("gw.example", 443, ProxySpec("p", 1, "user", "pw"))
    token = base64.b64encode(b"user:pw").decode()
    assert raw == (
        b"CONNECT gw.example:443 HTTP/1.1\r\nHost: gw.example:443\r\n"
        + f"Proxy-Authorization: Basic {token}\r\n\r\n".encode()
    )
    assert b"Proxy-Authorization" not in connect_request("gw", 443, ProxySpec("p", 1))


def test_connect_response_status_line() -> None:
    assert parse_connect_response(b"HTTP/1.1 200 Connection established\r\n\r\n") == (
        200,
        "HTTP/1.1 200 Connection established",
    )
    assert parse_connect_response(b"HTTP/1.1 403 Forbidden\r\nServer: squid\r\n\r\n")[0] == 403
    assert parse_connect_response(b"garbage\r\n\r\n") == (0, "garbage")


def _auto_cfg(retry_s: float) -> ConnectorConfig:
    gateway = {
        "address": "minipc.example.org:443",
        "ca": "ca.crt",
        "cert": "c.crt",
        "key": "c.key",
        "websocket_url": "http://minipc.example.org:8080/t",
        "auto_retry_s": retry_s,
    }
    data = {"gateway": gateway, "upstreams": {"office-llm": {"url": "http://10.0.0.1:4000"}}}
    return ConnectorConfig.from_dict(data, Path("/tmp"))


async def test_a_better_carrier_is_probed_every_auto_retry_s_and_found_once_for_all_tunnels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = _auto_cfg(0.01)
    tried: list[str] = []
    tls_opens = asyncio.Event()

    class _Probe:
        async def aclose(self) -> None:
            pass

    async def fake_dial(cfg: ConnectorConfig, rung: Rung) -> _Probe:
        tried.append(rung.name)
        if rung.name == TLS and not tls_opens.is_set():
            raise ProxyRefusedError("HTTP/1.1 403 Forbidden")
        return _Probe()

    monkeypatch.setattr(auto_ladder, "dial_rung", fake_dial)
    auto = AutoDialer()  # the interval comes from the config's auto_retry_s
    assert await auto(cfg) is not None  # tls refused, websocket via plain HTTP works
    assert auto.last_used == WS_HTTP
    first = asyncio.create_task(auto.better_available(cfg))  # two tunnels on the worse carrier
    second = asyncio.create_task(auto.better_available(cfg))
    async with asyncio.timeout(5):
        while tried.count(TLS) < 4:
            await asyncio.sleep(0.01)
        assert not first.done()
        assert not second.done()
        tls_opens.set()
        assert list(await asyncio.gather(first, second)) == [TLS, TLS]
    assert tried.count(WS_HTTP) == 1  # the watch never probes what is already in use
    assert await asyncio.wait_for(auto(cfg), 1) is not None
    assert auto.last_used == TLS


async def test_no_watch_ends_while_the_best_carrier_is_in_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tried: list[str] = []

    async def fake_dial(cfg: ConnectorConfig, rung: Rung) -> object:
        tried.append(rung.name)
        raise AssertionError("nothing better than tls to probe")

    monkeypatch.setattr(auto_ladder, "dial_rung", fake_dial)
    watch = asyncio.create_task(AutoDialer().better_available(_auto_cfg(0.01)))
    await asyncio.sleep(0.1)
    assert not watch.done()
    watch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watch
    assert tried == []
