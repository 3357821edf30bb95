"""The bench's upstream: an OpenAI-format server that costs next to nothing per request.

Plain asyncio protocol (uvloop when present) with precomputed answers, so that it is never the
bottleneck of what it measures. It speaks the subset the benchmark uses:

- ``POST /v1/chat/completions``: a fixed answer, or with ``"stream": true`` an SSE stream of
  ``standin.chunks`` content chunks (default 5) paced ``standin.pace_ms`` apart; every content piece
  reads ``w<i>@t=<CLOCK_MONOTONIC ns at send> `` so the receiver can measure each chunk's delay.
  ``stream_options.include_usage`` adds the usage chunk, as OpenAI does.
- ``GET /v1/models``; ``POST /v1/bulk/upload`` (counts the body, answers ``{"bytes": n}``);
  ``GET /v1/bulk/download?bytes=N`` (N bytes, with backpressure).

Run it as ``python -m bench.fast_upstream --port-file F``; it prints nothing on the hot path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs

from bench.http1 import Body, End, Head, ParseError, RequestParser

MODEL = "bench-model"
MAX_JSON_BYTES = 1 << 20
DOWNLOAD_BLOCK = bytes(range(256)) * 1024  # 256 KiB
_BASE = b'{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
_BASE += b'"model":"' + MODEL.encode() + b'",'


def answer_json() -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the bench upstream."},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def response_head(status: int, content_type: str, length: int | None) -> bytes:
    reason = {200: "OK", 404: "Not Found", 400: "Bad Request"}.get(status, "OK")
    size = f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n{size}\r\n\r\n"
    ).encode()


def full_response(status: int, body: bytes, content_type: str = "application/json") -> bytes:
    return response_head(status, content_type, len(body)) + body


ANSWER = full_response(200, answer_json())
MODELS = full_response(
    200,
    json.dumps(
        {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}
    ).encode(),
)
NOT_FOUND = full_response(
    404,
    b'{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}',
)
SSE_HEAD = response_head(200, "text/event-stream", None)


def chunked(event: bytes) -> bytes:
    """One SSE event as one HTTP/1.1 chunk."""
    return b"%x\r\n%b\r\n" % (len(event), event)


def sse_event(choice: bytes, usage: bytes) -> bytes:
    return b"data: " + _BASE + b'"choices":[' + choice + b"]" + usage + b"}\n\n"


def content_event(i: int, include_usage: bool) -> bytes:
    piece = b'{"index":0,"delta":{"content":"w%d@t=%d "},"logprobs":null,"finish_reason":null}' % (
        i,
        time.monotonic_ns(),
    )
    return chunked(sse_event(piece, b',"usage":null' if include_usage else b""))


def stream_tail(chunks: int, include_usage: bool) -> bytes:
    null_usage = b',"usage":null' if include_usage else b""
    stop = sse_event(b'{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}', null_usage)
    parts = [chunked(stop)]
    if include_usage:
        usage = b'{"prompt_tokens":5,"completion_tokens":%d,"total_tokens":%d}' % (
            chunks,
            chunks + 5,
        )
        parts.append(chunked(b"data: " + _BASE + b'"choices":[],"usage":' + usage + b"}\n\n"))
    parts.append(chunked(b"data: [DONE]\n\n"))
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)


def stream_start(include_usage: bool) -> bytes:
    role = b'{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,'
    role += b'"finish_reason":null}'
    return SSE_HEAD + chunked(sse_event(role, b',"usage":null' if include_usage else b""))


def stream_controls(body: bytes) -> tuple[int, float, bool] | None:
    """``(chunks, pace_ms, include_usage)`` for a streamed request, ``None`` for a plain one."""
    try:
        parsed: Any = json.loads(body) if body else {}
    except ValueError:
        return None
    if not isinstance(parsed, dict) or not parsed.get("stream"):
        return None
    found = parsed.get("standin")
    controls: dict[str, Any] = found if isinstance(found, dict) else {}
    options = parsed.get("stream_options") or {}
    include_usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
    return int(controls.get("chunks", 5)), float(controls.get("pace_ms", 0.0)), include_usage


class UpstreamProtocol(asyncio.Protocol):
    """One client connection; requests are answered in order (no pipelining overlap)."""

    def __init__(self) -> None:
        self._parser = RequestParser()
        self._transport: asyncio.Transport | None = None
        self._head: Head | None = None
        self._body = bytearray()
        self._size = 0
        self._queue: deque[tuple[Head, bytes, int]] = deque()
        self._busy = False
        self._writable = asyncio.Event()
        self._writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._writable.set()
        self._transport = None

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        try:
            events = self._parser.feed(data)
        except ParseError:
            if self._transport is not None:
                self._transport.close()
            return
        for event in events:
            if isinstance(event, Head):
                self._head, self._body, self._size = event, bytearray(), 0
            elif isinstance(event, Body):
                self._size += len(event.data)
                if self._size <= MAX_JSON_BYTES:
                    self._body += event.data
            elif isinstance(event, End) and self._head is not None:
                self._queue.append((self._head, bytes(self._body), self._size))
        self._serve_queue()

    def _serve_queue(self) -> None:
        while self._queue and not self._busy and self._transport is not None:
            head, body, size = self._queue.popleft()
            self._answer(head, body, size)

    def _answer(self, head: Head, body: bytes, size: int) -> None:
        assert self._transport is not None
        path = head.path
        if path == "/v1/chat/completions" and head.method == "POST":
            controls = stream_controls(body)
            if controls is None:
                self._transport.write(ANSWER)
            else:
                self._start(self._stream(*controls))
        elif path == "/v1/models":
            self._transport.write(MODELS)
        elif path == "/v1/bulk/upload":
            self._transport.write(full_response(200, b'{"bytes":%d}' % size))
        elif path == "/v1/bulk/download":
            wanted = parse_qs(head.query).get("bytes", ["0"])[0]
            self._start(self._download(int(wanted)))
        else:
            self._transport.write(NOT_FOUND)

    def _start(self, work: Any) -> None:
        self._busy = True
        task = asyncio.get_running_loop().create_task(work)
        task.add_done_callback(self._finished)

    def _finished(self, _task: asyncio.Task[None]) -> None:
        self._busy = False
        self._serve_queue()

    async def _stream(self, chunks: int, pace_ms: float, include_usage: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        transport.write(stream_start(include_usage))
        start = time.monotonic()
        for i in range(chunks):
            if pace_ms > 0:
                delay = start + i * pace_ms / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if transport.is_closing():
                return
            transport.write(content_event(i, include_usage))
            if not self._writable.is_set():
                await self._writable.wait()
        transport.write(stream_tail(chunks, include_usage))

    async def _download(self, size: int) -> None:
        transport = self._transport
        if transport is None:
            return
        transport.write(response_head(200, "application/octet-stream", size))
        view = memoryview(DOWNLOAD_BLOCK)
        remaining = size
        while remaining > 0 and not transport.is_closing():
            piece = view[: min(remaining, len(DOWNLOAD_BLOCK))]
            transport.write(piece)
            remaining -= len(piece)
            await self._writable.wait()


async def serve(host: str, port: int, port_file: Path | None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamProtocol, host, port, backlog=2048)
    bound = server.sockets[0].getsockname()[1]
    if port_file is not None:
        tmp = port_file.with_name(port_file.name + ".tmp")
        tmp.write_text(f"{bound}\n")
        os.replace(tmp, port_file)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fast_upstream", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path)
    args = parser.parse_args(argv)
    try:
        import uvloop  # noqa: PLC0415 - optional, absent on Windows

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.host, args.port, args.port_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
