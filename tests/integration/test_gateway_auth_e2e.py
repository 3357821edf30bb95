"""End to end with the official ``openai`` SDK: real ``gateway serve``, connector, stand-in LLM,
certificates from ``pki``. Authentication: 401s the SDK maps to ``AuthenticationError``, a key
revoked on a running gateway refused within a second, JWTs checked against a JWKS that this test
serves over HTTPS (the gateway process fetches it)."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import trustme
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.support.pki_fixtures import PkiPaths, make_pki
from tests.support.procs import (
    ManagedProcess,
    file_ready,
    our_command,
    run_command,
    standin_process,
)

ALIAS = "qwen3-coder"
UPSTREAM_MODEL = "Qwen/Qwen3-Coder-30B-A3B-Instruct"
READY_TIMEOUT_S = 30.0


def gateway_toml(
    pki: PkiPaths, *, storage: str = "memory://", rpm: int = 600, tpm: int = 1_000_000,
    concurrency: int = 8, extra: str = "",
) -> str:  # fmt: skip
    return f"""
[server]
listen = "127.0.0.1:0"
cert = "{pki.server_cert}"
key = "{pki.server_key}"
sse_keepalive_s = 1.0

[admin]
listen = "127.0.0.1:0"

[tunnel]
listen = "127.0.0.1:0"
cert = "{pki.server_cert}"
key = "{pki.server_key}"
ca = "{pki.ca_cert}"
crl = "{pki.crl}"
allowed_connectors = ["office-1"]

[auth]
keys_db = "gateway.db"
{extra}
[limits]
storage = "{storage}"
rpm = {rpm}
tpm = {tpm}
concurrency = {concurrency}

[models."{ALIAS}"]
upstream = "office-llm"
model = "{UPSTREAM_MODEL}"
"""


def connector_toml(pki: PkiPaths, tunnel_port: int, upstream_url: str) -> str:
    return f"""
[gateway]
address = "127.0.0.1:{tunnel_port}"
server_name = "localhost"
ca = "{pki.ca_cert}"
cert = "{pki.client_cert}"
key = "{pki.client_key}"
transport = "tls"

[upstreams.office-llm]
url = "{upstream_url}"
"""


def readyz_ok(admin_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@dataclass
class Gateway:
    """One ``gateway serve`` (with its connector) in ``work``."""

    work: Path
    config: Path
    ports: dict[str, int]
    process: ManagedProcess
    ca: Path

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['public']}/v1"

    def client(self, api_key: str, *, max_retries: int = 0) -> openai.AsyncOpenAI:
        verify = ssl.create_default_context(cafile=str(self.ca))
        return openai.AsyncOpenAI(
            base_url=self.base_url, api_key=api_key, max_retries=max_retries,
            http_client=openai.DefaultAsyncHttpxClient(verify=verify), timeout=30,
        )  # fmt: skip

    def keys(self, *args: str) -> str:
        done = run_command("gateway", "keys", *args, "-c", str(self.config), cwd=self.work)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


@dataclass
class Stack:
    """PKI, one stand-in LLM, and as many gateways (each with a connector) as asked for."""

    work: Path
    exits: AsyncExitStack
    pki: PkiPaths = field(init=False)
    upstream_url: str = field(init=False, default="")

    async def start(self) -> Stack:
        self.pki = make_pki(self.work / "pki")
        standin = standin_process(self.work)
        await self.exits.enter_async_context(standin)
        self.upstream_url = standin.url
        return self

    async def gateway(self, name: str = "gateway", **settings: Any) -> Gateway:
        config = self.work / f"{name}.toml"
        config.write_text(gateway_toml(self.pki, **settings))
        ready = self.work / f"{name}.ready.json"
        proc = our_command(
            "gateway", "serve", "-c", str(config), "--ready-file", str(ready),
            work_dir=self.work, name=name, ready=file_ready(ready),
        )  # fmt: skip
        proc.ready_timeout_s = READY_TIMEOUT_S
        await self.exits.enter_async_context(proc)
        ports = json.loads(ready.read_text())
        connector_config = self.work / f"{name}-connector.toml"
        connector_config.write_text(connector_toml(self.pki, ports["tunnel"], self.upstream_url))
        connector = our_command(
            "connector", "run", "-c", str(connector_config), work_dir=self.work,
            name=f"{name}-connector", ready=lambda: readyz_ok(ports["admin"]),
        )  # fmt: skip
        connector.ready_timeout_s = READY_TIMEOUT_S
        await self.exits.enter_async_context(connector)
        return Gateway(self.work, config, ports, proc, self.pki.ca_cert)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with AsyncExitStack() as exits:
        yield await Stack(tmp_path, exits).start()


async def chat(client: openai.AsyncOpenAI, **extra: Any) -> str:
    answer = await client.chat.completions.create(
        model=ALIAS, messages=[{"role": "user", "content": "Hello there"}], **extra
    )
    return answer.choices[0].message.content or ""


async def test_missing_and_wrong_keys_are_401(stack: Stack) -> None:
    gw = await stack.gateway()
    key = gw.keys("create", "alice")
    async with gw.client(key) as good:
        assert await chat(good)
    forged = key[:-3] + ("abc" if not key.endswith("abc") else "xyz")
    for bad in (forged, "sk-gw-unknown", "not-a-key"):
        async with gw.client(bad) as client:
            with pytest.raises(openai.AuthenticationError) as info:
                await chat(client)
        assert info.value.status_code == 401
        assert info.value.code == "invalid_api_key"
        assert bad not in str(info.value.body)
    verify = ssl.create_default_context(cafile=str(gw.ca))
    async with httpx.AsyncClient(verify=verify) as raw:  # no Authorization header at all
        resp = await raw.get(f"{gw.base_url}/models")
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_api_key"
    assert "didn't provide an API key" in resp.json()["error"]["message"]
    assert key not in gw.process.log_text()


async def test_key_revoked_on_a_running_gateway_is_refused_within_a_second(stack: Stack) -> None:
    gw = await stack.gateway()
    key = gw.keys("create", "bob")
    async with gw.client(key) as client:
        assert await chat(client)
        gw.keys("revoke", "bob")
        revoked_at = time.monotonic()
        refused_after = None
        while time.monotonic() - revoked_at < 5.0:
            try:
                await client.models.list()
            except openai.AuthenticationError:
                refused_after = time.monotonic() - revoked_at
                break
            await asyncio.sleep(0.05)
    assert refused_after is not None
    assert refused_after < 1.0


async def test_key_model_restriction(stack: Stack) -> None:
    gw = await stack.gateway()
    key = gw.keys("create", "carol", "--models", "some-other-model")
    async with gw.client(key) as client:
        with pytest.raises(openai.NotFoundError):
            await chat(client)
        assert [m.id async for m in client.models.list()] == []


# --------------------------------------------------------------------------- JWT, JWKS over HTTPS

ISS = "https://idp.test/realms/home"
AUD = "llm-gateway"


@dataclass
class Idp:
    url: str
    ca: Path
    key: RSAKey
    stranger: RSAKey


@pytest.fixture
async def idp(tmp_path: Path) -> AsyncIterator[Idp]:
    ca = trustme.CA()
    ca_path = tmp_path / "idp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    key = RSAKey.generate_key(2048, parameters={"kid": "idp-1"})
    stranger = RSAKey.generate_key(2048, parameters={"kid": "idp-2"})

    async def certs(_: web.Request) -> web.Response:
        return web.json_response(KeySet([key]).as_dict(private=False))

    app = web.Application()
    app.router.add_get("/certs", certs)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx).start()
    yield Idp(f"https://127.0.0.1:{runner.addresses[0][1]}/certs", ca_path, key, stranger)
    await runner.cleanup()


def token(key: RSAKey, alg: str = "RS256", **over: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": "dave", "iat": now, "exp": now + 120,
              "llm_models": [ALIAS], **over}  # fmt: skip
    return jwt.encode({"alg": alg, "kid": key.kid}, claims, key, algorithms=[alg])


def forge(good: str, header: dict[str, Any] | None = None, claims: dict[str, Any] | None = None,
          signature: str | None = None) -> str:  # fmt: skip
    import base64  # noqa: PLC0415

    def enc(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    h, c, s = good.split(".")
    return ".".join([enc(header) if header else h, enc(claims) if claims else c,
                     s if signature is None else signature])  # fmt: skip


def hs256_with_public_key(key: RSAKey) -> str:
    import base64  # noqa: PLC0415
    import hashlib  # noqa: PLC0415
    import hmac  # noqa: PLC0415

    unsigned = forge(token(key), header={"alg": "HS256", "kid": key.kid}, signature="")[:-1]
    mac = hmac.new(key.as_pem(private=False), unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


async def test_jwt_from_jwks_over_https(stack: Stack, idp: Idp) -> None:
    jwt_table = f"""
[[auth.jwt]]
issuer = "{ISS}"
audience = "{AUD}"
jwks_url = "{idp.url}"
jwks_ca = "{idp.ca}"
algorithms = ["RS256"]
models_claim = "llm_models"
leeway_s = 0
"""
    gw = await stack.gateway(extra=jwt_table)
    good = token(idp.key)
    async with gw.client(good) as client:
        assert await chat(client)
        assert ALIAS in [m.id async for m in client.models.list()]
    now = int(time.time())
    bad = {
        "expired": token(idp.key, exp=now - 10),
        "wrong audience": token(idp.key, aud="another-api"),
        "wrong issuer": token(idp.key, iss="https://evil.test/"),
        "unknown key": token(idp.stranger),
        "alg none": forge(good, header={"alg": "none", "kid": idp.key.kid}, signature=""),
        "HS256 with the RSA public key": hs256_with_public_key(idp.key),
        "tampered payload": forge(
            good, claims={"iss": ISS, "aud": AUD, "sub": "root", "exp": now + 60}
        ),
    }
    for case, value in bad.items():
        async with gw.client(value) as client:
            with pytest.raises(openai.AuthenticationError) as info:
                await chat(client)
        assert info.value.code == "invalid_api_key", case
        assert "Invalid bearer token" in info.value.message, case
    assert good not in gw.process.log_text()
