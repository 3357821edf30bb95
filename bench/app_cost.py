"""What the gateway's own request handling costs, in-process: no Hypercorn, no TLS, no tunnel.

The real public app (:func:`gateway.app.create_app`) with the real key store, limiter (memory://),
usage ledger, metrics and access log answers small chat completions driven straight through
ASGI; only the tunnel pool is a stand-in that hands back a fixed upstream answer at once. The
CPU time per request is the gateway's logic (auth, body parsing and checks, limits, the model
rename, accounting), which together with Hypercorn (the ``floor`` path) and the h2 library
(:mod:`bench.h2_cost`) makes up most of the gateway process's cost in workload (b).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.auth.keystore import KeyStore
from gateway.config import load_config
from gateway.metrics import GatewayMetrics
from gateway.server import build_parts
from tunnel.api import PoolStatus

ALIAS, UPSTREAM, UPSTREAM_MODEL = "m-direct", "bench-direct", "bench-model"
BODY = (
    b'{"model":"m-direct","messages":[{"role":"user","content":"Say hello in five words."}],'
    b'"max_tokens":16}'
)
ANSWER = (
    b'{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,'
    b'"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"Hello from the bench upstream."},"logprobs":null,"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":5,"completion_tokens":5,"total_tokens":10}}'
)
CONFIG = f"""[server]
listen = "127.0.0.1:1"
cert = "unused.crt"
key = "unused.key"

[tunnel]
cert = "unused.crt"
key = "unused.key"
ca = "unused.crt"
crl = "unused.pem"
allowed_connectors = ["office"]

[auth]
keys_db = "gateway.db"

[limits]
storage = "memory://"
rpm = 1000000
tpm = 1000000000
concurrency = 1000

[log]
access_log = "access.log"

[models."{ALIAS}"]
upstream = "{UPSTREAM}"
model = "{UPSTREAM_MODEL}"
"""
Message = MutableMapping[str, Any]


class _Answer:
    """A tunnel response that is already complete."""

    def __init__(self) -> None:
        self.status = 200
        self.headers = [("content-type", "application/json"), ("content-length", str(len(ANSWER)))]
        self._left = ANSWER

    async def read(self) -> bytes:
        data, self._left = self._left, b""
        return data

    async def body(self) -> AsyncIterator[bytes]:
        while data := await self.read():
            yield data

    async def aclose(self) -> None:
        return None


class _Pool:
    """Every request answered at once: the tunnel's cost is :mod:`bench.h2_cost`'s."""

    def __init__(self) -> None:
        self.requests = 0

    async def request(self, *_: object) -> _Answer:
        self.requests += 1
        return _Answer()

    def status(self) -> PoolStatus:
        return PoolStatus()


def _scope(key: str) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {key}".encode()),
        (b"content-length", str(len(BODY)).encode()),
        (b"accept", b"*/*"),
        (b"user-agent", b"bench"),
    ]
    return {
        "type": "http", "method": "POST", "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
        "scheme": "https", "http_version": "1.1", "headers": headers,
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 443), "extensions": {},
        "asgi": {"version": "3.0"}, "state": {},
    }  # fmt: skip


async def _one(app: Any, scope: dict[str, Any]) -> int:
    """One request through ASGI; returns the status."""
    pending: list[Message] = [{"type": "http.request", "body": BODY, "more_body": False}]
    never = asyncio.Event()
    sent: list[Message] = []

    async def receive() -> Message:
        if pending:
            return pending.pop()
        await never.wait()  # no disconnect: the handler finishes first
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(dict(scope), receive, send)
    return int(sent[0]["status"]) if sent else 0


async def measure_async(n: int = 3000, warmup: int = 200) -> dict[str, float]:
    """``us_per_request`` (process CPU per request, after ``warmup`` requests) and ``requests``."""
    if n <= 0:
        raise ValueError(f"n must be positive, not {n}")
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        path = Path(tmp) / "gateway.toml"
        path.write_text(CONFIG, encoding="utf-8")
        store = KeyStore(Path(tmp) / "gateway.db")
        key = store.create("bench", rpm=1_000_000, tpm=1_000_000_000, concurrency=1000)
        store.close()
        config = load_config(path)
        parts = await build_parts(config)
        pool = _Pool()
        try:
            app = create_app(
                config, pool, parts.auth, parts.limiter, parts.ledger, GatewayMetrics(),
                access_log=parts.access_log,
            )  # fmt: skip
            scope = _scope(key)
            for _ in range(warmup):
                await _one(app.asgi_app, scope)
            start = time.process_time()
            statuses = [await _one(app.asgi_app, scope) for _ in range(n)]
            spent = time.process_time() - start
        finally:
            await parts.aclose()
    failed = sum(status != 200 for status in statuses)
    if failed or pool.requests != n + warmup:
        raise RuntimeError(f"{failed} of {n} requests failed in the in-process gateway")
    return {"us_per_request": spent / n * 1e6, "requests": float(n)}


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 3000
    figures = asyncio.run(measure_async(n))
    print(f"gateway app logic: {figures['us_per_request']:.1f} us per request (n={n})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
