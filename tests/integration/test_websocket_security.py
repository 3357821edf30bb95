"""Inside the websocket carrier the security holds exactly as over tls: the outer layer proves
nothing; the inner mutual TLS and the listener's identity checks decide."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pki import CA
from tests.integration.test_tunnel_support import Rig, listener_config, make_rig, wait_until
from tests.integration.test_websocket_support import Front, ws_front
from tests.support.pki_fixtures import make_pki
from tunnel.config import ConnectorConfig
from tunnel.dialers.auto import dial_websocket
from tunnel.errors import InterceptedError
from tunnel.listener import Listener

LISTENER_LOG = "tunnel.listener"


def listener_says(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records if r.name == LISTENER_LOG)


def ws_toml(rig: Rig, front: Front, name: str = "office-1") -> Path:
    gateway = {"transport": "websocket", "websocket_url": front.url()}
    return rig.connector_toml(name, gateway=gateway)


async def test_another_cas_certificate_is_refused_over_websocket(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LISTENER_LOG)
    other = make_pki(tmp_path / "other")
    async with make_rig(tmp_path) as rig, ws_front(rig.listener) as front:
        toml = ws_toml(rig, front)
        text = toml.read_text().replace(str(rig.pki.cert("office-1")), str(other.client_cert))
        toml.write_text(text.replace(str(rig.pki.key("office-1")), str(other.client_key)))
        proc = rig.start_connector(toml)
        await wait_until(lambda: listener_says(caplog, "TLS handshake failed"), 10.0, "refusal")
        assert listener_says(caplog, "(websocket): TLS handshake failed: certificate not from")
        await proc.wait_for_log("tunnel lost: |cannot connect: ")
        assert rig.tunnels() == 0


async def test_a_revoked_certificate_is_refused_over_websocket(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LISTENER_LOG)
    async with make_rig(tmp_path) as rig, ws_front(rig.listener) as front:
        CA.load(rig.pki.dir).revoke("office-1")
        await wait_until(lambda: listener_says(caplog, "CRL reloaded"), 3.0, "CRL reload")
        proc = rig.start_connector(ws_toml(rig, front))
        await proc.wait_for_log(
            r"the gateway refused this connector: certificate serial \w+ is revoked"
        )
        assert listener_says(caplog, "refused connector 'office-1'")
        assert any("(websocket)" in r.getMessage() for r in caplog.records)
        assert rig.tunnels() == 0


async def test_revoking_a_connected_websocket_connector_closes_its_tunnel(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LISTENER_LOG)
    async with make_rig(tmp_path) as rig, ws_front(rig.listener) as front:
        proc = rig.start_connector(ws_toml(rig, front))
        await rig.wait_tunnels(1)
        CA.load(rig.pki.dir).revoke("office-1")
        await wait_until(lambda: rig.tunnels() == 0, 3.0, "tunnel closed after revocation")
        assert listener_says(caplog, "was just revoked")
        await proc.wait_for_log("certificate revoked")


async def test_a_name_not_allowed_is_refused_over_websocket(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LISTENER_LOG)
    async with make_rig(tmp_path) as rig, ws_front(rig.listener) as front:
        CA.load(rig.pki.dir).issue_client("office-3")
        proc = rig.start_connector(ws_toml(rig, front, "office-3"))
        await proc.wait_for_log("refused this connector: connector name 'office-3' is not in")
        assert listener_says(caplog, "refused connector 'office-3' from 127.0.0.1")
        assert rig.tunnels() == 0


async def test_a_gateway_impersonated_by_the_proxys_ca_is_refused_inside(
    tmp_path: Path,
) -> None:
    """A proxy answering the inner TLS too, with its own CA, is named and not trusted."""
    async with make_rig(tmp_path) as rig:
        proxy_ca = CA.init(tmp_path / "corp", name="Corp Proxy CA")
        fake = proxy_ca.issue_server("impostor", dns=["localhost"], ips=["127.0.0.1"])
        table = {"cert": str(fake.cert_path), "key": str(fake.key_path)}
        impostor_cfg = listener_config(rig.pki, **table)
        impostor = Listener(impostor_cfg)  # an impostor gateway; never started on a port
        async with ws_front(impostor) as front:
            cfg = ConnectorConfig.load(ws_toml(rig, front))
            with pytest.raises(InterceptedError) as caught:
                await dial_websocket(cfg)
            assert caught.value.issuer == "Corp Proxy CA"
