"""Property tests (hypothesis) for what the gateway reads from strangers before trusting them: the
``Authorization`` header, a JWT's unverified header and claims, the claims of a verified token, and
the connector's hello (read through a fake session: no socket)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any, cast

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.auth.authenticator import bearer_token
from gateway.auth.identity import LimitDefaults
from gateway.auth.jwt import (
    Peek,
    identity_from_claims,
    looks_like_jwt,
    parse_models,
    peek,
    validate_claims,
)
from gateway.config import JwtIssuerConfig
from gateway.errors import AuthError, TokenError
from tests.support.fuzz import fuzz_settings
from tunnel.errors import HandshakeError
from tunnel.h2 import hello

FUZZ = fuzz_settings(150)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


SEGMENTS = st.one_of(
    st.text(max_size=20),
    st.binary(max_size=30).map(b64),
    JSON.map(lambda v: b64(json.dumps(v).encode())),
    st.dictionaries(st.sampled_from(["alg", "kid", "iss", "typ"]), JSON).map(
        lambda v: b64(json.dumps(v).encode())
    ),
)

# ----------------------------------------------------------------------------- Authorization


@FUZZ
@given(st.none() | st.text(max_size=30) | st.sampled_from(["Bearer", "Bearer ", "bearer  x"]))
def test_bearer_token_gives_a_token_or_an_auth_error(authorization: str | None) -> None:
    try:
        token = bearer_token(authorization)
    except AuthError:
        return
    assert authorization is not None
    assert token
    assert token == token.strip()
    assert authorization.strip().lower().startswith("bearer ")
    assert authorization.strip().endswith(token)


@FUZZ
@given(
    scheme=st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", "Bearer:", ""]),
    spaces=st.sampled_from([" ", "  ", "\t", ""]),
    token=st.text(
        alphabet=st.characters(codec="ascii", exclude_categories=["Cc", "Zs"]), max_size=9
    ),
)
def test_only_the_bearer_scheme_with_a_space_gives_a_token(
    scheme: str, spaces: str, token: str
) -> None:
    header = f"{scheme}{spaces}{token}"
    ok = scheme.lower() == "bearer" and spaces.startswith(" ") and bool(token)
    if ok:
        assert bearer_token(header) == token
    else:
        with pytest.raises(AuthError):
            bearer_token(header)


# ----------------------------------------------------------------------------- JWT, unverified


@FUZZ
@given(st.lists(SEGMENTS, min_size=1, max_size=4).map(".".join))
def test_peek_gives_header_and_claims_objects_or_a_token_error(token: str) -> None:
    try:
        peeked = peek(token)
    except TokenError:
        return
    assert isinstance(peeked, Peek)
    assert isinstance(peeked.header, dict)
    assert isinstance(peeked.claims, dict)
    assert looks_like_jwt(token)


@FUZZ
@given(depth=st.integers(1000, 4000), where=st.sampled_from(["header", "claims"]))
@example(depth=1000, where="header")
def test_peek_of_a_deeply_nested_segment_is_a_token_error(depth: int, where: str) -> None:
    deep = b64(b'{"a":' + b"[" * depth + b"}")
    plain = b64(b"{}")
    token = f"{deep}.{plain}.sig" if where == "header" else f"{plain}.{deep}.sig"
    with pytest.raises(TokenError):
        peek(token)


# ----------------------------------------------------------------------------- verified claims

ISSUER = JwtIssuerConfig(
    issuer="https://idp", audience="llm", jwks_file=None, models_claim="llm_models"
)
CLAIM_NAMES = st.sampled_from(
    ["iss", "aud", "exp", "nbf", "iat", "sub", "llm_models", "llm_rpm", "llm_tpm"]
)


@st.composite
def claim_sets(draw: st.DrawFn) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": "https://idp", "aud": "llm", "exp": now + 600, "sub": "u"}
    claims.update(draw(st.dictionaries(CLAIM_NAMES, JSON, max_size=3)))
    return claims


@FUZZ
@given(claim_sets())
def test_any_claims_give_an_identity_or_a_token_error(claims: dict[str, Any]) -> None:
    try:
        validate_claims(claims, ISSUER)
        identity = identity_from_claims(claims, ISSUER, LimitDefaults())
    except TokenError as error:
        reason = str(error)
    else:
        reason = ""
    if reason:
        return
    assert identity.name == f"jwt:idp:{claims['sub']}"  # the issuer, without https://
    assert identity.kind == "jwt"


@FUZZ
@given(JSON)
def test_parse_models_gives_names_or_a_token_error(value: Any) -> None:
    try:
        models = parse_models(value)
    except TokenError:
        assert value is not None
        return
    assert models is None or all(isinstance(m, str) for m in models)


# ----------------------------------------------------------------------------- the hello


class FakeHelloStream:
    def __init__(self, status: str, chunks: list[bytes]) -> None:
        self.status = status
        self.chunks = list(chunks)
        self.was_reset = False

    async def response_head(self) -> list[tuple[str, str]]:
        return [(":status", self.status)]

    async def read(self) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def reset(self) -> None:
        self.was_reset = True


class FakeSession:
    def __init__(self, stream: FakeHelloStream) -> None:
        self.stream = stream
        self.opened: list[tuple[str, str]] = []

    def open_stream(self, headers: list[tuple[str, str]], end_stream: bool) -> FakeHelloStream:
        assert end_stream
        self.opened = headers
        return self.stream


HELLO_BODIES = st.one_of(
    st.binary(max_size=60),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"version": JSON, "upstreams": st.lists(st.text(max_size=6), max_size=3) | JSON}
    ).map(lambda v: json.dumps(v).encode()),
    st.just(b"[" * 5000),
    st.just(b'{"upstreams": []}' + b" " * hello.MAX_HELLO_BYTES),
)


def hello_of(status: str, body: bytes, pieces: int) -> tuple[dict[str, object], FakeHelloStream]:
    size = max(1, len(body) // pieces)
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    stream = FakeHelloStream(status, chunks)
    session = FakeSession(stream)
    got = asyncio.run(hello.ask_hello(cast(Any, session)))
    assert dict(session.opened)[":path"] == hello.HELLO_PATH
    return got, stream


@FUZZ
@given(
    status=st.sampled_from(["200", "200", "404", "500"]),
    body=HELLO_BODIES,
    pieces=st.integers(1, 4),
)
def test_the_hello_is_an_object_or_an_exception_admit_catches(
    status: str, body: bytes, pieces: int
) -> None:
    """``Listener._admit`` turns any ``Exception`` from ``_hello`` into a closed tunnel; what must
    never happen is an answer that is not a JSON object, or a BaseException that is not one."""
    try:
        got, stream = hello_of(status, body, pieces)
    except HandshakeError:
        too_large = len(body) > hello.MAX_HELLO_BYTES
        assert status != "200" or too_large or not isinstance(_json_or_none(body), dict)
        return
    except Exception:
        assert status == "200"
        assert _json_or_none(body) is None
        return
    assert status == "200"
    assert got == json.loads(body)
    assert isinstance(got, dict)
    assert not stream.was_reset


def _json_or_none(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None
