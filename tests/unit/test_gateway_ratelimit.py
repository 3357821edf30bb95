"""Rate limits: OpenAI's reset format and 429 texts (pure), and the limiter on memory://."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from gateway.auth.identity import Identity
from gateway.errors import RateLimitedError
from gateway.limits.estimate import estimate_tokens
from gateway.limits.headers import (
    WindowState,
    concurrency_message,
    format_reset,
    ratelimit_headers,
    requests_message,
    retry_after_headers,
    tokens_message,
)
from gateway.limits.limiter import RateLimiter, async_storage_uri

HEADER_NAMES = {
    "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
}  # fmt: skip
RESET = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d+)?s|\d+ms)$")


def who(name: str = "alice", rpm: int = 60, tpm: int = 1000, concurrency: int = 4) -> Identity:
    return Identity(name, "key", None, rpm, tpm, concurrency)


@pytest.fixture
async def limiter() -> AsyncIterator[RateLimiter]:
    lim = RateLimiter("memory://")
    yield lim
    await lim.aclose()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"), (0.0004, "0s"), (0.012, "12ms"), (0.999, "999ms"), (1, "1s"),
        (1.574, "1.574s"), (1.5, "1.5s"), (20.0, "20s"), (59.9996, "1m0s"), (60, "1m0s"),
        (360, "6m0s"), (361.25, "6m1.25s"), (3723, "1h2m3s"), (3600, "1h0m0s"),
        (-3, "0s"), (float("inf"), "0s"),
    ],
)  # fmt: skip
def test_format_reset(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


def test_retry_after_headers_round_up() -> None:
    assert retry_after_headers(1.574) == {"retry-after": "2", "retry-after-ms": "1574"}
    assert retry_after_headers(0.0) == {"retry-after": "1", "retry-after-ms": "1"}
    assert retry_after_headers(60) == {"retry-after": "60", "retry-after-ms": "60000"}


def test_messages_like_openai() -> None:
    assert requests_message("alice", 60, 60, 1, 1.574) == (
        "Rate limit reached for alice on requests per min (RPM): Limit 60, Used 60, "
        "Requested 1. Please try again in 1.574s."
    )
    assert tokens_message("bob", 10000, 9800, 500, 360) == (
        "Rate limit reached for bob on tokens per min (TPM): Limit 10000, Used 9800, "
        "Requested 500. Please try again in 6m0s."
    )
    assert concurrency_message("carol", 4) == (
        "Too many concurrent requests for carol: Limit 4. Please try again shortly."
    )


def test_ratelimit_headers() -> None:
    headers = ratelimit_headers(WindowState(60, 59, 1.0), WindowState(1000, -5, 0.012))
    assert headers == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "12ms",
    }


def test_storage_uri_mapping() -> None:
    assert async_storage_uri("memory://") == "async+memory://"
    assert async_storage_uri("redis://h:6379/0") == "async+redis://h:6379/0"
    with pytest.raises(ValueError, match="unsupported"):
        async_storage_uri("mongodb://x")


@pytest.mark.parametrize(
    ("body", "tokens"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x" * 396}]}, 100),
        ({"messages": [{"role": "user", "content": "abcd"}], "max_tokens": 50}, 52),
        ({"messages": [{"content": [{"type": "text", "text": "y" * 8}]}]}, 3),
        ({"prompt": "z" * 10, "max_tokens": 16, "n": 2}, 3 + 32),
        ({"prompt": ["aaaa", "bbbb"]}, 2),
        ({"input": "q" * 40, "max_output_tokens": 7}, 17),
        ({"messages": [], "max_completion_tokens": 9, "max_tokens": 100}, 9),
        ({"messages": [{"content": [{"type": "image_url", "image_url": {"url": "d" * 4000}}]}]}, 3),
        ({}, 0),
        ({"max_tokens": True, "n": "x"}, 0),
    ],
)  # fmt: skip
def test_estimate_tokens(body: dict[str, object], tokens: int) -> None:
    assert estimate_tokens(body) == tokens


async def test_rpm_burst_gets_429_with_headers(limiter: RateLimiter) -> None:
    alice = who(rpm=3)
    for left in (2, 1, 0):
        admission = await limiter.admit(alice, 1)
        assert set(admission.headers) == HEADER_NAMES
        assert admission.headers["x-ratelimit-remaining-requests"] == str(left)
        assert admission.headers["x-ratelimit-limit-requests"] == "3"
        assert RESET.match(admission.headers["x-ratelimit-reset-requests"])
        await admission.release()
    with pytest.raises(RateLimitedError) as info:
        await limiter.admit(alice, 1)
    err = info.value
    assert err.message.startswith(
        "Rate limit reached for alice on requests per min (RPM): Limit 3, Used 3, Requested 1."
    )
    assert err.kind == "requests"
    assert 59 < err.retry_after_s <= 60
    assert err.headers["retry-after"] == "60"
    assert err.headers["x-ratelimit-remaining-requests"] == "0"
    assert set(err.headers) >= HEADER_NAMES
    # another identity is not affected
    await (await limiter.admit(who("bob", rpm=3), 1)).release()


async def test_tpm_charge_blocks_next_request(limiter: RateLimiter) -> None:
    alice = who(tpm=1000)
    admission = await limiter.admit(alice, 100)
    assert admission.headers["x-ratelimit-remaining-tokens"] == "1000"  # nothing charged yet
    await admission.charge(prompt_tokens=700, completion_tokens=250)
    await admission.release()
    assert (await limiter.headers_for(alice))["x-ratelimit-remaining-tokens"] == "50"
    with pytest.raises(RateLimitedError) as info:
        await limiter.admit(alice, 100)
    assert info.value.message.startswith(
        "Rate limit reached for alice on tokens per min (TPM): Limit 1000, Used 950, Requested 100."
    )
    assert int(info.value.headers["retry-after"]) >= 1
    assert info.value.kind == "tokens"
    # a small request still fits the 50 left
    await (await limiter.admit(alice, 40)).release()


async def test_over_budget_charge_saturates_window(limiter: RateLimiter) -> None:
    alice = who(tpm=1000)
    admission = await limiter.admit(alice, 10)
    await admission.charge(prompt_tokens=1500, completion_tokens=500)  # more than the limit
    assert (await limiter.headers_for(alice))["x-ratelimit-remaining-tokens"] == "0"
    with pytest.raises(RateLimitedError, match="TPM"):
        await limiter.admit(alice, 1)


async def test_huge_request_runs_on_an_empty_window(limiter: RateLimiter) -> None:
    await (await limiter.admit(who(tpm=1000), 5000)).release()


async def test_concurrency_holds_under_20_parallel_admits(limiter: RateLimiter) -> None:
    alice = who(rpm=0, tpm=0, concurrency=4)
    gate = asyncio.Event()
    inside = 0
    peak = 0

    async def one() -> str:
        nonlocal inside, peak
        try:
            admission = await limiter.admit(alice, 1)
        except RateLimitedError as exc:
            return exc.message
        inside += 1
        peak = max(peak, inside)
        await gate.wait()
        inside -= 1
        await admission.release()
        return "ok"

    tasks = [asyncio.create_task(one()) for _ in range(20)]
    while sum(t.done() for t in tasks) < 16:
        await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert results.count("ok") == 4
    assert peak == 4
    assert results.count(concurrency_message("alice", 4)) == 16
    # all released: 4 more fit again
    admissions = [await limiter.admit(alice, 1) for _ in range(4)]
    for a in admissions:
        await a.release()
        await a.release()  # idempotent
    await (await limiter.admit(alice, 1)).release()


async def test_rejected_concurrency_has_retry_after(limiter: RateLimiter) -> None:
    alice = who(concurrency=1)
    held = await limiter.admit(alice, 1)
    with pytest.raises(RateLimitedError) as info:
        await limiter.admit(alice, 1)
    assert info.value.headers["retry-after"] == "1"
    assert info.value.kind == "concurrency"
    await held.release()


async def test_zero_means_unlimited(limiter: RateLimiter) -> None:
    free = who(rpm=0, tpm=0, concurrency=0)
    for _ in range(50):
        admission = await limiter.admit(free, 10**6)
        await admission.charge(10**6, 10**6)
    assert admission.headers["x-ratelimit-limit-requests"] == "0"
