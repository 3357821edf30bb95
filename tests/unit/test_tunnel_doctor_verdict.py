"""The doctor's last sentence, and `auto`'s memory of what worked (no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnel.config import ConnectorConfig
from tunnel.dialers import auto as auto_ladder
from tunnel.dialers.auto import TLS, WS_HTTP, WS_HTTPS, AutoDialer, Rung
from tunnel.doctor import FAIL, OK, SOFT, RungResult, Step, verdict
from tunnel.errors import DialError, InterceptedError, ProxyRefusedError


def _cfg() -> ConnectorConfig:
    table = {
        "address": "minipc.example.org:443",
        "ca": "ca.crt",
        "cert": "c.crt",
        "key": "c.key",
        "websocket_url": "https://minipc.example.org/.well-known/llm-tunnel",
    }
    data = {"gateway": table, "upstreams": {"office-llm": {"url": "http://10.0.0.1:4000"}}}
    return ConnectorConfig.from_dict(data, Path("/tmp"))


def test_verdict_intercepting_proxy_websocket_over_plain_http() -> None:
    rungs = [
        RungResult(TLS, False, InterceptedError("minipc.example.org", "Corp Proxy CA")),
        RungResult(WS_HTTPS, False, DialError("x")),
        RungResult(WS_HTTP, True),
    ]
    assert verdict(rungs, _cfg()) == (
        "your proxy intercepts TLS (it showed a certificate issued by 'Corp Proxy CA'); "
        "the tunnel works over `websocket` via plain HTTP; "
        "to use `tls`, ask for minipc.example.org to be exempted from inspection"
    )


def test_verdict_everything_fine() -> None:
    assert verdict([RungResult(TLS, True)], _cfg()) == "the tunnel works over `tls`"


def test_verdict_connect_refused_and_nothing_works() -> None:
    rungs = [
        RungResult(TLS, False, ProxyRefusedError("HTTP/1.1 403 Forbidden")),
        RungResult(WS_HTTPS, False, ProxyRefusedError("HTTP/1.1 403 Forbidden")),
    ]
    assert verdict(rungs, _cfg()) == (
        "your proxy refuses CONNECT to minipc.example.org:443 "
        "(it answered 'HTTP/1.1 403 Forbidden'); no carrier gets through; see the steps above"
    )


def test_step_lines_say_what_to_do_on_failure() -> None:
    assert Step("proxy", OK, "fine").lines() == ["[  ok] proxy: fine"]
    assert Step("tls", FAIL, "bad", "fix it").lines() == [
        "[FAIL] tls: bad",
        "       what to do: fix it",
    ]
    assert Step("tls", SOFT, "intercepted").lines() == ["[  no] tls: intercepted"]


def test_auto_retries_better_carriers_only_every_few_minutes() -> None:
    now = [1000.0]
    auto = AutoDialer(retry_better_s=300.0, clock=lambda: now[0])
    key = ("minipc.example.org:443", "")
    assert auto._retry_due(key)  # nothing learnt yet: start from the best
    auto._preferred[key] = 2  # websocket over plain HTTP worked
    assert not auto._retry_due(key)
    now[0] += 299.0
    assert not auto._retry_due(key)
    now[0] += 2.0
    assert auto._retry_due(key)  # five minutes on: tls gets another chance
    assert not auto._retry_due(key)


async def test_better_available_probes_the_better_carriers_and_reports_the_first_that_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {TLS: [DialError("down"), None]}
    tried: list[str] = []

    class _Probe:
        closed = False

        async def aclose(self) -> None:
            self.closed = True

    async def fake_dial(cfg: ConnectorConfig, rung: Rung) -> _Probe:
        tried.append(rung.name)
        outcome = answers[rung.name].pop(0)
        if outcome is not None:
            raise outcome
        return _Probe()

    monkeypatch.setattr(auto_ladder, "dial_rung", fake_dial)
    auto = AutoDialer(retry_better_s=0.0)
    cfg = _cfg()
    auto._preferred[(cfg.address, cfg.websocket_url)] = 1  # websocket via HTTPS in use
    assert await auto.better_available(cfg) == TLS
    assert tried == [TLS, TLS]  # only the better one, again until it answers
    assert auto._preferred[(cfg.address, cfg.websocket_url)] == 0
