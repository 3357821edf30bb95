"""JWT verification with the JWKS served over HTTPS (a local aiohttp server, trustme CA).

The good token passes; expired, wrong audience, wrong issuer, unknown key, ``alg: none``,
HS256 signed with the RSA public key and a tampered payload are all refused. An unknown
``kid`` makes the gateway fetch the JWKS again, but not more than once per interval; a JWKS
server whose certificate is not trusted gives no keys at all.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from gateway.auth.authenticator import Authenticator
from gateway.auth.identity import LimitDefaults
from gateway.auth.jwt import JwtVerifier
from gateway.config import JwtIssuerConfig
from gateway.errors import AuthError

ISS = "https://idp.test/realms/home"
AUD = "llm-gateway"
DEFAULTS = LimitDefaults(rpm=60, tpm=1000, concurrency=4)


@dataclass
class JwksServer:
    url: str
    ca_path: Path
    keys: list[RSAKey]
    hits: list[float] = field(default_factory=list)


@pytest.fixture(scope="module")
def keys() -> tuple[RSAKey, RSAKey]:
    return (
        RSAKey.generate_key(2048, parameters={"kid": "k1"}),
        RSAKey.generate_key(2048, parameters={"kid": "k2"}),
    )


@pytest.fixture
async def jwks_server(tmp_path: Path, keys: tuple[RSAKey, RSAKey]) -> AsyncIterator[JwksServer]:
    ca = trustme.CA()
    ca_path = tmp_path / "idp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    state = JwksServer(url="", ca_path=ca_path, keys=[keys[0]])

    async def serve_jwks(_: web.Request) -> web.Response:
        state.hits.append(time.monotonic())
        return web.json_response(KeySet(list(state.keys)).as_dict(private=False))

    app = web.Application()
    app.router.add_get("/realms/home/certs", serve_jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"https://127.0.0.1:{port}/realms/home/certs"
    yield state
    await runner.cleanup()


def make_auth(server: JwksServer, *, trust: bool = True, refetch_s: float = 5.0) -> Authenticator:
    settings = JwtIssuerConfig(
        issuer=ISS,
        audience=AUD,
        jwks_url=server.url,
        jwks_ca=server.ca_path if trust else None,
        algorithms=("RS256",),
        models_claim="llm_models",
        leeway_s=0,
    )
    return Authenticator(None, JwtVerifier([settings], DEFAULTS, refetch_interval_s=refetch_s),
                         DEFAULTS)  # fmt: skip


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISS, "aud": AUD, "sub": "alice", "iat": now, "exp": now + 60,
            "llm_models": ["qwen3-coder"]}  # fmt: skip
    base.update(over)
    return base


def signed(key: RSAKey, **over: Any) -> str:
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims(**over), key, algorithms=["RS256"])


def unsigned(key: RSAKey) -> str:
    header = b64(json.dumps({"alg": "none", "kid": key.kid}).encode())
    return f"{header}.{b64(json.dumps(claims()).encode())}."


def hs256_with_public_key(key: RSAKey) -> str:
    header = b64(json.dumps({"alg": "HS256", "kid": key.kid}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims()).encode())}"
    mac = hmac.new(key.as_pem(private=False), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def tampered(key: RSAKey) -> str:
    header, _, sig = signed(key).split(".")
    return f"{header}.{b64(json.dumps(claims(sub='admin')).encode())}.{sig}"


BAD_TOKENS: dict[str, tuple[Callable[[RSAKey, RSAKey], str], str]] = {
    "expired": (lambda k, _: signed(k, exp=int(time.time()) - 5), "expired"),
    "wrong audience": (lambda k, _: signed(k, aud="other-api"), "invalid claim 'aud'"),
    "wrong issuer": (lambda k, _: signed(k, iss="https://evil.test/"), "unknown issuer"),
    "unknown key": (lambda _, other: signed(other), "unknown signing key"),
    "alg none": (lambda k, _: unsigned(k), "algorithm not allowed"),
    "HS256 with the RSA public key": (lambda k, _: hs256_with_public_key(k),
                                      "algorithm not allowed"),
    "tampered payload": (lambda k, _: tampered(k), "bad signature"),
}  # fmt: skip


async def test_good_token_over_https(jwks_server: JwksServer, keys: tuple[RSAKey, RSAKey]) -> None:
    auth = make_auth(jwks_server)
    try:
        who = await auth.authenticate(f"Bearer {signed(keys[0])}")
        assert (who.kind, who.models) == ("jwt", frozenset({"qwen3-coder"}))
        assert who.name == "jwt:idp.test/realms/home:alice"
        await auth.authenticate(f"Bearer {signed(keys[0])}")
        assert len(jwks_server.hits) == 1  # cached
    finally:
        await auth.aclose()


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_bad_tokens_refused(
    jwks_server: JwksServer, keys: tuple[RSAKey, RSAKey], case: str
) -> None:
    make, reason = BAD_TOKENS[case]
    auth = make_auth(jwks_server)
    try:
        await auth.authenticate(f"Bearer {signed(keys[0])}")  # keys loaded
        token = make(*keys)
        with pytest.raises(AuthError) as info:
            await auth.authenticate(f"Bearer {token}")
        assert info.value.message == f"Invalid bearer token: {reason}"
    finally:
        await auth.aclose()


async def test_unknown_kid_refetch_is_rate_limited(
    jwks_server: JwksServer, keys: tuple[RSAKey, RSAKey]
) -> None:
    auth = make_auth(jwks_server, refetch_s=0.5)
    try:
        await auth.authenticate(f"Bearer {signed(keys[0])}")
        assert len(jwks_server.hits) == 1
        await asyncio.sleep(0.5)  # let the refetch interval pass
        for _ in range(10):  # a burst of unknown kids: one fetch, not ten
            with pytest.raises(AuthError, match="unknown signing key"):
                await auth.authenticate(f"Bearer {signed(keys[1])}")
        assert len(jwks_server.hits) == 2
        jwks_server.keys.append(keys[1])  # the IdP publishes the new key
        with pytest.raises(AuthError, match="unknown signing key"):
            await auth.authenticate(f"Bearer {signed(keys[1])}")  # still inside the interval
        assert len(jwks_server.hits) == 2
        await asyncio.sleep(0.5)
        assert (await auth.authenticate(f"Bearer {signed(keys[1])}")).name.endswith(":alice")
        assert len(jwks_server.hits) == 3
    finally:
        await auth.aclose()


async def test_untrusted_jwks_server_gives_no_keys(
    jwks_server: JwksServer, keys: tuple[RSAKey, RSAKey], caplog: pytest.LogCaptureFixture
) -> None:
    auth = make_auth(jwks_server, trust=False)  # system store: does not know the test CA
    token = signed(keys[0])
    try:
        with pytest.raises(AuthError, match="unknown signing key"):
            await auth.authenticate(f"Bearer {token}")
    finally:
        await auth.aclose()
    assert jwks_server.hits == []  # the TLS handshake failed before any request
    assert "JWKS for" in caplog.text
    assert token not in caplog.text
