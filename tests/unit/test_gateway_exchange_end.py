"""Every ending of an admitted request frees its slot, closes its tunnel stream and writes one
access-log line (STYLE 14): the ASGI adapter driven with raw ASGI messages, fakes for the rest."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypercorn.asyncio.worker_context import EventWrapper
from hypercorn.protocol.h2 import StreamBuffer

from gateway import hypercorn_h2, hypercorn_h11
from gateway.api.sse import BodyRewriter, model_replacements
from gateway.auth.identity import Identity
from gateway.limits.limiter import MemorySlots, RateLimiter
from tests.unit.test_gateway_app import (
    CHAT,
    UP,
    AsgiClient,
    FakePool,
    FakeResponse,
    Rig,
    chunk,
    http_scope,
)
from tunnel.errors import StreamResetError


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    rig.access_log.close()


def request(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]


def last_line(rig: Rig) -> dict[str, Any]:
    return dict(json.loads(rig.log_path.read_text().splitlines()[-1]))


class BrokenSend(AsgiClient):
    """An ASGI server whose ``send`` fails (the connection is gone) at message ``fail_at``."""

    def __init__(self, messages: list[dict[str, Any]], fail_at: int) -> None:
        super().__init__(messages)
        self.fail_at = fail_at

    async def send(self, message: dict[str, Any]) -> None:
        if len(self.sent) == self.fail_at:
            raise ConnectionResetError("the client is gone")
        await super().send(message)


async def run(rig: Rig, client: AsgiClient) -> None:
    with pytest.raises(ConnectionResetError):
        await rig.app.asgi_app(http_scope("/v1/chat/completions"), client.receive, client.send)


async def test_send_failing_before_a_stream_started_frees_everything(rig: Rig) -> None:
    rig.pool.response = FakeResponse(200, "text/event-stream", [chunk("a"), chunk("b")])
    await run(rig, BrokenSend(request({**CHAT, "stream": True}), fail_at=0))
    assert rig.limiter.admissions[0].released
    assert rig.pool.response.closed  # the generator never ran: the tunnel stream is reset anyway
    assert last_line(rig)["status"] == 499


async def test_send_failing_mid_stream_frees_everything(rig: Rig) -> None:
    rig.pool.response = FakeResponse(200, "text/event-stream", [chunk("a"), chunk("b")])
    await run(rig, BrokenSend(request({**CHAT, "stream": True}), fail_at=2))
    assert rig.limiter.admissions[0].released
    assert rig.pool.response.closed
    assert last_line(rig)["status"] == 499


async def test_send_failing_on_a_json_answer_frees_the_slot_after_it(rig: Rig) -> None:
    answer = {"model": UP, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    rig.pool.response = FakeResponse(200, "application/json", [json.dumps(answer).encode()])
    await run(rig, BrokenSend(request(CHAT), fail_at=1))
    assert rig.limiter.admissions[0].released
    line = last_line(rig)
    assert (line["status"], line["prompt_tokens"], line["completion_tokens"]) == (499, 3, 4)


async def test_cancelled_while_the_upstream_thinks_is_charged_the_prompt(rig: Rig) -> None:
    rig.pool.response = FakeResponse(200, "application/json", [30.0, b"{}"])
    client = AsgiClient(request(CHAT))
    task = asyncio.ensure_future(
        rig.app.asgi_app(http_scope("/v1/chat/completions"), client.receive, client.send)
    )
    await asyncio.sleep(0.05)
    client.incoming.put_nowait({"type": "http.disconnect"})
    async with asyncio.timeout(5):
        await task
    assert rig.limiter.admissions[0].released
    assert rig.limiter.admissions[0].charged == [(2, 0)]  # "user" + "hi": 6 characters
    assert rig.ledger.rows == [("alice", "qwen3-coder", 2, 0)]
    assert last_line(rig)["status"] == 499


async def test_a_lone_surrogate_is_400_before_admission(rig: Rig) -> None:
    raw = b'{"model" : "qwen3-coder", "messages": [{"role": "user", "content": "\\ud800"}]}'
    client = AsgiClient([{"type": "http.request", "body": raw, "more_body": False}])
    await rig.app.asgi_app(http_scope("/v1/chat/completions"), client.receive, client.send)
    assert client.sent[0]["status"] == 400
    assert json.loads(client.sent[1]["body"])["error"]["code"] == "invalid_unicode"
    assert not rig.limiter.admissions  # refused before it took a slot or a request
    assert last_line(rig)["status"] == 400


async def test_an_exception_after_admission_gives_the_slot_back(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> bytes:
        raise RuntimeError("a bug between admission and the upstream")

    monkeypatch.setattr("gateway.api.routes.upstream_call", broken)
    raw = json.dumps(CHAT).encode()
    client = AsgiClient([{"type": "http.request", "body": raw, "more_body": False}])
    await rig.app.asgi_app(http_scope("/v1/chat/completions"), client.receive, client.send)
    assert client.sent[0]["status"] == 500
    assert rig.limiter.admissions[0].released
    assert last_line(rig)["status"] == 500


def test_body_rewriter_renames_across_pieces_and_reads_usage() -> None:
    pairs = model_replacements(UP, "qwen3-coder")
    answer = json.dumps(
        {"data": ["x" * 5000], "model": UP, "usage": {"prompt_tokens": 7, "total_tokens": 7}}
    ).encode()
    for size in (1, 3, 7, 64, 1000):
        rewriter = BodyRewriter(pairs)
        out = b"".join(rewriter.feed(answer[i : i + size]) for i in range(0, len(answer), size))
        out += rewriter.flush()
        assert json.loads(out)["model"] == "qwen3-coder", size
        assert rewriter.usage is not None
        assert rewriter.usage.prompt_tokens == 7


class SlowHeadPool(FakePool):
    """A pool whose response head never comes (the request waits until cancelled)."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = asyncio.Event()

    async def request(self, *args: Any, **kwargs: Any) -> FakeResponse:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise AssertionError("unreachable")


async def test_a_stream_left_before_its_head_came_frees_everything(rig: Rig) -> None:
    pool = SlowHeadPool()
    rig.pool.request = pool.request  # type: ignore[method-assign]
    client = AsgiClient(request({**CHAT, "stream": True}))
    task = asyncio.ensure_future(
        rig.app.asgi_app(http_scope("/v1/chat/completions"), client.receive, client.send)
    )
    async with asyncio.timeout(5):
        await client.got_body.wait()  # 200 and a keep-alive comment: the late stream runs
        client.incoming.put_nowait({"type": "http.disconnect"})
        await task
        await pool.cancelled.wait()  # the tunnel request is given up
    assert rig.limiter.admissions[0].released
    line = last_line(rig)
    assert (line["status"], line["prompt_tokens"], line["completion_tokens"]) == (499, 2, 0)


async def test_a_cancel_after_the_slot_was_taken_gives_it_back() -> None:
    limiter = RateLimiter("memory://")
    alice = Identity("alice", "key", None, 60, 0, 1)

    async def cancelled(*_args: object) -> object:
        raise asyncio.CancelledError

    limiter._state = cancelled  # type: ignore[method-assign]  # the read after the slot
    with pytest.raises(asyncio.CancelledError):
        await limiter.admit(alice, 1)
    slots = limiter._slots
    assert isinstance(slots, MemorySlots)
    assert slots.held("key:alice") == 0
    await limiter.aclose()


async def test_a_large_answer_broken_off_is_cut_not_completed(rig: Rig) -> None:
    piece = b"x" * 65536
    parts: list[bytes | float | Exception] = [b'{"data":"', *[piece] * 20]
    parts.append(StreamResetError("tunnel lost", 1))
    rig.pool.response = FakeResponse(200, "application/json", parts)
    client = AsgiClient(request(CHAT))
    await rig.app.asgi_app(http_scope("/v1/chat/completions"), client.receive, client.send)
    assert client.sent[0]["status"] == 200
    assert all(m.get("more_body", True) for m in client.sent[1:])  # never a last message
    assert rig.limiter.admissions[0].released
    assert rig.pool.response.closed
    assert last_line(rig)["status"] == 502


async def test_a_large_answer_streams_through_with_model_and_usage(rig: Rig) -> None:
    big = {"model": UP, "data": ["x" * (3 << 20)], "usage": {"prompt_tokens": 5}}
    raw = json.dumps(big).encode()
    parts: list[bytes | float | Exception] = [raw[i : i + 16384] for i in range(0, len(raw), 16384)]
    rig.pool.response = FakeResponse(200, "application/json", parts)
    client = AsgiClient(request(CHAT))
    await rig.app.asgi_app(http_scope("/v1/chat/completions"), client.receive, client.send)
    bodies = [m for m in client.sent if m["type"] == "http.response.body"]
    assert len(bodies) > 2  # piece by piece, not one message
    answer = json.loads(b"".join(m["body"] for m in bodies))
    assert answer["model"] == "qwen3-coder"
    assert rig.ledger.rows == [("alice", "qwen3-coder", 5, 0)]


async def test_a_late_connector_error_on_a_stream_does_not_show_its_text(rig: Rig) -> None:
    text = b'{"error": {"message": "Cannot connect to host 172.21.113.31:4000", "code": "x"}}'
    late = FakeResponse(502, "application/json", [text])
    late.headers.append(("x-tunnel-answer", "connector"))

    async def slow_head(*_args: object, **_kwargs: object) -> FakeResponse:
        await asyncio.sleep(0.2)  # past the keep-alive interval: 200 is already out
        return late

    rig.pool.request = slow_head  # type: ignore[assignment,method-assign]
    resp = await rig.post("/v1/chat/completions", {**CHAT, "stream": True})
    body = await resp.get_data()
    assert resp.status_code == 200
    assert b"172.21" not in body
    event = json.loads(body.split(b"\n\n")[-2][6:])
    assert resp.headers["x-request-id"] in event["error"]["message"]
    assert last_line(rig)["status"] == 502


async def test_hypercorn_h2_buffer_holds_the_writer_while_the_window_is_shut() -> None:
    assert hypercorn_h2.install()
    buffer = StreamBuffer(EventWrapper)
    pushed = asyncio.ensure_future(buffer.push(b"x" * 40000))  # over the 32 KiB high-water mark
    await asyncio.sleep(0)
    assert not pushed.done()
    assert await buffer.pop(0) == b""  # the client's window is shut: nothing sent
    await asyncio.sleep(0.01)
    assert not pushed.done(), "the writer was let go with 40000 bytes still buffered"
    await buffer.pop(16384)
    await asyncio.sleep(0.01)
    assert not pushed.done()  # 23616 left: still over the low-water mark
    await buffer.pop(16384)
    async with asyncio.timeout(1):
        await pushed  # under the mark: the writer goes on


async def test_send_failing_on_the_last_message_of_a_stream_frees_everything(rig: Rig) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2}
    parts: list[bytes | float | Exception] = [chunk("a"), chunk("b"), chunk("", usage, False)]
    rig.pool.response = FakeResponse(200, "text/event-stream", parts)
    client = BrokenSend(request({**CHAT, "stream": True}), fail_at=3)  # start, a, b, then the end
    await run(rig, client)
    assert rig.limiter.admissions[0].released
    line = last_line(rig)
    assert (line["status"], line["prompt_tokens"], line["completion_tokens"]) == (499, 3, 2)


async def test_the_tunnel_lost_mid_stream_frees_everything(rig: Rig) -> None:
    parts: list[bytes | float | Exception] = [chunk("a"), StreamResetError("tunnel lost", 1)]
    rig.pool.response = FakeResponse(200, "text/event-stream", parts)
    client = AsgiClient(request({**CHAT, "stream": True}))
    await rig.app.asgi_app(http_scope("/v1/chat/completions"), client.receive, client.send)
    assert b"tunnel lost" not in b"".join(m.get("body", b"") for m in client.sent)
    assert rig.limiter.admissions[0].released
    assert rig.pool.response.closed
    assert last_line(rig)["status"] == 502


async def test_a_client_leaving_after_the_answer_was_settled_is_logged_as_charged(
    rig: Rig,
) -> None:
    """Codex CLI closes as soon as it has read the last event: the answer was settled (ledger
    row committed from the upstream's usage) before the tail went out, so the 499 line must
    carry the tokens charged, not the relayed-events estimate of a client that left early."""
    usage = {"prompt_tokens": 3, "completion_tokens": 2}
    events: list[bytes | float | Exception] = [chunk(c) for c in "abcdef"]
    rig.pool.response = FakeResponse(200, "text/event-stream", [*events, chunk("", usage, False)])
    client = BrokenSend(request({**CHAT, "stream": True}), fail_at=7)  # start, a..f, the end
    await run(rig, client)
    assert rig.ledger.rows == [("alice", "qwen3-coder", 3, 2)]
    line = last_line(rig)
    assert (line["status"], line["prompt_tokens"], line["completion_tokens"]) == (499, 3, 2)


def test_hypercorn_h11_parse_errors_are_patched_to_json() -> None:
    """The installed Hypercorn still has the shape the patch replaces (else its 400/431 bodies
    go back to empty, with only a warning in the log)."""
    assert hypercorn_h11.install()
    body = json.loads(hypercorn_h11.error_json(431))
    assert body["error"]["type"] == "invalid_request_error"
    assert "16 KiB" in body["error"]["message"]
