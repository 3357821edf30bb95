"""Every ending of an admitted request gives back what it took, charges what it consumed, and
holds a slow reader's answer back instead of buffering it: a real gateway, connector and
stand-in LLM, with raw sockets where a well-behaved client would hide the defect."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h11
import httpx
import psutil

from tests.integration.test_gateway_api import (
    MESSAGES,
    GatewayRig,
    gateway_rig,
)
from tests.support.procs import free_port

MiB = 1 << 20


@contextlib.asynccontextmanager
async def exchange_rig(
    tmp: Path,
    *key_args: str,
    upstream_url: str | None = None,
    **server: Any,
) -> AsyncIterator[GatewayRig]:
    """:func:`gateway_rig` with the key's limits as positional arguments."""
    async with gateway_rig(tmp, server=server, key_args=key_args, upstream_url=upstream_url) as rig:
        yield rig


async def wait_access_line(rig: GatewayRig, count: int, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        path = rig.tmp / "access.log"
        lines = rig.access_lines() if path.exists() else []
        if len(lines) >= count:
            return lines[count - 1]
        assert time.monotonic() < deadline, f"no access-log line {count}: {lines}"
        await asyncio.sleep(0.05)


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "qwen3-coder", "messages": MESSAGES, **extra}


# --------------------------------------------------------------------------- raw HTTP/1.1


class RawClient:
    """HTTP/1.1 over TLS on a socket with a small receive buffer: it reads only when told."""

    def __init__(self, rig: GatewayRig) -> None:
        self.rig = rig
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, body: bytes) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", self.rig.ports["public"]))
        self.reader, self.writer = await asyncio.open_connection(
            sock=sock, ssl=self.rig.ssl_context(), server_hostname="localhost", limit=16 * 1024
        )
        head = (
            "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\n"
            f"authorization: Bearer {self.rig.key}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()

    async def read_some(self, n: int = 4096) -> bytes:
        assert self.reader is not None
        return await asyncio.wait_for(self.reader.read(n), 10)

    async def read_all(self, first: bytes = b"") -> tuple[int, bytes]:
        """The status and the (de-chunked) body, reading to the end."""
        assert self.reader is not None
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
        conn.send(h11.EndOfMessage())
        conn.receive_data(first)
        status, parts = 0, []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await asyncio.wait_for(self.reader.read(1 << 16), 30))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return status, b"".join(parts)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def rss(rig: GatewayRig) -> int:
    return int(psutil.Process(rig.gateway.pid).memory_info().rss)


# --------------------------------------------------------------------------- (3) the slot


async def test_lone_surrogate_is_400_and_frees_the_slot(tmp_path: Path) -> None:
    async with exchange_rig(tmp_path, "--concurrency", "1") as rig, rig.http() as http:
        # " : " is no separator the byte rename knows: the body is re-encoded
        raw = b'{"model" : "qwen3-coder", "messages": [{"role": "user", "content": "\\ud800"}]}'
        url = f"{rig.base_url}/chat/completions"
        headers = {**rig.headers(), "content-type": "application/json"}
        resp = await http.post(url, content=raw, headers=headers)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["type"] == "invalid_request_error"
        assert (await wait_access_line(rig, 1))["status"] == 400
        again = await http.post(url, json=chat(), headers=rig.headers())
        assert again.status_code == 200, again.text  # the one slot was given back


# --------------------------------------------------------------------------- (2) disconnects


async def test_a_stream_left_early_is_charged_prompt_and_relayed_tokens(tmp_path: Path) -> None:
    async with exchange_rig(tmp_path, "--tpm", "100000") as rig, rig.http() as http:
        body = chat(stream=True, standin={"chunks": 100, "pace_ms": 40})
        url = f"{rig.base_url}/chat/completions"
        async with http.stream("POST", url, json=body, headers=rig.headers()) as resp:
            seen = 0
            async for line in resp.aiter_lines():
                seen += line.startswith("data:")
                if seen >= 6:
                    break
        line = await wait_access_line(rig, 1)
        assert line["status"] == 499
        assert line["prompt_tokens"] > 0
        assert 5 <= line["completion_tokens"] < 100
        after = await http.post(url, json=chat(max_tokens=1), headers=rig.headers())
        charged = line["prompt_tokens"] + line["completion_tokens"]
        assert int(after.headers["x-ratelimit-remaining-tokens"]) <= 100000 - charged


async def test_a_request_left_before_the_answer_is_charged_its_prompt(tmp_path: Path) -> None:
    async with exchange_rig(tmp_path, "--tpm", "100000") as rig, rig.http() as http:
        body = chat(standin={"first_delay_ms": 3000})
        with contextlib.suppress(httpx.TimeoutException):
            await http.post(
                f"{rig.base_url}/chat/completions", json=body, headers=rig.headers(), timeout=0.5
            )
        line = await wait_access_line(rig, 1)
        assert line["status"] == 499
        assert line["prompt_tokens"] > 0
        assert line["completion_tokens"] == 0


# --------------------------------------------------------------------------- (10) timeout


async def test_a_silent_upstream_fails_a_stream_after_upstream_timeout(tmp_path: Path) -> None:
    async with exchange_rig(tmp_path, sse_keepalive_s=0.8, upstream_timeout_s=1.0) as rig:
        body = chat(stream=True, standin={"head_delay_ms": 5000})
        async with rig.http() as http:
            started = time.monotonic()
            async with http.stream(
                "POST", f"{rig.base_url}/chat/completions", json=body, headers=rig.headers()
            ) as resp:
                async for line in resp.aiter_lines():
                    if line.startswith("data:"):
                        break
            elapsed = time.monotonic() - started
        assert "did not answer in time" in line
        assert 0.9 < elapsed < 1.5, elapsed


# --------------------------------------------------------------------------- (8b) addresses


async def test_a_connector_error_does_not_show_the_upstream_address(tmp_path: Path) -> None:
    port = free_port()
    async with exchange_rig(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as rig:
        url = f"{rig.base_url}/chat/completions"
        async with rig.http() as http:
            plain = await http.post(url, json=chat(), headers=rig.headers())
            streamed = await http.post(url, json=chat(stream=True), headers=rig.headers())
        for resp in (plain, streamed):
            assert resp.status_code == 502, resp.text
            assert str(port) not in resp.text
            assert "127.0.0.1" not in resp.text
            message = resp.json()["error"]["message"]
            assert resp.headers["x-request-id"] in message
        assert str(port) in rig.gateway.log_text()  # the detail is in the gateway's log


# --------------------------------------------------------------------------- (5) backpressure


async def test_a_slow_reader_holds_back_a_large_stream(tmp_path: Path) -> None:
    chunks, piece = 3000, 8192  # about 25 MB of SSE
    async with exchange_rig(tmp_path, "--concurrency", "1") as rig:
        client = RawClient(rig)
        body = chat(stream=True, standin={"chunks": chunks, "piece_bytes": piece})
        before = rss(rig)
        await client.send(json.dumps(body).encode())
        first = await client.read_some()
        assert first.startswith(b"HTTP/1.1 200")
        await asyncio.sleep(2.0)
        record = rig.standin.requests[-1]
        held = record.chunks_sent
        assert held < chunks, "the upstream was not held back"
        assert rss(rig) - before < 24 * MiB
        async with rig.http() as http:
            second = await http.post(
                f"{rig.base_url}/chat/completions", json=chat(), headers=rig.headers()
            )
        assert second.status_code == 429  # the slow reader still holds the one slot
        status, data = await client.read_all(first)
        client.close()
        assert status == 200
        assert data.count(b'"content":"') >= chunks
        assert data.rstrip().endswith(b"data: [DONE]")
        assert rig.standin.requests[0].chunks_sent == chunks


async def test_a_slow_reader_holds_back_a_large_answer(tmp_path: Path) -> None:
    chunks, piece = 2000, 16384  # a 32 MB JSON answer
    async with exchange_rig(tmp_path, "--concurrency", "1") as rig:
        client = RawClient(rig)
        before = rss(rig)
        await client.send(
            json.dumps(chat(standin={"chunks": chunks, "piece_bytes": piece})).encode()
        )
        first = await client.read_some()
        assert first.startswith(b"HTTP/1.1 200")
        await asyncio.sleep(2.0)
        assert rss(rig) - before < 24 * MiB
        async with rig.http() as http:
            second = await http.post(
                f"{rig.base_url}/chat/completions", json=chat(), headers=rig.headers()
            )
        assert second.status_code == 429  # the slot is held until the answer is handed over
        status, data = await client.read_all(first)
        client.close()
        assert status == 200
        answer = json.loads(data)
        assert answer["model"] == "qwen3-coder"
        assert len(answer["choices"][0]["message"]["content"]) == chunks * piece
        refused = await wait_access_line(rig, 1)  # the 429 is logged when it is answered
        assert refused["status"] == 429
        line = await wait_access_line(rig, 2)
        assert line["status"] == 200
        assert line["completion_tokens"] == chunks


class RawH2Client:
    """HTTP/2 over TLS that reads its socket but grants flow-control credit only when told:
    the gateway's stream window runs out while the connection stays busy and alive."""

    def __init__(self, rig: GatewayRig) -> None:
        self.rig = rig
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.data = bytearray()
        self.unacked = 0
        self.status = 0
        self.ended = False

    async def request(self, body: bytes) -> None:
        ctx = self.rig.ssl_context()
        ctx.set_alpn_protocols(["h2"])
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", self.rig.ports["public"], ssl=ctx, server_hostname="localhost"
        )
        self.conn.initiate_connection()
        headers = [
            (":method", "POST"), (":scheme", "https"), (":authority", "localhost"),
            (":path", "/v1/chat/completions"), ("authorization", f"Bearer {self.rig.key}"),
            ("content-type", "application/json"), ("content-length", str(len(body))),
        ]  # fmt: skip
        self.conn.send_headers(1, headers)
        self.conn.send_data(1, body, end_stream=True)
        await self._flush()

    async def _flush(self) -> None:
        assert self.writer is not None
        self.writer.write(self.conn.data_to_send())
        await self.writer.drain()

    async def pump(self, seconds: float, *, grant: bool) -> None:
        """Read the socket for ``seconds`` (or to the stream's end), granting credit or not."""
        assert self.reader is not None
        deadline = time.monotonic() + seconds
        await self._grant(grant=grant)
        while not self.ended and (left := deadline - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(self.reader.read(1 << 16), left)
            except TimeoutError:
                break
            assert raw, "the gateway closed the connection"
            for event in self.conn.receive_data(raw):
                if isinstance(event, h2.events.ResponseReceived):
                    self.status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    self.data += event.data
                    self.unacked += event.flow_controlled_length
                elif isinstance(event, h2.events.StreamEnded):
                    self.ended = True
            await self._grant(grant=grant)

    async def _grant(self, *, grant: bool) -> None:
        if grant and self.unacked:
            self.conn.acknowledge_received_data(self.unacked, 1)
            self.unacked = 0
        await self._flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def test_an_http2_stream_without_credit_holds_the_upstream_back(tmp_path: Path) -> None:
    chunks, piece = 3000, 8192  # about 25 MB of SSE
    async with exchange_rig(tmp_path, "--concurrency", "1") as rig:
        client = RawH2Client(rig)
        body = chat(stream=True, standin={"chunks": chunks, "piece_bytes": piece})
        before = rss(rig)
        await client.request(json.dumps(body).encode())
        await client.pump(2.0, grant=False)
        assert client.status == 200
        assert len(client.data) <= 65535  # the stream's initial window, never more
        grown = rss(rig) - before
        assert rig.standin.requests[-1].chunks_sent < chunks, grown
        assert grown < 24 * MiB
        await client.pump(30.0, grant=True)
        client.close()
        assert client.ended, (len(client.data), rig.standin.requests[-1].chunks_sent)
        assert client.data.count(b'"content":"') >= chunks
        assert client.data.rstrip().endswith(b"data: [DONE]")
