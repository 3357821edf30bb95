"""OAuth2 / JWT bearer tokens, verified with joserfc against each issuer's JWKS.

``authlib.jose`` is deprecated in favour of joserfc (same author), so joserfc is used directly.
Pure helpers (``peek``, ``identity_from_claims``) take dicts; ``JwksCache`` and ``JwtVerifier``
do the I/O (a file read or one HTTPS GET, rate-limited).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from joserfc import jwt
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwk import Key, KeySet

from gateway.auth.identity import Identity, LimitDefaults
from gateway.errors import TokenError

log = logging.getLogger("gateway.jwt_auth")

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
LIMIT_CLAIMS = {"rpm": "llm_rpm", "tpm": "llm_tpm", "concurrency": "llm_concurrency"}
_MAX_JWKS_BYTES = 1 << 20
_MAX_TOKEN_CHARS = 16 * 1024


class JwtIssuerSettings(Protocol):
    """One ``[[auth.jwt]]`` table (read-only view of the gateway config)."""

    @property
    def issuer(self) -> str: ...
    @property
    def audience(self) -> str: ...
    @property
    def jwks_url(self) -> str | None: ...
    @property
    def jwks_file(self) -> Path | None: ...
    @property
    def jwks_ca(self) -> Path | None: ...
    @property
    def algorithms(self) -> Sequence[str]: ...
    @property
    def identity_claim(self) -> str: ...
    @property
    def models_claim(self) -> str | None: ...
    @property
    def leeway_s(self) -> float: ...
    @property
    def admin_claim(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Peek:
    header: dict[str, Any]
    claims: dict[str, Any]


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and len(token) <= _MAX_TOKEN_CHARS


def peek(token: str) -> Peek:
    """Header and claims WITHOUT verification: only to choose the issuer and the key."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > _MAX_TOKEN_CHARS:
        raise TokenError("malformed")
    return Peek(header=_b64_json(parts[0]), claims=_b64_json(parts[1]))


def _b64_json(segment: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
    # RecursionError: nesting past the recursion limit (bounded: a token is <= 16 KiB)
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise TokenError("malformed") from exc
    if not isinstance(value, dict):
        raise TokenError("malformed")
    return value


def parse_models(value: object) -> frozenset[str] | None:
    """A models claim: a JSON list of names or one space-separated string (like ``scope``)."""
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return frozenset(value)
    raise TokenError("invalid models claim")


def _limit_claim(claims: Mapping[str, Any], claim: str, default: int) -> int:
    value = claims.get(claim)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise TokenError(f"invalid claim {claim!r}")
    return value


def identity_from_claims(
    claims: Mapping[str, Any], settings: JwtIssuerSettings, defaults: LimitDefaults
) -> Identity:
    name = claims.get(settings.identity_claim)
    if not isinstance(name, str) or not name:
        raise TokenError(f"missing claim {settings.identity_claim!r}")
    models = parse_models(claims.get(settings.models_claim)) if settings.models_claim else None
    return Identity(
        name=jwt_identity_name(settings.issuer, name),
        kind="jwt",
        models=models,
        rpm=_limit_claim(claims, LIMIT_CLAIMS["rpm"], defaults.rpm),
        tpm=_limit_claim(claims, LIMIT_CLAIMS["tpm"], defaults.tpm),
        concurrency=_limit_claim(claims, LIMIT_CLAIMS["concurrency"], defaults.concurrency),
        admin=settings.admin_claim is not None and claims.get(settings.admin_claim) is True,
    )


def jwt_identity_name(issuer: str, subject: str) -> str:
    """``jwt:<issuer>:<subject>``, the issuer without its scheme: the same ``sub`` from two
    issuers is two callers (limits, ledger). Key names cannot hold ``:``, so no key collides."""
    label = issuer.removeprefix("https://").removeprefix("http://").rstrip("/")
    return f"jwt:{label}:{subject}"


def check_algorithms(algorithms: Sequence[str]) -> tuple[str, ...]:
    """The allow-list, refusing ``none`` and symmetric (HS*) algorithms: a JWKS is public."""
    bad = [alg for alg in algorithms if alg not in ASYMMETRIC_ALGORITHMS]
    if bad or not algorithms:
        raise ValueError(f"auth.jwt.algorithms: not allowed (asymmetric only): {bad or '[]'}")
    return tuple(algorithms)


def validate_claims(claims: dict[str, Any], settings: JwtIssuerSettings) -> None:
    registry = jwt.JWTClaimsRegistry(
        leeway=math.ceil(settings.leeway_s),
        iss={"essential": True, "value": settings.issuer},
        aud={"essential": True, "value": settings.audience},
        exp={"essential": True},
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError as exc:
        raise TokenError("expired") from exc
    except MissingClaimError as exc:
        raise TokenError(f"missing claim {exc.claim!r}") from exc
    except ClaimError as exc:
        raise TokenError(f"invalid claim {exc.claim!r}") from exc


class JwksCache:
    """One issuer's signing keys, from ``jwks_file`` or ``jwks_url``, fetched again on an
    unknown ``kid`` but not more than once every ``refetch_interval_s``."""

    def __init__(
        self,
        settings: JwtIssuerSettings,
        *,
        refetch_interval_s: float = 5.0,
        max_age_s: float = 3600.0,
    ) -> None:
        if not settings.jwks_url and not settings.jwks_file:
            raise ValueError("auth.jwt: one of jwks_url or jwks_file is required")
        self._settings = settings
        self._refetch_interval_s = refetch_interval_s
        self._max_age_s = max_age_s
        self._keys: KeySet | None = None
        self._fetched_at = -math.inf
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self.fetch_count = 0

    async def key_for(self, kid: str | None) -> Key | None:
        keys = self._keys
        stale = time.monotonic() - self._fetched_at > self._max_age_s
        if keys is None or stale or _find(keys, kid) is None:
            keys = await self._refresh()
        return _find(keys, kid) if keys is not None else None

    async def _refresh(self) -> KeySet | None:
        async with self._lock:
            if time.monotonic() - self._fetched_at < self._refetch_interval_s:
                return self._keys
            self._fetched_at = time.monotonic()
            self.fetch_count += 1
            try:
                self._keys = KeySet.import_key_set(await self._load())  # type: ignore[arg-type]
            except (OSError, ValueError, JoseError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("JWKS for %s not loaded: %s", self._settings.issuer, exc)
            return self._keys

    async def _load(self) -> dict[str, Any]:
        if self._settings.jwks_file:
            raw = await asyncio.to_thread(Path(self._settings.jwks_file).read_bytes)
        else:
            raw = await self._get(str(self._settings.jwks_url))
        value = json.loads(raw)
        if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
            raise ValueError("not a JWK set")  # noqa: TRY004 (bad data, caught with ValueError)
        return value

    async def _get(self, url: str) -> bytes:
        if self._session is None:
            ctx = ssl.create_default_context(
                cafile=str(self._settings.jwks_ca) if self._settings.jwks_ca else None
            )
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ctx),
                timeout=aiohttp.ClientTimeout(total=5.0),
            )
        async with self._session.get(url, allow_redirects=False) as resp:
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status}")
            raw = await resp.content.read(_MAX_JWKS_BYTES + 1)
            if len(raw) > _MAX_JWKS_BYTES:
                raise ValueError("JWKS too large")
            return raw

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _find(keys: KeySet, kid: str | None) -> Key | None:
    try:
        return keys.get_by_kid(kid)
    except JoseError:
        return None


class JwtVerifier:
    """Verifies tokens from one or more issuers, chosen by the token's (unverified) ``iss``."""

    def __init__(
        self,
        issuers: Sequence[JwtIssuerSettings],
        defaults: LimitDefaults,
        *,
        refetch_interval_s: float = 5.0,
    ) -> None:
        self._defaults = defaults
        self._issuers: dict[str, tuple[JwtIssuerSettings, tuple[str, ...], JwksCache]] = {}
        for settings in issuers:
            algorithms = check_algorithms(settings.algorithms)
            cache = JwksCache(settings, refetch_interval_s=refetch_interval_s)
            self._issuers[settings.issuer] = (settings, algorithms, cache)

    def cache_for(self, issuer: str) -> JwksCache:
        return self._issuers[issuer][2]

    async def verify(self, token: str) -> Identity:
        """The token's identity, or ``TokenError`` with a reason safe to show."""
        peeked = peek(token)
        entry = self._issuers.get(str(peeked.claims.get("iss")))
        if entry is None:
            raise TokenError("unknown issuer")
        settings, algorithms, cache = entry
        alg = peeked.header.get("alg")
        if alg not in algorithms:
            raise TokenError("algorithm not allowed")
        kid = peeked.header.get("kid")
        key = await cache.key_for(kid if isinstance(kid, str) else None)
        if key is None:
            raise TokenError("unknown signing key")
        try:
            verified = jwt.decode(token, key, algorithms=list(algorithms))
        except JoseError as exc:
            raise TokenError("bad signature") from exc
        validate_claims(verified.claims, settings)
        return identity_from_claims(verified.claims, settings, self._defaults)

    async def aclose(self) -> None:
        for _, _, cache in self._issuers.values():
            await cache.aclose()
