"""The status routes on a Quart test client (no socket): the guard's 401 (with a Basic
challenge) and 403, a bad range, the page, the fragment and the JSON from a temp ledger."""

from __future__ import annotations

import time
from pathlib import Path

from quart import Quart

from gateway.auth.identity import Identity
from gateway.config import GatewayConfig, config_from_table
from gateway.errors import AuthError
from gateway.ledger import RequestOutcome, UsageLedger
from gateway.metrics import GatewayMetrics
from gateway.status.routes import add_status_routes, admin_guard, create_status_admin_app
from tests.unit.test_gateway_app import ALICE, FakePool

OPS = Identity("ops", "key", None, 0, 0, 0)


class Auth:
    async def authenticate(self, authorization: str | None) -> Identity:
        known = {"Bearer ops": OPS, "Bearer alice": ALICE}
        if authorization not in known:
            raise AuthError("Incorrect API key provided.")
        return known[authorization]


def _config(tmp: Path, auth: str) -> GatewayConfig:
    table = {
        "server": {"cert": "c", "key": "k"},
        "admin": {"auth": auth, "keys": ["ops"]},
        "tunnel": {"cert": "c", "key": "k", "ca": "a", "crl": "r", "allowed_connectors": ["o"]},
        "auth": {"keys_db": "gw.db"},
    }
    return config_from_table(table, tmp / "gateway.toml")


async def _app(tmp: Path, auth: str) -> Quart:
    ledger = UsageLedger(tmp / "gw.db")
    await ledger.record("alice", "qwen", 7, 9, RequestOutcome(time.time(), 200, 0.2, 1.0))
    await ledger.aclose()
    app = Quart(__name__)
    config = _config(tmp, auth)
    add_status_routes(app, config, FakePool(), admin_guard(config, Auth()))
    return app


async def test_guarded(tmp_path: Path) -> None:
    client = (await _app(tmp_path, "required")).test_client()
    for path in ("/", "/status/fragment", "/status.json"):
        refused = await client.get(path)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith('Basic realm="llm-gateway admin"')
        assert (await refused.get_json())["error"]["code"] == "invalid_api_key"
    assert (
        await client.get("/status.json", headers={"authorization": "Bearer alice"})
    ).status_code == 403
    ok = await client.get("/status.json", headers={"authorization": "Bearer ops"})
    assert ok.status_code == 200
    data = await ok.get_json()
    assert data["today"]["total"]["requests"] == 1
    assert data["series"]["by_identity"]["alice"]["total"]["completion_tokens"] == 9
    assert ok.headers["cache-control"] == "no-store"


async def test_open_on_loopback(tmp_path: Path) -> None:
    client = (await _app(tmp_path, "auto")).test_client()  # listen: 127.0.0.1:9100
    page = await client.get("/?range=week")
    assert page.status_code == 200
    html = await page.get_data(as_text=True)
    assert html.startswith("<!doctype html>")
    assert "Usage, last week" in html
    fragment = await (await client.get("/status/fragment?range=day")).get_data(as_text=True)
    assert "<html" not in fragment
    assert '<tr data-identity="alice" data-model="qwen">' in fragment
    bad = await client.get("/status.json?range=year")
    assert bad.status_code == 400
    assert (await bad.get_json())["error"]["param"] == "range"


async def test_admin_readyz_details_are_behind_the_same_guard(tmp_path: Path) -> None:
    """Off loopback (``auth = "required"`` takes that path), the admin ``/readyz`` tells a
    stranger only ready or not, as the public one does: its tunnels (connector names, office
    addresses), disconnects and certificates are what the guarded page shows."""
    details = {"tunnels", "recent_disconnects", "certificates"}
    for auth, who, shown in [
        ("required", None, False),
        ("required", "Bearer alice", False),  # a valid key, not an admin's
        ("required", "Bearer ops", True),
        ("auto", None, True),  # loopback: open, like /metrics
    ]:
        config = _config(tmp_path, auth)
        app = create_status_admin_app(config, FakePool(), GatewayMetrics(), Auth())
        headers = {"authorization": who} if who else {}
        answer = await (await app.test_client().get("/readyz", headers=headers)).get_json()
        assert set(answer) == ({"ready"} | details if shown else {"ready"}), (auth, who)
