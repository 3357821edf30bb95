"""Who may open the status page: the loopback decision, the credential's forms, admin keys and
the JWT admin claim, and the ``[admin]`` config keys."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from gateway.auth.identity import Identity, LimitDefaults
from gateway.auth.jwt import identity_from_claims
from gateway.config import JwtIssuerConfig, config_from_table
from gateway.errors import AuthError, ConfigError, PermissionDeniedError
from gateway.status.access import AdminGuard, bearer_from, credential_required, is_loopback

KEY = Identity("ops", "key", None, 0, 0, 0)
USER = Identity("alice", "key", None, 0, 0, 0)
JWT_ADMIN = Identity("jwt:idp:me", "jwt", None, 0, 0, 0, admin=True)


class FakeAuth:
    def __init__(self) -> None:
        self.seen: list[str | None] = []

    async def authenticate(self, authorization: str | None) -> Identity:
        self.seen.append(authorization)
        known = {"Bearer k-ops": KEY, "Bearer k-alice": USER, "Bearer a.b.c": JWT_ADMIN}
        if authorization not in known:
            raise AuthError("Incorrect API key provided.")
        return known[authorization]


def test_loopback_addresses() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "minipc.example.org", ""):
        assert not is_loopback(host), host
    assert not credential_required("auto", "127.0.0.1")
    assert credential_required("auto", "0.0.0.0")
    assert credential_required("auto", "192.168.1.5")
    assert credential_required("required", "127.0.0.1")


def test_credential_forms() -> None:
    basic = "Basic " + base64.b64encode(b"anyone:k-ops").decode()
    assert bearer_from(basic) == "Bearer k-ops"
    assert bearer_from("Bearer k-ops") == "Bearer k-ops"
    for bad in (None, "", "Basic !!!", "Basic " + base64.b64encode(b"nopass").decode(),
                "Basic " + base64.b64encode(b"user:").decode(), "Digest x"):  # fmt: skip
        assert bearer_from(bad) is None, bad


async def test_guard() -> None:
    auth = FakeAuth()
    open_guard = AdminGuard(auth, ["ops"], required=False)
    await open_guard.check(None)
    assert auth.seen == []  # open: nothing is even looked at
    guard = AdminGuard(auth, ["ops"], required=True)
    with pytest.raises(AuthError, match="admin credential"):
        await guard.check(None)
    with pytest.raises(AuthError):
        await guard.check("Bearer wrong")
    with pytest.raises(PermissionDeniedError) as denied:
        await guard.check("Bearer k-alice")  # a valid key, not listed in [admin] keys
    assert denied.value.status == 403
    await guard.check("Bearer k-ops")
    await guard.check("Basic " + base64.b64encode(b"me:k-ops").decode())
    await guard.check("Bearer a.b.c")  # a JWT with the admin claim


def test_jwt_admin_claim() -> None:
    settings = JwtIssuerConfig(
        issuer="https://idp", audience="a", jwks_file=Path("x"), admin_claim="llm_admin"
    )
    defaults = LimitDefaults()
    assert identity_from_claims({"sub": "me", "llm_admin": True}, settings, defaults).admin
    for value in (False, "true", 1, None):
        assert not identity_from_claims({"sub": "me", "llm_admin": value}, settings, defaults).admin
    unset = JwtIssuerConfig(issuer="https://idp", audience="a", jwks_file=Path("x"))
    assert not identity_from_claims({"sub": "me", "llm_admin": True}, unset, defaults).admin


def _config(admin: dict[str, Any]) -> Any:
    table = {
        "server": {"cert": "c", "key": "k"},
        "admin": admin,
        "tunnel": {"cert": "c", "key": "k", "ca": "a", "crl": "r", "allowed_connectors": ["o"]},
    }
    return config_from_table(table, Path("/etc/gw/gateway.toml"))


def test_admin_config_keys() -> None:
    cfg = _config({})
    assert (cfg.admin.auth, cfg.admin.keys) == ("auto", ())
    cfg = _config({"listen": "0.0.0.0:9100", "auth": "required", "keys": ["ops", "me"]})
    assert (cfg.admin.auth, cfg.admin.keys) == ("required", ("ops", "me"))
    with pytest.raises(ConfigError, match=r"admin\.auth: expected"):
        _config({"auth": "open"})
    with pytest.raises(ConfigError, match=r"admin\.keys"):
        _config({"keys": "ops"})
