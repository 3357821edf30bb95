"""Who may hold a tunnel: the refusals, each logged with its reason, and interception named."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

import pytest

from pki import CA
from tests.integration.test_tunnel_support import make_rig, wait_until, write_connector_toml
from tests.support.pki_fixtures import make_pki
from tests.support.squid import Squid, SquidOptions
from tunnel.config import ConnectorConfig
from tunnel.dialers.tls import dial_tls
from tunnel.errors import HandshakeError, InterceptedError

LISTENER_LOG = "tunnel.listener"


def listener_says(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records if r.name == LISTENER_LOG)


async def test_a_revoked_certificate_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LISTENER_LOG)
    async with make_rig(tmp_path) as rig:
        CA.load(rig.pki.dir).revoke("office-1")
        await wait_until(lambda: listener_says(caplog, "CRL reloaded"), 3.0, "CRL reload")
        proc = rig.start_connector(rig.connector_toml())
        await proc.wait_for_log(
            r"the gateway refused this connector: certificate serial \w+ is revoked"
        )
        assert listener_says(caplog, "refused connector 'office-1'")
        assert rig.tunnels() == 0


async def test_revoking_a_connected_connector_closes_its_tunnel(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LISTENER_LOG)
    async with make_rig(tmp_path) as rig:
        proc = rig.start_connector(rig.connector_toml())
        await rig.wait_tunnels(1)
        CA.load(rig.pki.dir).revoke("office-1")
        await wait_until(lambda: rig.tunnels() == 0, 3.0, "tunnel closed after revocation")
        assert listener_says(caplog, "was just revoked")
        await proc.wait_for_log("certificate revoked")


async def test_a_certificate_from_another_ca_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LISTENER_LOG)
    other = make_pki(tmp_path / "other")
    async with make_rig(tmp_path) as rig:
        toml = rig.connector_toml()
        text = toml.read_text().replace(str(rig.pki.cert("office-1")), str(other.client_cert))
        toml.write_text(text.replace(str(rig.pki.key("office-1")), str(other.client_key)))
        proc = rig.start_connector(toml)
        await wait_until(lambda: listener_says(caplog, "TLS handshake failed"), 5.0, "refusal")
        assert listener_says(caplog, "certificate not from the deployment CA")
        await proc.wait_for_log("tunnel lost: |cannot connect: ")
        assert rig.tunnels() == 0


async def test_no_client_certificate_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LISTENER_LOG)
    async with make_rig(tmp_path) as rig:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(rig.pki.ca_cert)
        ctx.set_alpn_protocols(["h2"])
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", rig.listener.port, ssl=ctx, server_hostname="localhost"
        )
        try:
            data = await reader.read(100)
        except (ssl.SSLError, ConnectionError):
            data = b""
        assert data == b""  # refused: no HTTP/2 preface from the gateway
        writer.close()
        await wait_until(lambda: listener_says(caplog, "no client certificate"), 3.0, "refusal")


async def test_a_name_not_allowed_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LISTENER_LOG)
    async with make_rig(tmp_path) as rig:
        CA.load(rig.pki.dir).issue_client("office-3")
        proc = rig.start_connector(rig.connector_toml("office-3"))
        await proc.wait_for_log("refused this connector: connector name 'office-3' is not in")
        assert listener_says(caplog, "refused connector 'office-3'")
        assert rig.tunnels() == 0


async def test_an_inspecting_proxy_is_named_as_interception(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig:
        options = SquidOptions(guise="bump", ssl_ports=(rig.listener.port,))
        async with Squid(options=options, log_dir=tmp_path) as squid:
            toml = rig.connector_toml(gateway={"proxy": squid.url})
            with pytest.raises(InterceptedError) as caught:
                await dial_tls(ConnectorConfig.load(toml))
            assert caught.value.issuer == "Corp Proxy CA"
            proc = rig.start_connector(toml)
            await proc.wait_for_log("intercepted.*issued by 'Corp Proxy CA'")


async def test_a_wrong_server_name_is_a_plain_handshake_error(tmp_path: Path) -> None:
    async with make_rig(tmp_path) as rig:
        toml = write_connector_toml(
            tmp_path / "c.toml", rig.pki, rig.listener.port, rig.standin.url,
            gateway={"server_name": "wrong.example"},
        )  # fmt: skip
        with pytest.raises(HandshakeError) as caught:
            await dial_tls(ConnectorConfig.load(toml))
        assert not isinstance(caught.value, InterceptedError)
        assert "certificate was rejected" in str(caught.value)
