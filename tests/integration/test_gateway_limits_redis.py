"""Two RateLimiter instances (two gateways) sharing a real, private redis-server enforce one
limit together: requests, tokens and concurrent slots."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.auth.identity import Identity
from gateway.errors import RateLimitedError
from gateway.limits.limiter import RateLimiter
from tests.support.redisproc import RedisServer

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed"
)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with RedisServer(tmp_path / "redis") as server:
        yield server.url


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[tuple[RateLimiter, RateLimiter]]:
    first, second = RateLimiter(redis_url), RateLimiter(redis_url)
    yield first, second
    await first.aclose()
    await second.aclose()


def who(rpm: int = 0, tpm: int = 0, concurrency: int = 0) -> Identity:
    return Identity("alice", "key", None, rpm, tpm, concurrency)


async def test_shared_rpm(pair: tuple[RateLimiter, RateLimiter]) -> None:
    a, b = pair
    alice = who(rpm=5)
    for limiter in (a, b, a, b, a):
        await (await limiter.admit(alice, 1)).release()
    for limiter in (a, b):
        with pytest.raises(RateLimitedError) as info:
            await limiter.admit(alice, 1)
        assert "Limit 5, Used 5, Requested 1" in info.value.message
        assert info.value.headers["x-ratelimit-remaining-requests"] == "0"
        assert 1 <= int(info.value.headers["retry-after"]) <= 60


async def test_tokens_charged_on_one_block_the_other(
    pair: tuple[RateLimiter, RateLimiter],
) -> None:
    a, b = pair
    alice = who(tpm=1000)
    admission = await a.admit(alice, 10)
    await admission.charge(600, 380)
    await admission.release()
    assert (await b.headers_for(alice))["x-ratelimit-remaining-tokens"] == "20"
    with pytest.raises(RateLimitedError, match=r"TPM\): Limit 1000, Used 980, Requested 50"):
        await b.admit(alice, 50)


async def test_concurrency_across_two_gateways(pair: tuple[RateLimiter, RateLimiter]) -> None:
    a, b = pair
    alice = who(concurrency=4)
    gate = asyncio.Event()
    admitted: list[object] = []

    async def one(limiter: RateLimiter) -> bool:
        try:
            admission = await limiter.admit(alice, 1)
        except RateLimitedError:
            return False
        admitted.append(admission)
        await gate.wait()
        await admission.release()
        return True

    tasks = [asyncio.create_task(one(a if i % 2 else b)) for i in range(20)]
    async with asyncio.timeout(10):
        while sum(t.done() for t in tasks) < 16:
            await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert results.count(True) == 4
    # every slot came back: four fit again, through either gateway
    again = [await (a if i % 2 else b).admit(alice, 1) for i in range(4)]
    with pytest.raises(RateLimitedError, match="Too many concurrent requests for alice: Limit 4"):
        await a.admit(alice, 1)
    for admission in again:
        await admission.release()
