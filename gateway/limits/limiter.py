"""Per-identity limits with the ``limits`` library: RPM, TPM and concurrent requests.

Storage is ``[limits] storage``: ``memory://`` (one process) or ``redis://host:port/db``
(several gateways share one limit). Requests use a moving window (exact counts); tokens use a
sliding window counter (two counters, so a cost of 100k tokens stays cheap). Concurrency is a
slot set: in-process for memory, a Redis sorted set (one member per request, scored by time,
so a crashed gateway's slots expire after ``slot_ttl_s``) for Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any, Protocol

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from gateway.auth.identity import Identity, LimitsSettings
from gateway.errors import RateLimitedError
from gateway.limits.headers import (
    WindowState,
    concurrency_message,
    ratelimit_headers,
    requests_message,
    retry_after_headers,
    tokens_message,
)
from gateway.limits.memory import SweptMemoryStorage

_CHARGE_ATTEMPTS = 3
_ACQUIRE_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


def async_storage_uri(uri: str) -> str:
    """Map the config's ``memory://`` / ``redis://`` to the limits library's async schemes."""
    if uri.startswith("async+"):
        return uri
    scheme = uri.partition("://")[0]
    if scheme not in {"memory", "redis", "rediss", "redis+unix"}:
        raise ValueError(f"limits.storage: unsupported scheme {scheme!r} (memory://, redis://)")
    return "async+" + uri


class _Slots(Protocol):
    async def acquire(self, key: str, limit: int) -> str | None: ...
    async def release(self, key: str, token: str) -> None: ...
    async def aclose(self) -> None: ...


class MemorySlots:
    """Concurrency slots held in this process."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}

    async def acquire(self, key: str, limit: int) -> str | None:
        if self._held.get(key, 0) >= limit:
            return None
        self._held[key] = self._held.get(key, 0) + 1
        return key

    async def release(self, key: str, token: str) -> None:
        left = self._held.get(key, 0) - 1
        if left > 0:
            self._held[key] = left
        else:
            self._held.pop(key, None)

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    async def aclose(self) -> None:
        self._held.clear()


class RedisSlots:
    """Concurrency slots in Redis, through the limits storage's own (coredis) client."""

    def __init__(self, storage: RedisStorage, slot_ttl_s: int = 900) -> None:
        bridge: Any = storage.bridge  # the coredis bridge exposes its client
        self._client: Any = bridge.get_connection()
        self._acquire = self._client.register_script(_ACQUIRE_LUA)
        self._ttl_s = slot_ttl_s

    async def acquire(self, key: str, limit: int) -> str | None:
        token = uuid.uuid4().hex
        args = [time.time(), self._ttl_s, limit, token]
        ok = await self._acquire.execute([f"gw:slots:{key}"], args)
        return token if ok else None

    async def release(self, key: str, token: str) -> None:
        await self._client.zrem(f"gw:slots:{key}", [token])

    async def aclose(self) -> None:
        self._client.connection_pool.disconnect()


class Admission:
    """An admitted request: its ``x-ratelimit-*`` headers, a token charge, a slot to release."""

    def __init__(
        self, limiter: RateLimiter, identity: Identity, slot: str | None, headers: dict[str, str]
    ) -> None:
        self.headers = headers
        self._limiter = limiter
        self._identity = identity
        self._slot = slot
        self._released = False

    async def charge(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Charge the upstream's real usage; saturates the window rather than dropping it."""
        await self._limiter.charge_tokens(self._identity, prompt_tokens + completion_tokens)

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._slot is not None:
            await self._limiter.release_slot(self._identity, self._slot)


class RateLimiter:
    def __init__(self, storage_uri: str = "memory://") -> None:
        uri = async_storage_uri(storage_uri)
        storage = SweptMemoryStorage() if uri == "async+memory://" else storage_from_string(uri)
        assert isinstance(storage, Storage)
        self._storage = storage
        self._requests = MovingWindowRateLimiter(storage)
        self._tokens = SlidingWindowCounterRateLimiter(storage)
        self._slots: _Slots = (
            RedisSlots(storage) if isinstance(storage, RedisStorage) else MemorySlots()
        )

    @classmethod
    def from_config(cls, cfg: _HasLimits) -> RateLimiter:
        return cls(cfg.limits.storage)

    async def admit(self, identity: Identity, requested_tokens: int) -> Admission:
        """Check tokens, count the request, take a concurrency slot; the headers come from the
        same reads (three storage calls for a request that passes)."""
        key = _key(identity)
        rpm, tpm = _item(identity.rpm), _item(identity.tpm)
        tokens = _UNLIMITED
        if tpm is not None:
            tokens = await self._check_tokens(identity, tpm, requested_tokens)
        if rpm is not None and not await self._requests.hit(rpm, key):
            state = await self._state(self._requests, rpm, key)
            raise RateLimitedError(
                requests_message(
                    identity.name, rpm.amount, rpm.amount - state.remaining, 1, state.reset_s
                ),
                state.reset_s,
                await self._error_headers(identity, state.reset_s),
            )
        slot = None
        if identity.concurrency > 0:
            slot = await self._slots.acquire(key, identity.concurrency)
            if slot is None:
                raise RateLimitedError(
                    concurrency_message(identity.name, identity.concurrency),
                    1.0,
                    await self._error_headers(identity, 1.0),
                    kind="concurrency",
                )
        try:
            requests = await self._state(self._requests, rpm, key) if rpm else _UNLIMITED
        except BaseException:  # cancelled, or the storage failed: the slot is not ours to keep
            if slot is not None:
                await self._slots.release(key, slot)
            raise
        return Admission(self, identity, slot, ratelimit_headers(requests, tokens))

    async def _check_tokens(
        self, identity: Identity, tpm: RateLimitItem, requested: int
    ) -> WindowState:
        """The token window as it stands (tokens are charged when the answer is known), or
        RateLimitedError when the estimate does not fit. ``remaining`` is the limits library's
        floored count, the same test its ``hit`` applies when the tokens are charged."""
        # A request larger than the whole budget may still run when the window is empty.
        cost = max(1, min(requested, tpm.amount))
        state = await self._state(self._tokens, tpm, _key(identity))
        if state.remaining >= cost:
            return state
        raise RateLimitedError(
            tokens_message(
                identity.name, tpm.amount, tpm.amount - state.remaining, requested, state.reset_s
            ),
            state.reset_s,
            await self._error_headers(identity, state.reset_s),
            kind="tokens",
        )

    async def charge_tokens(self, identity: Identity, tokens: int) -> None:
        tpm = _item(identity.tpm)
        if tpm is None or tokens <= 0:
            return
        if tokens <= tpm.amount and await self._tokens.hit(tpm, _key(identity), cost=tokens):
            return  # the usual case: it fits, one storage call
        for _ in range(_CHARGE_ATTEMPTS):
            state = await self._state(self._tokens, tpm, _key(identity))
            cost = min(tokens, state.remaining)
            if cost <= 0 or await self._tokens.hit(tpm, _key(identity), cost=cost):
                return

    async def release_slot(self, identity: Identity, slot: str) -> None:
        await self._slots.release(_key(identity), slot)

    async def headers_for(self, identity: Identity) -> dict[str, str]:
        key = _key(identity)
        rpm, tpm = _item(identity.rpm), _item(identity.tpm)
        req = await self._state(self._requests, rpm, key) if rpm else _UNLIMITED
        tok = await self._state(self._tokens, tpm, key) if tpm else _UNLIMITED
        return ratelimit_headers(req, tok)

    async def _error_headers(self, identity: Identity, retry_after_s: float) -> dict[str, str]:
        return {**retry_after_headers(retry_after_s), **await self.headers_for(identity)}

    @staticmethod
    async def _state(
        strategy: MovingWindowRateLimiter | SlidingWindowCounterRateLimiter,
        item: RateLimitItem,
        key: str,
    ) -> WindowState:
        stats = await strategy.get_window_stats(item, key)
        remaining = max(0, min(item.amount, stats.remaining))
        reset_s = max(0.0, stats.reset_time - time.time()) if remaining < item.amount else 0.0
        return WindowState(limit=item.amount, remaining=remaining, reset_s=reset_s)

    async def aclose(self) -> None:
        await self._slots.aclose()
        timer = getattr(self._storage, "timer", None)
        if isinstance(self._storage, MemoryStorage) and isinstance(timer, asyncio.Task):
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer


class _HasLimits(Protocol):
    @property
    def limits(self) -> LimitsSettings: ...


_UNLIMITED = WindowState(limit=0, remaining=0, reset_s=0.0)


def _key(identity: Identity) -> str:
    return f"{identity.kind}:{identity.name}"


def _item(per_minute: int) -> RateLimitItem | None:
    return RateLimitItemPerMinute(per_minute) if per_minute > 0 else None
