"""The one load client used for every path (aiohttp, HTTP/1.1 keep-alive pool).

Each function takes an :class:`Endpoint` and returns raw samples; the arithmetic is in
:mod:`bench.stats`. The client runs in the bench's own process, apart from every server it loads.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp

from bench.stats import sent_timestamp_ns

REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Endpoint:
    """One path to the same answers: where to send, which model name, which credential."""

    name: str
    base_url: str
    model: str
    authorization: str = ""
    ssl_context: ssl.SSLContext | None = None

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.authorization:
            headers["authorization"] = self.authorization
        return headers

    def chat_body(self, stream: bool = False, chunks: int = 5, pace_ms: float = 0.0) -> bytes:
        body: dict[str, object] = {
            "model": self.model,
            "messages": [{"role": "user", "content": "Say hello in five words."}],
            "max_tokens": 16,
        }
        if stream:
            body["stream"] = True
            body["standin"] = {"chunks": chunks, "pace_ms": pace_ms, "timestamps": True}
        return json.dumps(body).encode()


@dataclass
class Sample:
    """Latencies (s) of the requests that succeeded, and what went wrong with the others."""

    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def fail(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


@dataclass
class StreamResult:
    ok: bool
    started_ns: int
    first_ns: int | None = None
    ended_ns: int | None = None
    pairs: list[tuple[int, int]] = field(default_factory=list)  # (sent_ns, received_ns)
    error: str = ""

    @property
    def chunks(self) -> int:
        return len(self.pairs)


@asynccontextmanager
async def session_for(endpoint: Endpoint, pool: int) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(
        limit=pool, ssl=endpoint.ssl_context or False, keepalive_timeout=60, ttl_dns_cache=None
    )
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(
        base_url=endpoint.base_url, connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        yield session


async def chat_once(session: aiohttp.ClientSession, endpoint: Endpoint, body: bytes) -> str:
    """One small non-streamed chat completion; returns "" on success, else an error kind."""
    try:
        async with session.post(
            "/v1/chat/completions", data=body, headers=endpoint.headers()
        ) as resp:
            await resp.read()
            return "" if resp.status == 200 else f"status {resp.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__


async def sequential(endpoint: Endpoint, count: int) -> Sample:
    """(a) one request at a time over one kept-alive connection."""
    sample = Sample()
    body = endpoint.chat_body()
    async with session_for(endpoint, 1) as session:
        for _ in range(3):  # warm the connection and the TLS session
            await chat_once(session, endpoint, body)
        begin = time.perf_counter()
        for _ in range(count):
            start = time.perf_counter()
            error = await chat_once(session, endpoint, body)
            if error:
                sample.fail(error)
            else:
                sample.latencies_s.append(time.perf_counter() - start)
        sample.elapsed_s = time.perf_counter() - begin
    return sample


async def closed_loop(
    endpoint: Endpoint,
    concurrency: int,
    seconds: float,
    warmup_s: float = 1.0,
    *,
    on_measure: Callable[[], None] | None = None,
    on_done: Callable[[], None] | None = None,
) -> Sample:
    """(b) ``concurrency`` workers, each sending the next request when the last one ends.

    Requests that end after the warm-up are counted; ``on_measure`` is called when counting
    starts and ``on_done`` when the last counted request has ended (before the connections
    close), so that what they sample covers exactly the measured window."""
    sample = Sample()
    body = endpoint.chat_body()
    async with session_for(endpoint, concurrency) as session:
        measuring = False
        deadline = time.perf_counter() + warmup_s + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                error = await chat_once(session, endpoint, body)
                if not measuring:
                    continue
                if error:
                    sample.fail(error)
                else:
                    sample.latencies_s.append(time.perf_counter() - start)

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await asyncio.sleep(warmup_s)
        measuring = True
        if on_measure is not None:
            on_measure()
        begin = time.perf_counter()
        await asyncio.gather(*workers)
        sample.elapsed_s = time.perf_counter() - begin
        if on_done is not None:
            on_done()
    return sample


async def stream_once(
    session: aiohttp.ClientSession, endpoint: Endpoint, chunks: int, pace_ms: float
) -> StreamResult:
    """One streamed chat completion; records when each timestamped chunk arrived."""
    result = StreamResult(ok=False, started_ns=time.monotonic_ns())
    body = endpoint.chat_body(stream=True, chunks=chunks, pace_ms=pace_ms)
    try:
        async with session.post(
            "/v1/chat/completions", data=body, headers=endpoint.headers()
        ) as resp:
            if resp.status != 200:
                result.error = f"status {resp.status}"
                await resp.read()
                return result
            async for line in resp.content:
                received = time.monotonic_ns()
                sent = sent_timestamp_ns(line)
                if sent is not None:
                    if result.first_ns is None:
                        result.first_ns = received
                    result.pairs.append((sent, received))
        result.ended_ns = time.monotonic_ns()
    except (aiohttp.ClientError, TimeoutError) as exc:
        result.error = type(exc).__name__
        return result
    result.ok = result.chunks == chunks
    if not result.ok:
        result.error = f"got {result.chunks} of {chunks} chunks"
    return result


async def streams(
    endpoint: Endpoint, count: int, concurrency: int, chunks: int, pace_ms: float
) -> list[StreamResult]:
    """``count`` streams, ``concurrency`` at a time."""
    results: list[StreamResult] = []
    async with session_for(endpoint, concurrency) as session:
        await stream_once(session, endpoint, 5, 0.0)  # warm-up
        remaining = count
        while remaining > 0:
            batch = min(concurrency, remaining)
            done = await asyncio.gather(
                *(stream_once(session, endpoint, chunks, pace_ms) for _ in range(batch))
            )
            results.extend(done)
            remaining -= batch
    return results


async def upload(endpoint: Endpoint, size: int, block: int = 1 << 20) -> tuple[float, str]:
    """(f) POST ``size`` bytes to /v1/bulk/upload; returns (seconds, error)."""
    payload = bytes(block)

    async def body() -> AsyncIterator[bytes]:
        remaining = size
        while remaining > 0:
            piece = payload[: min(block, remaining)]
            remaining -= len(piece)
            yield piece

    headers = endpoint.headers() | {"content-type": "application/octet-stream"}
    headers["content-length"] = str(size)
    async with session_for(endpoint, 1) as session:
        start = time.perf_counter()
        try:
            async with session.post("/v1/bulk/upload", data=body(), headers=headers) as resp:
                answer = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return time.perf_counter() - start, type(exc).__name__
        elapsed = time.perf_counter() - start
    if resp.status != 200:
        return elapsed, f"status {resp.status}"
    counted = json.loads(answer).get("bytes")
    return elapsed, "" if counted == size else f"upstream counted {counted} bytes"


async def download(endpoint: Endpoint, size: int) -> tuple[float, str]:
    """(f) GET ``size`` bytes from /v1/bulk/download; returns (seconds, error)."""
    async with session_for(endpoint, 1) as session:
        start = time.perf_counter()
        received = 0
        try:
            async with session.get(
                f"/v1/bulk/download?bytes={size}", headers=endpoint.headers()
            ) as resp:
                if resp.status != 200:
                    return time.perf_counter() - start, f"status {resp.status}"
                async for piece in resp.content.iter_any():
                    received += len(piece)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return time.perf_counter() - start, type(exc).__name__
        elapsed = time.perf_counter() - start
    return elapsed, "" if received == size else f"received {received} bytes"
