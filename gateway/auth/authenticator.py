"""Bearer authentication: API keys from the key store, or JWTs from configured issuers.

Every failure is an :class:`~gateway.errors.AuthError` whose message is safe to return as a 401
(``invalid_api_key``); the token itself is never logged nor echoed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from gateway.auth.identity import Identity, LimitDefaults, LimitsSettings, defaults_from
from gateway.auth.jwt import JwtIssuerSettings, JwtVerifier, looks_like_jwt
from gateway.auth.keystore import KEY_PREFIX, KeyRecord, KeyStore, hash_key
from gateway.errors import AuthError, TokenError

log = logging.getLogger("gateway.auth")

NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
BAD_KEY_MESSAGE = "Incorrect API key provided."
_CACHE_SIZE = 4096
VERSION_RECHECK_S = 0.25  # how often the key cache asks SQLite whether anything changed


class _AuthSettings(Protocol):
    @property
    def keys_db(self) -> Path: ...
    @property
    def jwt(self) -> Sequence[JwtIssuerSettings]: ...


class AuthenticatorSettings(Protocol):
    """The parts of ``GatewayConfig`` the authenticator reads."""

    @property
    def auth(self) -> _AuthSettings: ...
    @property
    def limits(self) -> LimitsSettings: ...


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 §2.1)."""
    if not authorization:
        raise AuthError(NO_KEY_MESSAGE)
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError(NO_KEY_MESSAGE)
    return token


def identity_from_record(record: KeyRecord, defaults: LimitDefaults) -> Identity:
    return Identity(
        name=record.name,
        kind="key",
        models=record.models,
        rpm=record.rpm if record.rpm is not None else defaults.rpm,
        tpm=record.tpm if record.tpm is not None else defaults.tpm,
        concurrency=record.concurrency if record.concurrency is not None else defaults.concurrency,
    )


class Authenticator:
    """Turns an ``Authorization`` header into an ``Identity``.

    Key lookups (identities included) are cached in memory, and the whole cache is dropped
    whenever SQLite's ``PRAGMA data_version`` moves (any commit by another connection, e.g.
    ``keys revoke``). That counter is read at most every ``recheck_s`` (not once per request),
    so a revocation reaches a running gateway within that time.
    """

    def __init__(
        self,
        keys: KeyStore | None,
        jwt_verifier: JwtVerifier | None,
        defaults: LimitDefaults,
        *,
        recheck_s: float = VERSION_RECHECK_S,
    ) -> None:
        self._keys = keys
        self._jwt = jwt_verifier
        self._defaults = defaults
        self._cache: dict[str, tuple[KeyRecord, Identity] | None] = {}
        self._cache_version = -1
        self._recheck_s = recheck_s
        self._checked_at = -math.inf

    @classmethod
    def from_config(cls, cfg: AuthenticatorSettings) -> Authenticator:
        defaults = defaults_from(cfg.limits)
        issuers = tuple(cfg.auth.jwt)
        verifier = JwtVerifier(issuers, defaults) if issuers else None
        return cls(KeyStore(Path(cfg.auth.keys_db)), verifier, defaults)

    async def authenticate(self, authorization: str | None) -> Identity:
        token = bearer_token(authorization)
        if token.startswith(KEY_PREFIX) and self._keys is not None:
            return self._from_key(token)
        if self._jwt is not None and looks_like_jwt(token):
            try:
                return await self._jwt.verify(token)
            except TokenError as exc:
                log.info("bearer token refused: %s", exc.reason)
                raise AuthError(f"Invalid bearer token: {exc.reason}") from None
        raise AuthError(BAD_KEY_MESSAGE)

    def _from_key(self, secret: str) -> Identity:
        found = self._lookup(secret)
        if found is None:
            raise AuthError(BAD_KEY_MESSAGE)
        record, identity = found
        if record.revoked is not None:
            raise AuthError(BAD_KEY_MESSAGE)
        if record.expires is not None and record.is_expired(datetime.now(UTC).date()):
            raise AuthError("Incorrect API key provided: the key has expired.")
        return identity

    def _lookup(self, secret: str) -> tuple[KeyRecord, Identity] | None:
        assert self._keys is not None
        now = time.monotonic()
        if now - self._checked_at >= self._recheck_s or len(self._cache) >= _CACHE_SIZE:
            self._checked_at = now
            version = self._keys.data_version()
            if version != self._cache_version or len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
                self._cache_version = version
        digest = hash_key(secret)  # the cache holds no secrets
        try:
            return self._cache[digest]
        except KeyError:
            pass
        record = self._keys.lookup(secret)
        found = None if record is None else (record, identity_from_record(record, self._defaults))
        self._cache[digest] = found
        return found

    async def aclose(self) -> None:
        if self._jwt is not None:
            await self._jwt.aclose()
        if self._keys is not None:
            self._keys.close()
