"""The ``floor``: a bare ASGI app on Hypercorn over the same TLS as the gateway.

It answers the benchmark's requests itself (no auth, no tunnel, no upstream), so what it reaches
is what the Python stack (Hypercorn, ssl, the event loop) costs: the practical limit for the
gateway. Same wire format as :mod:`bench.fast_upstream` (timestamped SSE chunks included).

``python -m bench.floor_app --port P --cert C --key K``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from hypercorn.asyncio import serve
from hypercorn.config import Config

from bench.fast_upstream import (
    DOWNLOAD_BLOCK,
    MAX_JSON_BYTES,
    MODEL,
    answer_json,
    sse_event,
    stream_controls,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ANSWER = answer_json()
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def _read_body(receive: Receive) -> tuple[bytes, int]:
    body = bytearray()
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= MAX_JSON_BYTES:
            body += chunk
        if not message.get("more_body"):
            return bytes(body), size


async def _respond(send: Send, status: int, body: bytes, headers: list[Any]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _content(i: int, include_usage: bool) -> bytes:
    piece = b'{"index":0,"delta":{"content":"w%d@t=%d "},"logprobs":null,"finish_reason":null}' % (
        i,
        time.monotonic_ns(),
    )
    return sse_event(piece, b',"usage":null' if include_usage else b"")


async def _stream(send: Send, chunks: int, pace_ms: float, include_usage: bool) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    start = time.monotonic()
    for i in range(chunks):
        if pace_ms > 0:
            delay = start + i * pace_ms / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await send(
            {"type": "http.response.body", "body": _content(i, include_usage), "more_body": True}
        )
    stop = sse_event(b'{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}', b"")
    await send({"type": "http.response.body", "body": stop + b"data: [DONE]\n\n"})


async def _download(send: Send, size: int) -> None:
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", b"%d" % size)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    remaining = size
    while remaining > 0:
        piece = DOWNLOAD_BLOCK[: min(remaining, len(DOWNLOAD_BLOCK))]
        remaining -= len(piece)
        await send({"type": "http.response.body", "body": piece, "more_body": remaining > 0})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI application."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body, size = await _read_body(receive)
    path = scope["path"]
    if path == "/v1/chat/completions":
        controls = stream_controls(body)
        if controls is None:
            await _respond(send, 200, ANSWER, JSON_HEADERS)
        else:
            await _stream(send, *controls)
    elif path == "/v1/models":
        data = b'{"object":"list","data":[{"id":"%s","object":"model"}]}' % MODEL.encode()
        await _respond(send, 200, data, JSON_HEADERS)
    elif path == "/v1/bulk/upload":
        await _respond(send, 200, b'{"bytes":%d}' % size, JSON_HEADERS)
    elif path == "/v1/bulk/download":
        query = parse_qs(scope.get("query_string", b"").decode())
        await _download(send, int(query.get("bytes", ["0"])[0]))
    else:
        await _respond(send, 404, b'{"error":{"message":"not found"}}', JSON_HEADERS)


def make_config(port: int, cert: str, key: str) -> Config:
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.certfile = cert
    config.keyfile = key
    config.alpn_protocols = ["h2", "http/1.1"]
    config.accesslog = None
    config.keep_alive_max_requests = 1_000_000_000
    config.backlog = 2048
    config.h11_max_incomplete_size = 1 << 20
    config.max_app_queue_size = 64
    return config


async def _main(config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="floor_app", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    try:
        import uvloop  # noqa: PLC0415 - optional, absent on Windows

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_main(make_config(args.port, args.cert, args.key)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
