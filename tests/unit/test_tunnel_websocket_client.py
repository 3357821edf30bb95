"""Sans-IO parts of the websocket carrier: URLs, the upgrade request, the auto ladder."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import Request

from tunnel.carrier.proxy import ProxySpec
from tunnel.carrier.websocket_client import (
    USER_AGENT,
    parse_websocket_url,
    plain_http_url,
    proxy_for,
    request_target,
    upgrade_headers,
)
from tunnel.config import ConnectorConfig
from tunnel.describe import describe
from tunnel.dialers.auto import WS_HTTP, WS_HTTPS, attempt_order, ladder
from tunnel.errors import DialError, InterceptedError, ProxyRefusedError


def test_parse_https_url_defaults_to_443() -> None:
    t = parse_websocket_url("https://minipc.example.org/.well-known/llm-tunnel")
    assert (t.secure, t.host, t.port, t.path) == (
        True,
        "minipc.example.org",
        443,
        "/.well-known/llm-tunnel",
    )
    assert t.host_header == "minipc.example.org"


def test_parse_http_url_with_port_and_query() -> None:
    t = parse_websocket_url("ws://127.0.0.1:8080/t?x=1")
    assert (t.secure, t.port, t.path, t.host_header) == (False, 8080, "/t?x=1", "127.0.0.1:8080")


@pytest.mark.parametrize("url", ["ftp://h/p", "https:///p", "minipc/p"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="websocket URL"):
        parse_websocket_url(url)


def test_plain_http_twin() -> None:
    assert plain_http_url("https://h.example:8443/a") == "http://h.example/a"


def test_absolute_form_only_for_plain_http_through_a_proxy() -> None:
    proxy = ProxySpec("proxy.corp", 8080, "u", "p w")
    http = parse_websocket_url("http://h.example/t")
    https = parse_websocket_url("https://h.example/t")
    assert request_target(http, proxy) == "http://h.example/t"
    assert request_target(http, None) == "/t"
    assert request_target(https, proxy) == "/t"


def test_upgrade_request_carries_no_tool_marker_and_basic_proxy_auth() -> None:
    proxy = ProxySpec("proxy.corp", 8080, "u", "p w")
    target = parse_websocket_url("http://h.example/t")
    ws = WSConnection(ConnectionType.CLIENT)
    head = ws.send(
        Request(
            host=target.host_header,
            target=request_target(target, proxy),
            extra_headers=upgrade_headers(target, proxy),
        )
    ).decode()
    assert head.startswith("GET http://h.example/t HTTP/1.1\r\n")
    lower = head.lower()
    assert "sec-websocket-protocol" not in lower
    assert "llm" not in lower.replace("llm-tunnel", "")
    assert f"user-agent: {USER_AGENT.lower()}" in lower
    token = base64.b64encode(b"u:p w").decode()
    assert f"Proxy-Authorization: Basic {token}" in head
    # over https the proxy sees only CONNECT: no credentials inside the tunnel
    secure = parse_websocket_url("https://h.example/t")
    assert all(k != b"Proxy-Authorization" for k, _ in upgrade_headers(secure, proxy))


def test_proxy_for_uses_http_proxy_for_plain_urls() -> None:
    env = {"HTTP_PROXY": "http://p1:3128", "HTTPS_PROXY": "http://p2:3128", "NO_PROXY": "skip.me"}
    plain = parse_websocket_url("http://h.example/t")
    secure = parse_websocket_url("https://h.example/t")
    assert proxy_for(plain, "", env) == ProxySpec("p1", 3128)
    assert proxy_for(secure, "", env) == ProxySpec("p2", 3128)
    assert proxy_for(parse_websocket_url("http://skip.me/t"), "", env) is None
    assert proxy_for(plain, "http://cfg:1", env) == ProxySpec("cfg", 1)


def _cfg(**gateway: Any) -> ConnectorConfig:
    table = {"address": "minipc.example.org:443", "ca": "ca.crt", "cert": "c.crt", "key": "c.key"}
    table.update(gateway)
    data = {"gateway": table, "upstreams": {"office-llm": {"url": "http://10.0.0.1:4000"}}}
    return ConnectorConfig.from_dict(data, Path("/tmp"))


def test_ladder_https_then_plain_http() -> None:
    rungs = ladder(_cfg(websocket_url="https://minipc.example.org/.well-known/llm-tunnel"))
    assert [(r.name, r.url) for r in rungs] == [
        ("tls", ""),
        (WS_HTTPS, "https://minipc.example.org/.well-known/llm-tunnel"),
        (WS_HTTP, "http://minipc.example.org/.well-known/llm-tunnel"),
    ]


def test_ladder_with_an_http_websocket_url_and_without_one() -> None:
    assert [r.name for r in ladder(_cfg(websocket_url="http://h:8080/t"))] == ["tls", WS_HTTP]
    assert [r.name for r in ladder(_cfg())] == ["tls"]


def test_attempt_order_sticks_to_what_worked_until_a_retry_is_due() -> None:
    assert attempt_order(3, 0, retry_due=False) == [0, 1, 2]
    assert attempt_order(3, 2, retry_due=False) == [2, 0, 1]
    assert attempt_order(3, 2, retry_due=True) == [0, 1, 2]


def test_failures_in_plain_words() -> None:
    intercepted = InterceptedError("minipc.example.org", "Corp Proxy CA")
    assert describe(intercepted, "dial") == (
        "refused — the proxy intercepts TLS (certificate issued by 'Corp Proxy CA')"
    )
    refused = ProxyRefusedError("HTTP/1.1 403 Forbidden")
    assert describe(refused, "dial") == "refused — the proxy answered 'HTTP/1.1 403 Forbidden'"
    assert describe(DialError("boom"), "dial") == "failed — boom"
