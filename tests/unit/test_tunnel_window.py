"""Every way a stream ends gives its unread bytes back to the connection window (no sockets)."""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import replace

import pytest

from tests.unit.test_tunnel_bad_answer import pool_over
from tests.unit.test_tunnel_session import FAST, HEAD, MemoryStream, Pipe, pair, read_all
from tunnel.errors import StreamResetError
from tunnel.h2.session import Session, SessionSettings, Stream
from tunnel.h2.stall import StallWatch, WindowSample

BODY = b"x" * (256 * 1024)  # several DATA frames, well inside one stream window


async def until(check: object, what: str, within_s: float = 2.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def held(session: Session) -> int:
    return session.window_state().inbound_held


async def answer_big(stream: Stream) -> None:
    stream.take_complete_body()
    await stream.send_headers([(":status", "200")])
    await stream.send_data(BODY, end_stream=True)


async def test_an_answer_that_ended_unread_gives_its_bytes_back_when_closed() -> None:
    # The gateway side: the client went away after the answer ended, before it was read.
    async with pair(answer_big) as (client, _server):
        for _ in range(3):
            stream = client.open_stream(HEAD, end_stream=True)
            await stream.response_head()
            await until(lambda s=stream: s.remote_closed, "the whole answer")  # type: ignore[misc]
            assert stream.closed_both_ways
            stream.reset()
        assert client.active_streams == 0
        assert held(client) == 0


async def test_a_request_body_never_read_gives_its_bytes_back_when_the_handler_ends() -> None:
    # The connector side: a large prompt to an upstream that answers without reading it.
    done = asyncio.Event()

    async def refuse_unread(stream: Stream) -> None:
        await until(lambda: stream.remote_closed, "the whole request body")
        await stream.send_headers([(":status", "502")])
        await stream.send_data(b"{}", end_stream=True)
        done.set()

    async with pair(refuse_unread) as (client, server):
        for _ in range(3):
            done.clear()
            stream = client.open_stream(HEAD, end_stream=False)
            await stream.send_data(BODY, end_stream=True)
            assert await read_all(stream) == b"{}"
            await done.wait()
            await until(lambda: server.active_streams == 0, "the handler's end")
        await asyncio.sleep(0.01)
        assert held(server) == 0


async def test_a_stream_reset_by_the_peer_gives_back_what_it_held() -> None:
    async def reset_after_body(stream: Stream) -> None:
        await until(stream.has_data, "a first chunk")
        stream.reset()

    async with pair(reset_after_body) as (client, server):
        stream = client.open_stream(HEAD, end_stream=False)
        await stream.send_data(BODY, end_stream=True)
        with pytest.raises(Exception, match="reset"):
            await read_all(stream)
        await until(lambda: server.active_streams == 0, "the handler's end")
        assert held(server) == 0
        assert held(client) == 0


async def test_a_handler_that_fails_with_a_body_unread_gives_it_back() -> None:
    async def crashes(stream: Stream) -> None:
        await until(lambda: stream.remote_closed, "the whole request body")
        await stream.send_headers([(":status", "200")], end_stream=True)
        raise RuntimeError("boom")

    async with pair(crashes) as (client, server):
        stream = client.open_stream(HEAD, end_stream=False)
        await stream.send_data(BODY, end_stream=True)
        assert await read_all(stream) == b""
        await until(lambda: server.active_streams == 0, "the handler's end")
        await asyncio.sleep(0.01)
        assert held(server) == 0


async def test_at_rest_the_peer_sees_the_whole_window_again() -> None:
    async with pair(answer_big, replace(FAST, window_check_s=0.05)) as (client, server):
        for _ in range(5):
            stream = client.open_stream(HEAD, end_stream=True)
            await stream.response_head()
            await until(lambda s=stream: s.remote_closed, "the whole answer")  # type: ignore[misc]
            stream.reset()
        await until(
            lambda: server.window_state().outbound == client.window_state().inbound_full,
            "the window given back in full",
        )
        assert client.window_state().inbound == client.window_state().inbound_full


# --------------------------------------------------------------------------- the stall watchdog

TINY = SessionSettings(
    ping_interval_s=0.05,
    ping_timeout_s=0.5,
    stream_window=65535,
    connection_window=65535,  # one unread stream holds the whole connection
    stall_timeout_s=0.3,
    window_check_s=0.05,
)
PATIENT = replace(TINY, stall_timeout_s=30.0)


async def never_reads(stream: Stream) -> None:
    await asyncio.sleep(30)


def leaks(session: Session) -> None:
    """Make ``session`` lose every byte of credit it should give back, at both levels."""
    session.conn.credit_connection = lambda _n: None  # type: ignore[method-assign]
    session.ack = lambda _sid, _n: None  # type: ignore[method-assign]


async def test_a_peer_that_never_gives_credit_back_gets_its_tunnel_closed() -> None:
    stalls: list[str] = []
    a, b = Pipe(), Pipe()
    client = Session(
        MemoryStream(a, b), client_side=True, settings=TINY, on_stall=stalls.append, name="t#1"
    )
    server = Session(
        MemoryStream(b, a), client_side=False, settings=PATIENT, on_request=never_reads
    )
    leaks(server)
    runs = [asyncio.create_task(client.run()), asyncio.create_task(server.run())]
    try:
        stream = client.open_stream(HEAD, end_stream=False)
        sender = asyncio.create_task(stream.send_data(b"x" * 200_000, end_stream=True))
        reason = await asyncio.wait_for(asyncio.shield(runs[0]), 5.0)
        assert "connection window stalled (outbound" in reason
        assert client.stalled is not None
        assert stalls == [client.stalled]
        assert "FLOW_CONTROL_ERROR" in await asyncio.wait_for(asyncio.shield(runs[1]), 5.0)
        with pytest.raises(StreamResetError):
            await sender
    finally:
        client.abort("test over")
        server.abort("test over")
        await asyncio.gather(*runs)


async def test_a_receiver_that_never_reads_is_backpressure_not_a_stall() -> None:
    # Its stream window is used up and stays so; the connection window had every byte back on
    # arrival, so neither end's watchdog has anything to say, and the tunnel carries on.
    async with pair(never_reads, TINY) as (client, server):
        stream = client.open_stream(HEAD, end_stream=False)
        sender = asyncio.create_task(stream.send_data(b"x" * 200_000, end_stream=True))
        await until(lambda: stream.waiting_for_window, "the sender blocked")
        await asyncio.sleep(4 * TINY.stall_timeout_s)
        assert client.stalled is None
        assert server.stalled is None
        assert server.window_state().inbound_held == 0
        assert server.window_state().inbound_buffered == TINY.stream_window
        assert client.window_state().outbound == TINY.connection_window
        assert not sender.done()
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)


async def test_a_receiver_that_loses_credit_closes_its_own_tunnel() -> None:
    a, b = Pipe(), Pipe()
    client = Session(MemoryStream(a, b), client_side=True, settings=PATIENT)
    server = Session(MemoryStream(b, a), client_side=False, settings=TINY, on_request=never_reads)
    leaks(server)
    runs = [asyncio.create_task(client.run()), asyncio.create_task(server.run())]
    try:
        stream = client.open_stream(HEAD, end_stream=False)
        sender = asyncio.create_task(stream.send_data(b"x" * 200_000, end_stream=True))
        reason = await asyncio.wait_for(asyncio.shield(runs[1]), 5.0)
        assert "connection window stalled (inbound" in reason
        assert "INTERNAL_ERROR" in await asyncio.wait_for(asyncio.shield(runs[0]), 5.0)
        with pytest.raises(StreamResetError):
            await sender
    finally:
        client.abort("test over")
        server.abort("test over")
        await asyncio.gather(*runs)


async def test_a_slow_reader_that_keeps_reading_is_not_a_stall() -> None:
    async def slow(stream: Stream) -> None:
        total = 0
        while chunk := await stream.read():
            total += len(chunk)
            await asyncio.sleep(0.02)
        await stream.send_headers([(":status", "200"), ("x-len", str(total))], end_stream=True)

    async with pair(slow, replace(TINY, stall_timeout_s=0.15)) as (client, server):
        stream = client.open_stream(HEAD, end_stream=False)
        started = time.monotonic()
        await stream.send_data(b"x" * 600_000, end_stream=True)
        head = dict(await stream.response_head())
        assert head["x-len"] == "600000"
        assert time.monotonic() - started > 0.3  # it did take longer than the stall timeout
        assert client.stalled is None
        assert server.stalled is None


def test_the_watch_names_a_stall_only_once_it_lasts_without_progress() -> None:
    watch = StallWatch(10.0)

    def sample(now: float, **kw: int | bool) -> WindowSample:
        values: dict[str, int | bool] = {
            "inbound": 100,
            "inbound_held": 0,
            "given_back": 0,
            "outbound": 100,
            "senders_waiting": False,
            "window_updates": 0,
        }
        values.update(kw)
        return WindowSample(now=now, **values)  # type: ignore[arg-type]

    shut = {"inbound": 0, "inbound_held": 100}  # used up by bytes given back to no one
    assert watch.check(sample(0.0, **shut)) is None
    assert watch.check(sample(9.0, **shut)) is None
    assert watch.check(sample(12.0, **shut, given_back=5)) is None  # progress: starts over
    assert watch.check(sample(21.0, **shut, given_back=5)) is None
    assert (watch.check(sample(22.5, **shut, given_back=5)) or "").startswith("inbound")
    assert watch.check(sample(23.0, inbound=0)) is None  # all given back, yet to be announced
    assert watch.check(sample(40.0, inbound=0)) is None
    assert watch.check(sample(30.0)) is None  # the window opened
    assert watch.check(sample(31.0, outbound=0)) is None  # nobody waits to send: no stall
    assert watch.check(sample(32.0, outbound=0, senders_waiting=True)) is None
    assert watch.check(sample(41.0, outbound=0, senders_waiting=True, window_updates=1)) is None
    late = watch.check(sample(51.5, outbound=0, senders_waiting=True, window_updates=1))
    assert (late or "").startswith("outbound")


async def test_an_answer_complete_before_the_request_body_is_still_read_whole() -> None:
    # RFC 9113 8.1: RST_STREAM(NO_ERROR) after a complete answer only stops the request body.
    async def refuse_at_once(stream: Stream) -> None:
        await stream.send_headers([(":status", "413")])
        await stream.send_data(b'{"error": "too large"}', end_stream=True)

    async with pair(refuse_at_once) as (client, server):
        stream = client.open_stream(HEAD, end_stream=False)
        sender = asyncio.create_task(stream.send_data(b"x" * (12 * 1024 * 1024), end_stream=True))
        assert dict(await stream.response_head())[":status"] == "413"
        await until(lambda: stream.error is not None or stream.local_closed, "the reset")
        assert await read_all(stream) == b'{"error": "too large"}'
        with pytest.raises(StreamResetError):
            await sender  # the rest of the body is not sent
        await until(lambda: server.active_streams == 0 == client.active_streams, "both ends")
        await asyncio.sleep(0.01)
        assert held(client) == 0
        assert held(server) == 0


async def test_a_response_dropped_without_aclose_still_gives_its_bytes_back() -> None:
    # The gateway's answer generator may never start (its client went away first): the
    # response object is dropped unclosed, with the whole answer unread in its stream.
    async with pair(answer_big) as (client, _server):
        pool = pool_over(client)
        for _ in range(3):
            response = await pool.request("up", "GET", "/v1/models", [], b"")
            stream = response._stream  # type: ignore[attr-defined]
            await until(lambda s=stream: s.remote_closed, "the whole answer")  # type: ignore[misc]
            del response, stream
            gc.collect()
        assert client.active_streams == 0
        assert held(client) == 0
