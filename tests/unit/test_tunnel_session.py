"""The HTTP/2 session, two h2 state machines talking through memory (no sockets)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from hyperframe.frame import DataFrame

from tunnel.errors import StreamResetError
from tunnel.h2.session import Session, SessionSettings, Stream
from tunnel.security.secure_stream import PeerIdentity

FAST = SessionSettings(ping_interval_s=0.05, ping_timeout_s=0.2)


class Pipe:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.event = asyncio.Event()
        self.closed = False


class MemoryStream:
    """A SecureStream over two in-memory pipes."""

    def __init__(self, rx: Pipe, tx: Pipe) -> None:
        self.rx, self.tx = rx, tx
        self.peer = PeerIdentity("office-1", 1, b"")
        self.description = "memory"

    async def read(self, max_bytes: int) -> bytes:
        while not self.rx.buf and not self.rx.closed:
            self.rx.event.clear()
            await self.rx.event.wait()
        data = bytes(self.rx.buf[:max_bytes])
        del self.rx.buf[:max_bytes]
        return data

    async def write(self, data: bytes) -> None:
        if self.tx.closed:
            raise ConnectionResetError("closed")
        self.tx.buf += data
        self.tx.event.set()

    async def aclose(self) -> None:
        for pipe in (self.rx, self.tx):
            pipe.closed = True
            pipe.event.set()


class DirectMemoryStream(MemoryStream):
    """Also offers the session's fast path, ``write_nowait``, and counts both kinds of write."""

    def __init__(self, rx: Pipe, tx: Pipe) -> None:
        super().__init__(rx, tx)
        self.direct_writes = 0
        self.waiting_writes = 0
        self.has_room = True

    def write_nowait(self, data: bytes) -> bool:
        self.direct_writes += 1
        self.tx.buf += data
        self.tx.event.set()
        return self.has_room

    async def write(self, data: bytes) -> None:
        self.waiting_writes += 1
        await super().write(data)


Handler = Callable[[Stream], Awaitable[None]]


@contextlib.asynccontextmanager
async def pair(
    handler: Handler, settings: SessionSettings = FAST, kind: type[MemoryStream] = MemoryStream
) -> AsyncIterator[tuple[Session, Session]]:
    a, b = Pipe(), Pipe()
    client = Session(kind(a, b), client_side=True, settings=settings)
    server = Session(kind(b, a), client_side=False, settings=settings, on_request=handler)
    tasks = [asyncio.create_task(client.run()), asyncio.create_task(server.run())]
    try:
        yield client, server
    finally:
        client.abort("test over")
        server.abort("test over")
        await asyncio.gather(*tasks)


HEAD = [(":method", "POST"), (":scheme", "https"), (":authority", "up"), (":path", "/v1/x")]


async def read_all(stream: Stream) -> bytes:
    out = bytearray()
    while chunk := await stream.read():
        out += chunk
    return bytes(out)


async def echo_upper(stream: Stream) -> None:
    body = await read_all(stream)
    await stream.send_headers([(":status", "200"), ("x-len", str(len(body)))])
    await stream.send_data(body.upper(), end_stream=True)


async def test_a_request_and_its_answer_cross_the_session() -> None:
    async with pair(echo_upper) as (client, _server):
        stream = client.open_stream(HEAD, end_stream=False)
        await stream.send_data(b"hello " * 50_000, end_stream=True)  # > one 64 KiB window
        head = dict(await stream.response_head())
        assert head[":status"] == "200"
        assert head["x-len"] == "300000"
        assert await read_all(stream) == b"HELLO " * 50_000
        assert client.active_streams == 0


async def test_a_slow_reader_stops_the_sender() -> None:
    release = asyncio.Event()

    async def slow(stream: Stream) -> None:
        await release.wait()
        await echo_upper(stream)

    async with pair(slow) as (client, _server):
        stream = client.open_stream(HEAD, end_stream=False)
        total = 12 * 1024 * 1024
        sender = asyncio.create_task(stream.send_data(b"x" * total, end_stream=True))
        await asyncio.sleep(0.2)
        assert not sender.done()  # stuck on flow control: nobody consumes on the other side
        assert client.conn.local_flow_control_window(stream.stream_id) == 0
        release.set()
        await sender
        await stream.response_head()
        assert len(await read_all(stream)) == total


async def test_a_reset_cancels_the_handler() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hangs(stream: Stream) -> None:
        await stream.send_headers([(":status", "200")])
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with pair(hangs) as (client, server):
        stream = client.open_stream(HEAD, end_stream=True)
        await stream.response_head()
        await started.wait()
        stream.reset()
        await asyncio.wait_for(cancelled.wait(), 1.0)
        await asyncio.sleep(0.01)
        assert server.active_streams == 0


async def test_when_the_session_dies_every_stream_fails_at_once() -> None:
    async def never(stream: Stream) -> None:
        await asyncio.sleep(30)

    async with pair(never) as (client, server):
        streams = [client.open_stream(HEAD, end_stream=True) for _ in range(3)]
        await asyncio.sleep(0.05)
        await server.stream.aclose()
        for stream in streams:
            with pytest.raises(StreamResetError, match="the tunnel closed"):
                await asyncio.wait_for(stream.response_head(), 1.0)


async def test_no_ping_answer_ends_the_session() -> None:
    a, b = Pipe(), Pipe()  # nobody on the other end
    session = Session(MemoryStream(a, b), client_side=True, settings=FAST)
    reason = await asyncio.wait_for(session.run(), 2.0)
    assert reason == "no PING answer within 0.2s"


async def test_goaway_lets_in_flight_streams_finish_and_refuses_new_ones() -> None:
    gate = asyncio.Event()

    async def waits(stream: Stream) -> None:
        await gate.wait()
        await echo_upper(stream)

    async with pair(waits) as (client, server):
        stream = client.open_stream(HEAD, end_stream=False)
        await stream.send_data(b"abc", end_stream=True)
        await asyncio.sleep(0.05)
        drain = asyncio.create_task(server.drain(5.0, "stopping"))
        await asyncio.sleep(0.05)
        assert client.draining
        assert not client.can_open()
        gate.set()
        assert await read_all(stream) == b"ABC"
        await drain
        assert server.closed_reason == "drained"


async def test_a_small_body_sent_now_arrives_complete_with_its_head() -> None:
    seen: list[bytes | None] = []

    async def answer(stream: Stream) -> None:
        seen.append(stream.take_complete_body())
        await stream.send_headers([(":status", "204")], end_stream=True)

    async with pair(answer) as (client, _server):
        stream = client.open_stream(HEAD, end_stream=False)
        assert stream.send_now(b'{"model": "m"}', end_stream=True)
        assert stream.local_closed
        head = dict(await stream.response_head())
        assert head[":status"] == "204"
        assert seen == [b'{"model": "m"}']  # HEADERS and DATA came in one write


async def test_send_now_declines_what_one_frame_cannot_carry() -> None:
    async with pair(echo_upper) as (client, _server):
        await asyncio.sleep(0.05)  # SETTINGS exchanged: 1 MiB frames, 4 MiB windows
        stream = client.open_stream(HEAD, end_stream=False)
        assert not stream.send_now(b"x" * (2 * 1024 * 1024), end_stream=True)
        assert not stream.local_closed
        assert stream.send_now(b"abc", end_stream=True)
        assert await read_all(stream) == b"ABC"


async def test_a_stream_with_write_nowait_is_written_without_the_writer_task() -> None:
    async with pair(echo_upper, kind=DirectMemoryStream) as (client, _server):
        transport = client.stream
        assert isinstance(transport, DirectMemoryStream)
        stream = client.open_stream(HEAD, end_stream=False)
        assert stream.send_now(b"abc", end_stream=True)
        assert await read_all(stream) == b"ABC"
        assert transport.direct_writes >= 1
        waiting = transport.waiting_writes
        transport.has_room = False  # the transport is full: the writer task waits for it
        stream = client.open_stream(HEAD, end_stream=False)
        await stream.send_data(b"def", end_stream=True)
        assert await read_all(stream) == b"DEF"
        assert transport.waiting_writes > waiting


def test_a_received_data_frame_is_not_hex_dumped_for_a_log_nobody_reads() -> None:
    assert repr(DataFrame(1, data=b"x" * 1000)).endswith("<1000 bytes>")


async def quick_answer(stream: Stream) -> None:
    stream.take_complete_body()
    await stream.send_headers([(":status", "200")])
    await stream.send_data(b"ok", end_stream=True)


async def test_per_stream_state_returns_to_zero_after_many_requests() -> None:
    async with pair(quick_answer) as (client, server):
        for batch in range(50):  # 1,000 requests, 20 at a time
            streams = [client.open_stream(HEAD, end_stream=True) for _ in range(20)]
            for stream in streams:
                assert await read_all(stream) == b"ok"
            if batch == 0:
                first = server.state_sizes()
        await asyncio.sleep(0.01)  # the handlers' tasks end
        for session in (client, server):
            sizes = session.state_sizes()
            assert sizes["streams"] == 0
            assert sizes["handlers"] == 0
            assert sizes["h2_streams"] <= 20  # h2 drops closed streams when the next opens
            assert sizes["h2_reset"] == 0  # h2 alone would remember all 1,000 closed streams
        assert server.state_sizes()["h2_streams"] <= first["h2_streams"]


async def test_reset_streams_are_remembered_but_only_the_last_few(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("tunnel.h2.connection.RESET_MEMORY", 8)
    hold = asyncio.Event()

    async def streams_forever(stream: Stream) -> None:
        await stream.send_headers([(":status", "200")])
        while not hold.is_set():
            await stream.send_data(b"x" * 1000)
            await asyncio.sleep(0)

    async with pair(streams_forever) as (client, server):
        for _ in range(30):
            stream = client.open_stream(HEAD, end_stream=True)
            await stream.response_head()
            await stream.read()
            stream.reset()  # DATA already in flight then meets RST_STREAM: a stream error only
        assert client.state_sizes()["h2_reset"] == 8
        one = client.open_stream(HEAD, end_stream=True)  # the tunnel is still fine
        assert (await one.response_head())[0] == (":status", "200")
        hold.set()
        one.reset()
        assert client.alive
        assert server.alive
