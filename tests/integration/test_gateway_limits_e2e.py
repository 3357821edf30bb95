"""Limits end to end with the official ``openai`` SDK against real gateways: an RPM burst gets
OpenAI's 429 with the retry-after the SDK reads, tokens charged from a streamed usage block the
next request, the concurrency limit holds under 20 parallel requests, and two gateway processes
sharing one real Redis enforce one limit together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import openai
import pytest

from tests.integration.test_gateway_auth_e2e import ALIAS, Stack, chat
from tests.support.redisproc import RedisServer

RATE_HEADERS = (
    "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
)  # fmt: skip


def api_message(exc: openai.APIStatusError) -> str:
    """The gateway's own error message (the SDK prefixes ``exc.message``)."""
    body = exc.body
    assert isinstance(body, dict)
    return str(body["message"])


async def upstream_got_a_chat(upstream_url: str, timeout_s: float = 10.0) -> None:
    async with httpx.AsyncClient() as raw, asyncio.timeout(timeout_s):
        while True:
            records = (await raw.get(f"{upstream_url}/_standin/requests")).json()
            if any(r["path"] == "/v1/chat/completions" for r in records):
                return
            await asyncio.sleep(0.02)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with AsyncExitStack() as exits:
        yield await Stack(tmp_path, exits).start()


async def test_rpm_burst_gets_429_that_the_sdk_reads(stack: Stack) -> None:
    gw = await stack.gateway()
    key = gw.keys("create", "alice", "--rpm", "3")
    async with gw.client(key) as client:
        for left in ("2", "1", "0"):
            raw = await client.chat.completions.with_raw_response.create(
                model=ALIAS, messages=[{"role": "user", "content": "hi"}]
            )
            assert all(name in raw.headers for name in RATE_HEADERS)
            assert raw.headers["x-ratelimit-limit-requests"] == "3"
            assert raw.headers["x-ratelimit-remaining-requests"] == left
        with pytest.raises(openai.RateLimitError) as info:
            await chat(client)
        err = info.value
        assert err.status_code == 429
        assert err.code == "rate_limit_exceeded"
        assert api_message(err).startswith(
            "Rate limit reached for alice on requests per min (RPM): Limit 3, Used 3, Requested 1."
        )
        headers = err.response.headers
        assert 1 <= int(headers["retry-after"]) <= 60
        assert headers["x-ratelimit-remaining-requests"] == "0"
        waited = client._parse_retry_after_header(headers)  # what the SDK would sleep
        assert waited is not None
        assert 0 < waited <= 60


async def test_tokens_from_a_streamed_usage_block_the_next_request(stack: Stack) -> None:
    gw = await stack.gateway()
    key = gw.keys("create", "bob", "--tpm", "60")
    async with gw.client(key) as client:
        chunks = []
        stream = await client.chat.completions.create(
            model=ALIAS, messages=[{"role": "user", "content": "count to fifty"}], stream=True,
            extra_body={"standin": {"chunks": 50}},
        )  # fmt: skip
        async for chunk in stream:
            chunks.append(chunk)
        assert all(c.usage is None for c in chunks)  # the client did not ask for usage
        with pytest.raises(openai.RateLimitError) as info:
            await chat(client, max_tokens=20)
    # 3 prompt words + 50 completion tokens were charged, so 7 remain
    assert "tokens per min (TPM): Limit 60, Used 53, Requested" in api_message(info.value)
    assert info.value.response.headers["x-ratelimit-remaining-tokens"] == "7"


async def test_concurrency_holds_under_20_parallel_requests(stack: Stack) -> None:
    gw = await stack.gateway()
    key = gw.keys("create", "carol", "--concurrency", "4")
    async with gw.client(key) as client:

        async def one() -> str:
            try:
                await chat(client, extra_body={"standin": {"first_delay_ms": 2500}})
            except openai.RateLimitError as exc:
                return api_message(exc)
            return "ok"

        results = await asyncio.gather(*(one() for _ in range(20)))
        assert results.count("ok") == 4
        refused = "Too many concurrent requests for carol: Limit 4. Please try again shortly."
        assert results.count(refused) == 16
        # the slots came back when the answers ended
        assert await chat(client)


async def test_the_sdk_retries_after_a_concurrency_429(stack: Stack) -> None:
    gw = await stack.gateway()
    key = gw.keys("create", "dave", "--concurrency", "1")
    async with gw.client(key, max_retries=0) as holder, gw.client(key, max_retries=3) as retrier:
        slow = asyncio.create_task(chat(holder, extra_body={"standin": {"first_delay_ms": 800}}))
        await upstream_got_a_chat(stack.upstream_url)  # the slow one holds the only slot
        assert await chat(retrier)  # 429, retry-after 1 s, then admitted
        assert await slow


async def test_two_gateways_sharing_redis_enforce_one_limit(stack: Stack, tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as redis:
        first = await stack.gateway("gateway-a", storage=redis.url)
        second = await stack.gateway("gateway-b", storage=redis.url)
        key = first.keys("create", "erin", "--rpm", "4")  # both share keys_db too
        async with first.client(key) as a, second.client(key) as b:
            for client in (a, b, a, b):
                assert await chat(client)
            for client in (a, b):
                with pytest.raises(openai.RateLimitError, match="Limit 4, Used 4"):
                    await chat(client)
