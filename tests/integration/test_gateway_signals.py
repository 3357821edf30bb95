"""The signals of a running `gateway serve`: certificate days left on the admin ``/readyz``, on
``/metrics`` and in the log (a connector certificate issued with ``pki issue --days 10``), and a
killed connector as a disconnect with its reason. The public ``/readyz`` still says only ready."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from tests.integration.test_gateway_api import GatewayRig, gateway_rig
from tests.support.procs import run_command

DAY = 86_400.0


async def admin_get(rig: GatewayRig, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10.0) as http:
        return await http.get(f"http://127.0.0.1:{rig.ports['admin']}{path}")


def metric_values(text: str, name: str) -> dict[str, float]:
    """``{'{labels}': value}`` of one metric in the exposition text."""
    out = {}
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            series, _, value = line.rpartition(" ")
            out[series[len(name) :]] = float(value)
    return out


async def test_a_connector_certificate_of_10_days_is_flagged_everywhere(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path, connector=False) as rig:
        done = run_command(
            "pki", "issue", "client", "office-1", "--days", "10", "--force",
            "--dir", str(rig.pki.dir),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        rig.start_connector()
        await rig.wait_ready()

        ready = (await admin_get(rig, "/readyz")).json()
        certs: dict[str, Any] = {c["role"]: c for c in ready["certificates"]}
        assert set(certs) == {"ca", "server", "tunnel", "crl", "connector:office-1"}
        connector = certs["connector:office-1"]
        assert 9.9 < connector["days_left"] < 10.01
        assert connector["expiring"] is True
        assert connector["subject"] == "office-1"
        assert certs["server"]["expiring"] is False
        assert certs["server"]["days_left"] > 390
        assert certs["crl"]["expiring"] is False  # 7 days ahead, re-signed daily: fine
        tunnel = ready["tunnels"][0]
        assert tunnel["client_cert_not_after"] == connector["not_after"]
        assert time.time() - 60 < tunnel["connected_at"] <= time.time()
        assert "rtt_s" in tunnel
        assert ready["recent_disconnects"] == []

        text = (await admin_get(rig, "/metrics")).text
        left = metric_values(text, "gateway_certificate_remaining_seconds")
        assert 9.9 * DAY < left['{role="connector",subject="office-1"}'] < 10.01 * DAY
        assert left['{role="ca",subject="Test LLM CA"}'] > 3000 * DAY
        crl = metric_values(text, "gateway_crl_next_update_remaining_seconds")
        assert 6.9 * DAY < crl[""] <= 7 * DAY
        assert metric_values(text, "gateway_upstream_tunnels") == {'{upstream="office-llm"}': 1.0}

        await rig.gateway.wait_for_log(
            r"certificate expiry: connector office-1's client certificate \(office-1\) "
            r"expires in (9\.\d|10\.0) days",
            timeout=15.0,
        )
        assert not rig.gateway.log_has("server certificate .* expires in")

        async with rig.http() as http:
            public = await http.get(f"https://localhost:{rig.ports['public']}/readyz")
        assert public.json() == {"ready": True}


async def test_a_killed_connector_shows_as_a_disconnect_on_readyz_and_metrics(
    tmp_path: Path,
) -> None:
    async with gateway_rig(tmp_path) as rig:
        connector = rig.processes[-1]
        before = (await admin_get(rig, "/readyz")).json()["tunnels"][0]
        await connector.akill()
        deadline = time.monotonic() + 15
        while not (ready := (await admin_get(rig, "/readyz")).json())["recent_disconnects"]:
            assert time.monotonic() < deadline, "no disconnect recorded"
            await asyncio.sleep(0.05)
        end = ready["recent_disconnects"][0]
        assert (end["connector"], end["tunnel_id"], end["reason"]) == (
            "office-1",
            before["tunnel_id"],
            "peer_closed",
        )
        assert ready["tunnels"] == []
        text = (await admin_get(rig, "/metrics")).text
        counts = metric_values(text, "gateway_tunnel_disconnects_total")
        assert counts['{reason="peer_closed"}'] == 1.0
        assert sum(counts.values()) == 1.0
        assert metric_values(text, "gateway_upstream_tunnels") == {'{upstream="office-llm"}': 0.0}
        assert metric_values(text, "gateway_tunnels_up") == {"": 0.0}
