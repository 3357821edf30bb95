"""`connector doctor` on the three office networks: plain (CONNECT allowed), inspecting (ssl-bump
with 'Corp Proxy CA') and HTTP-only; its verdict checked word for word."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_tunnel_support import Rig, make_rig
from tests.integration.test_websocket_support import ws_front
from tests.support.procs import our_command
from tests.support.squid import Squid, SquidOptions


async def run_doctor(rig: Rig, toml: Path) -> tuple[int, list[str]]:
    proc = our_command("connector", "doctor", "-c", str(toml), work_dir=rig.tmp, name="doctor")
    proc.launch()
    code = await proc.await_exit(60.0)
    return code, proc.log_text().splitlines()


def verdict_of(lines: list[str]) -> str:
    found = [line for line in lines if line.startswith("verdict: ")]
    assert len(found) == 1, lines
    return found[0].removeprefix("verdict: ")


def line_of(lines: list[str], step: str) -> str:
    found = [line for line in lines if line.startswith(("[", " ")) and f"] {step}: " in line]
    assert found, (step, lines)
    return found[0]


async def test_doctor_on_a_plain_network(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig:
        options = SquidOptions(ssl_ports=(rig.listener.port,))
        async with Squid(options=options, log_dir=tmp_path) as squid:
            toml = rig.connector_toml(gateway={"transport": "auto", "proxy": squid.url})
            code, lines = await run_doctor(rig, toml)
            port = rig.listener.port
    assert verdict_of(lines) == "the tunnel works over `tls`", lines
    assert code == 0, lines
    assert line_of(lines, "certificate").startswith("[  ok] certificate: 'office-1', key matches")
    assert line_of(lines, "proxy") == (
        f"[  ok] proxy: 127.0.0.1:{squid.port} reachable; CONNECT 127.0.0.1:{port} allowed"
    )
    assert (
        line_of(lines, "tunnel") == "[  ok] tunnel: the gateway admitted this connector over `tls`"
    )
    assert line_of(lines, "upstream office-llm").startswith("[  ok] upstream office-llm: GET ")


async def test_doctor_quotes_squids_403_for_a_port_other_than_443(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig, Squid(options=SquidOptions(), log_dir=tmp_path) as squid:
        toml = rig.connector_toml(gateway={"transport": "tls", "proxy": squid.url})
        code, lines = await run_doctor(rig, toml)
        port = rig.listener.port
    assert code == 1, lines
    assert line_of(lines, "proxy") == (
        f"[FAIL] proxy: 127.0.0.1:{squid.port} refused CONNECT: HTTP/1.1 403 Forbidden"
    )
    assert any("squid's default allows 443 only" in line for line in lines), lines
    assert verdict_of(lines) == (
        f"your proxy refuses CONNECT to 127.0.0.1:{port} "
        "(it answered 'HTTP/1.1 403 Forbidden'); no carrier gets through; see the steps above"
    )


async def test_doctor_on_an_inspecting_network(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig:
        pki = rig.pki
        async with ws_front(rig.listener, pki.server_cert, pki.server_key) as front:
            options = SquidOptions(
                guise="bump", ssl_ports=(rig.listener.port, front.port), upstream_ca=pki.ca_cert
            )
            async with Squid(options=options, log_dir=tmp_path) as squid:
                gateway = {
                    "transport": "auto",
                    "proxy": squid.url,
                    "websocket_url": front.url("localhost"),
                    "proxy_ca": str(squid.proxy_ca_path),
                }
                code, lines = await run_doctor(rig, rig.connector_toml(gateway=gateway))
    assert verdict_of(lines) == (
        "your proxy intercepts TLS (it showed a certificate issued by 'Corp Proxy CA'); "
        "the tunnel works over `websocket` via HTTPS; "
        "to use `tls`, ask for localhost to be exempted from inspection"
    ), lines
    assert line_of(lines, "tls").startswith(
        "[  no] tls: a proxy intercepts TLS: it showed a certificate for 'gateway' "
        "issued by 'Corp Proxy CA', not by the deployment CA"
    ), lines
    assert line_of(lines, "tunnel") == (
        "[  ok] tunnel: the gateway admitted this connector over `websocket` via HTTPS"
    )
    assert code == 0, lines


async def test_doctor_on_an_http_only_network(tmp_path: Path) -> None:
    http_only = SquidOptions(guise="http_only")
    async with (
        make_rig(tmp_path) as rig,
        ws_front(rig.listener) as front,
        Squid(options=http_only, log_dir=tmp_path) as squid,
    ):
        gateway = {"transport": "auto", "proxy": squid.url, "websocket_url": front.url()}
        code, lines = await run_doctor(rig, rig.connector_toml(gateway=gateway))
        port = rig.listener.port
    address = f"127.0.0.1:{port}"
    assert verdict_of(lines) == (
        f"your proxy refuses CONNECT to {address} (it answered 'HTTP/1.1 403 Forbidden'); "
        "the tunnel works over `websocket` via plain HTTP; "
        f"to use `tls`, ask for CONNECT to {address} to be allowed"
    ), lines
    assert line_of(lines, "tunnel") == (
        "[  ok] tunnel: the gateway admitted this connector over `websocket` via plain HTTP"
    )
    assert code == 0, lines
