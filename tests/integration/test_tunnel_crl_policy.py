"""Revocation cannot be left off by accident, and a stale CRL fails closed without a restart."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest

from pki import CA
from tests.integration.test_gateway_api import gateway_toml
from tests.integration.test_tunnel_support import make_rig, wait_until
from tests.support.pki_fixtures import make_pki
from tests.support.procs import run_command

LISTENER_LOG = "tunnel.listener"


def listener_says(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records if r.name == LISTENER_LOG)


def test_a_gateway_toml_without_crl_is_one_line_and_exit_2(tmp_path: Path) -> None:
    toml = gateway_toml(tmp_path, make_pki(tmp_path / "pki"))
    lines = toml.read_text().splitlines()
    toml.write_text("\n".join(line for line in lines if not line.startswith("crl =")) + "\n")
    done = run_command("gateway", "check", "-c", str(toml))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("gateway check: error: tunnel.crl: is required")
    assert "crl = false" in done.stderr


def test_crl_false_is_accepted_on_purpose(tmp_path: Path) -> None:
    toml = gateway_toml(tmp_path, make_pki(tmp_path / "pki"), {"crl": False})
    done = run_command("gateway", "check", "-c", str(toml))
    assert done.returncode == 0, done.stderr


async def test_a_stale_crl_refuses_connectors_until_pki_crl_refreshes_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LISTENER_LOG)
    async with make_rig(tmp_path) as rig:
        ca = CA.load(rig.pki.dir)
        ca.crl(days=1, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
        await wait_until(lambda: listener_says(caplog, "is stale"), 3.0, "stale CRL noticed")
        proc = rig.start_connector(rig.connector_toml())
        await proc.wait_for_log(r"the gateway refused this connector: the CRL is stale")
        assert listener_says(caplog, "refused connector 'office-1'")
        assert rig.tunnels() == 0
        ca.crl()  # what the pki-crl timer runs
        await rig.wait_tunnels(1)
