"""JWT bearer tokens against a JWKS file: the good token and each way a token must fail."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from gateway.auth.authenticator import Authenticator
from gateway.auth.identity import LimitDefaults
from gateway.auth.jwt import JwtVerifier, check_algorithms, identity_from_claims, parse_models, peek
from gateway.config import JwtIssuerConfig
from gateway.errors import AuthError, TokenError

ISS = "https://idp.test/realms/home"
AUD = "llm-gateway"
DEFAULTS = LimitDefaults(rpm=60, tpm=1000, concurrency=4)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict[str, Any]) -> str:
    return b64(json.dumps(value).encode())


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})


@pytest.fixture(scope="module")
def other_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-2"})


@pytest.fixture(scope="module")
def ec_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "ec-1"})


def write_jwks(path: Path, *keys: RSAKey | ECKey) -> None:
    path.write_text(json.dumps(KeySet(list(keys)).as_dict(private=False)))


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISS, "aud": AUD, "sub": "alice@example.com", "iat": now, "nbf": now,
        "exp": now + 300, "llm_models": "qwen3-coder small",
    }  # fmt: skip
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: RSAKey | ECKey, alg: str = "RS256", **over: Any) -> str:
    return jwt.encode({"alg": alg, "kid": key.kid}, claims(**over), key, algorithms=[alg])


@pytest.fixture
def jwks_path(tmp_path: Path, rsa_key: RSAKey, ec_key: ECKey) -> Path:
    path = tmp_path / "jwks.json"
    write_jwks(path, rsa_key, ec_key)
    return path


@pytest.fixture
async def auth(jwks_path: Path) -> AsyncIterator[Authenticator]:
    settings = JwtIssuerConfig(
        issuer=ISS, audience=AUD, jwks_file=jwks_path, models_claim="llm_models", leeway_s=5
    )
    verifier = JwtVerifier([settings], DEFAULTS, refetch_interval_s=0.2)
    authenticator = Authenticator(None, verifier, DEFAULTS)
    yield authenticator
    await authenticator.aclose()


async def refused(auth: Authenticator, token: str) -> str:
    with pytest.raises(AuthError) as info:
        await auth.authenticate(f"Bearer {token}")
    assert token not in info.value.message
    return info.value.message


async def test_good_rsa_token(auth: Authenticator, rsa_key: RSAKey) -> None:
    who = await auth.authenticate(f"Bearer {sign(rsa_key)}")
    assert (who.name, who.kind) == ("jwt:idp.test/realms/home:alice@example.com", "jwt")
    assert who.models == frozenset({"qwen3-coder", "small"})
    assert (who.rpm, who.tpm, who.concurrency) == (60, 1000, 4)


async def test_good_ec_token_with_limit_claims(auth: Authenticator, ec_key: ECKey) -> None:
    token = sign(ec_key, "ES256", llm_models=["a"], llm_rpm=7, llm_tpm=70, llm_concurrency=1)
    who = await auth.authenticate(f"Bearer {token}")
    assert who.models == frozenset({"a"})
    assert (who.rpm, who.tpm, who.concurrency) == (7, 70, 1)


async def test_expired(auth: Authenticator, rsa_key: RSAKey) -> None:
    token = sign(rsa_key, exp=int(time.time()) - 60)
    assert await refused(auth, token) == "Invalid bearer token: expired"


async def test_expired_within_leeway_passes(auth: Authenticator, rsa_key: RSAKey) -> None:
    await auth.authenticate(f"Bearer {sign(rsa_key, exp=int(time.time()) - 2)}")


async def test_not_yet_valid(auth: Authenticator, rsa_key: RSAKey) -> None:
    token = sign(rsa_key, nbf=int(time.time()) + 120)
    assert "nbf" in await refused(auth, token)


async def test_issued_in_the_future(auth: Authenticator, rsa_key: RSAKey) -> None:
    assert "iat" in await refused(auth, sign(rsa_key, iat=int(time.time()) + 120))


async def test_missing_exp(auth: Authenticator, rsa_key: RSAKey) -> None:
    assert "exp" in await refused(auth, sign(rsa_key, exp=None))


async def test_wrong_audience(auth: Authenticator, rsa_key: RSAKey) -> None:
    assert "aud" in await refused(auth, sign(rsa_key, aud="someone-else"))


async def test_wrong_issuer(auth: Authenticator, rsa_key: RSAKey) -> None:
    token = sign(rsa_key, iss="https://evil.test/")
    assert await refused(auth, token) == "Invalid bearer token: unknown issuer"


async def test_unknown_key_even_after_refetch(
    auth: Authenticator, other_key: RSAKey, jwks_path: Path
) -> None:
    assert await refused(auth, sign(other_key)) == "Invalid bearer token: unknown signing key"


async def test_alg_none(auth: Authenticator, rsa_key: RSAKey) -> None:
    token = f"{b64json({'alg': 'none', 'kid': rsa_key.kid})}.{b64json(claims())}."
    assert await refused(auth, token) == "Invalid bearer token: algorithm not allowed"


async def test_hs256_signed_with_the_rsa_public_key(auth: Authenticator, rsa_key: RSAKey) -> None:
    public_pem = rsa_key.as_pem(private=False)
    signing_input = f"{b64json({'alg': 'HS256', 'kid': rsa_key.kid})}.{b64json(claims())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64(mac)}"
    assert await refused(auth, token) == "Invalid bearer token: algorithm not allowed"


async def test_alg_header_switched_to_another_allowed_alg(
    auth: Authenticator, rsa_key: RSAKey
) -> None:
    _header, payload, sig = sign(rsa_key).split(".")
    forged = f"{b64json({'alg': 'ES256', 'kid': rsa_key.kid})}.{payload}.{sig}"
    assert await refused(auth, forged) == "Invalid bearer token: bad signature"


async def test_tampered_payload(auth: Authenticator, rsa_key: RSAKey) -> None:
    header, _, sig = sign(rsa_key).split(".")
    forged = f"{header}.{b64json(claims(sub='root'))}.{sig}"
    assert await refused(auth, forged) == "Invalid bearer token: bad signature"


async def test_malformed(auth: Authenticator) -> None:
    assert await refused(auth, "a.b.c") == "Invalid bearer token: malformed"


async def test_key_rotation_picked_up_on_unknown_kid(
    tmp_path: Path, rsa_key: RSAKey, other_key: RSAKey
) -> None:
    path = tmp_path / "rot.json"
    write_jwks(path, rsa_key)
    settings = JwtIssuerConfig(issuer=ISS, audience=AUD, jwks_file=path)
    verifier = JwtVerifier([settings], DEFAULTS, refetch_interval_s=0.3)
    try:
        await verifier.verify(sign(rsa_key))
        cache = verifier.cache_for(ISS)
        assert cache.fetch_count == 1
        write_jwks(path, rsa_key, other_key)  # the IdP rotates
        for _ in range(5):  # unknown kid right after a fetch: no refetch storm
            with pytest.raises(TokenError, match="unknown signing key"):
                await verifier.verify(sign(other_key))
        assert cache.fetch_count == 1
        await asyncio.sleep(0.35)  # the refetch interval itself, not a synchronisation
        assert (await verifier.verify(sign(other_key))).name.endswith(":alice@example.com")
        assert cache.fetch_count == 2
    finally:
        await verifier.aclose()


def test_symmetric_and_none_algorithms_refused_in_config() -> None:
    assert check_algorithms(["RS256", "ES256"]) == ("RS256", "ES256")
    for bad in (["HS256"], ["none"], ["RS256", "HS512"], []):
        with pytest.raises(ValueError, match="asymmetric only"):
            check_algorithms(bad)


def test_parse_models() -> None:
    assert parse_models(None) is None
    assert parse_models("a b  c") == frozenset({"a", "b", "c"})
    assert parse_models(["a", "b"]) == frozenset({"a", "b"})
    with pytest.raises(TokenError):
        parse_models([1, 2])


def test_identity_claims() -> None:
    settings = JwtIssuerConfig(
        issuer=ISS, audience=AUD, jwks_file=Path("x"), identity_claim="email"
    )
    with pytest.raises(TokenError, match="missing claim 'email'"):
        identity_from_claims({"sub": "x"}, settings, DEFAULTS)
    with pytest.raises(TokenError, match="llm_rpm"):
        identity_from_claims({"email": "e", "llm_rpm": "10"}, settings, DEFAULTS)
    who = identity_from_claims({"email": "e", "llm_models": ["m"]}, settings, DEFAULTS)
    assert who.models is None  # no models_claim configured: every model


def test_peek_is_unverified_only() -> None:
    token = f"{b64json({'alg': 'RS256'})}.{b64json({'iss': ISS})}.sig"
    assert peek(token).claims == {"iss": ISS}
    for bad in ("a.b", "!!.!!.x", f"{b64(b'[1]')}.{b64(b'{}')}.x"):
        with pytest.raises(TokenError):
            peek(bad)


def test_same_sub_from_two_issuers_is_two_identities() -> None:
    """Issue 11: the identity (limits, ledger) includes the issuer, readably."""
    home = JwtIssuerConfig(issuer=ISS, audience=AUD, jwks_file=Path("x"))
    work = JwtIssuerConfig(issuer="https://login.work.test/", audience=AUD, jwks_file=Path("x"))
    a = identity_from_claims({"sub": "alice"}, home, DEFAULTS)
    b = identity_from_claims({"sub": "alice"}, work, DEFAULTS)
    assert a.name == "jwt:idp.test/realms/home:alice"
    assert b.name == "jwt:login.work.test:alice"


async def test_deeply_nested_jwt_header_is_a_401_without_traceback(
    tmp_path: Path, jwks_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11 (7a): a header nested past Python's recursion limit, through the real app."""
    from gateway.accesslog import AccessLog  # noqa: PLC0415
    from gateway.app import create_app  # noqa: PLC0415
    from gateway.config import config_from_table  # noqa: PLC0415
    from gateway.metrics import GatewayMetrics  # noqa: PLC0415
    from tests.unit.test_gateway_app import CHAT, FakeLedger, FakeLimiter, FakePool  # noqa: PLC0415

    settings = JwtIssuerConfig(issuer=ISS, audience=AUD, jwks_file=jwks_path)
    authenticator = Authenticator(None, JwtVerifier([settings], DEFAULTS), DEFAULTS)
    log = AccessLog(tmp_path / "access.log")
    table = {
        "server": {"cert": "c", "key": "k"},
        "tunnel": {
            "cert": "c", "key": "k", "ca": "a", "crl": False, "allowed_connectors": ["o"]
        },
    }  # fmt: skip
    cfg = config_from_table(table, tmp_path / "gateway.toml")
    app = create_app(
        cfg, FakePool(), authenticator, FakeLimiter(), FakeLedger(),  # type: ignore[arg-type]
        GatewayMetrics(), access_log=log,
    )  # fmt: skip
    deep = b64(b"[" * 5000 + b"]" * 5000)
    for token in (f"{deep}.{b64json({'iss': ISS})}.sig", f"{b64json({'alg': 'RS256'})}.{deep}.s"):
        resp = await app.test_client().post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {token}"}
        )
        assert resp.status_code == 401
        error = (await resp.get_json())["error"]
        assert error["code"] == "invalid_api_key"
        assert error["message"] == "Invalid bearer token: malformed"
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert "Traceback" not in caplog.text
    log.close()
    await authenticator.aclose()
