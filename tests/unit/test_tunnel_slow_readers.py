"""Slow readers hold back only their own stream (no sockets).

Connection-level credit is given back as soon as DATA lands in a live stream's buffer; stream-level
credit only when the consumer reads it (docs/tunnel.md, *Flow control*). So answers that nobody
reads fill their own stream windows and nothing else: other streams go on, and the stall
watchdog, which looks at the connection window, has nothing to say.
"""

from __future__ import annotations

import asyncio
import time

from tests.unit.test_tunnel_session import HEAD, pair, read_all
from tests.unit.test_tunnel_window import until
from tunnel.h2.session import Session, SessionSettings, Stream

MIB = 1024 * 1024
SETTINGS = SessionSettings(
    ping_interval_s=0.05,
    ping_timeout_s=2.0,
    stall_timeout_s=0.5,
    window_check_s=0.05,
)  # the real windows: 16 MiB for the connection, 4 MiB per stream
LARGE = 5 * MIB  # more than one stream window
UNREAD = 5  # five such answers hold 5 x 4 MiB > the 16 MiB connection window


def pattern(size: int, seed: int) -> bytes:
    block = bytes((seed * 31 + i) % 251 for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


async def answer_as_asked(stream: Stream) -> None:
    """Answers ``x-size`` bytes of a pattern seeded by ``x-seed``; echoes the request's length."""
    head = dict(stream.headers or [])
    received = len(await read_all(stream))
    size, seed = int(head["x-size"]), int(head["x-seed"])
    await stream.send_headers([(":status", "200"), ("x-received", str(received))])
    await stream.send_data(pattern(size, seed), end_stream=True)


def ask(client: Session, size: int, seed: int, *, end_stream: bool = True) -> Stream:
    return client.open_stream([*HEAD, ("x-size", str(size)), ("x-seed", str(seed))], end_stream)


def buffered(stream: Stream) -> int:
    return stream.buffered


async def test_unread_answers_hold_back_only_their_own_streams() -> None:
    async with pair(answer_as_asked, SETTINGS) as (client, server):
        unread = [ask(client, LARGE, seed) for seed in range(UNREAD)]
        for stream in unread:
            await stream.response_head()
        stream_window = SETTINGS.stream_window
        await until(lambda: all(buffered(s) == stream_window for s in unread), "full buffers")

        # a sixth stream: several MiB each way, promptly
        started = time.monotonic()
        other = ask(client, 6 * MIB, 99, end_stream=False)
        await other.send_data(pattern(3 * MIB, 7), end_stream=True)
        assert dict(await other.response_head())["x-received"] == str(3 * MIB)
        assert await read_all(other) == pattern(6 * MIB, 99)
        assert time.monotonic() - started < 5.0

        # the five stay unread for several stall timeouts: that is backpressure, not a stall
        await asyncio.sleep(4 * SETTINGS.stall_timeout_s)
        assert client.stalled is None
        assert server.stalled is None
        assert client.alive
        assert server.alive
        for stream in unread:  # each holds at most its own window
            assert buffered(stream) <= stream_window
        assert client.window_state().inbound_held == 0  # the connection owes nothing

        # then they read everything
        bodies = await asyncio.gather(*(read_all(s) for s in unread))
        assert [len(b) for b in bodies] == [LARGE] * UNREAD
        assert bodies == [pattern(LARGE, seed) for seed in range(UNREAD)]

        await until(lambda: client.active_streams == 0 == server.active_streams, "no streams")
        full = SETTINGS.connection_window

        def settled() -> bool:
            c, s = client.window_state(), server.window_state()
            return c.inbound == c.outbound == s.inbound == s.outbound == full

        await until(settled, "every window back to full")
        assert client.window_state().inbound_held == 0 == server.window_state().inbound_held


async def test_unread_request_bodies_on_the_server_side_do_not_stop_the_others() -> None:
    # The connector's side: an upstream that does not read its prompt holds only its stream.
    release = asyncio.Event()

    async def slow_upstream(stream: Stream) -> None:
        if dict(stream.headers or []).get("x-slow"):
            await release.wait()
        await answer_as_asked(stream)

    async with pair(slow_upstream, SETTINGS) as (client, server):
        slow = [
            client.open_stream([*HEAD, ("x-slow", "1"), ("x-size", "2"), ("x-seed", "0")], False)
            for _ in range(UNREAD)
        ]
        senders = [
            asyncio.create_task(s.send_data(pattern(LARGE, 1), end_stream=True)) for s in slow
        ]
        await until(lambda: all(s.waiting_for_window for s in slow), "the senders blocked")

        other = ask(client, MIB, 5, end_stream=False)
        await asyncio.wait_for(other.send_data(pattern(3 * MIB, 2), end_stream=True), 5.0)
        assert dict(await other.response_head())["x-received"] == str(3 * MIB)
        assert await read_all(other) == pattern(MIB, 5)

        await asyncio.sleep(4 * SETTINGS.stall_timeout_s)
        assert client.stalled is None
        assert server.stalled is None

        release.set()
        await asyncio.wait_for(asyncio.gather(*senders), 10.0)
        for stream in slow:
            assert dict(await stream.response_head())["x-received"] == str(LARGE)
            assert await read_all(stream) == pattern(2, 0)
        await until(lambda: client.active_streams == 0 == server.active_streams, "no streams")
        full = SETTINGS.connection_window
        await until(
            lambda: client.window_state().outbound == full == server.window_state().inbound,
            "the window back to full",
        )
