"""Anthropic's Messages stream from a chat completions stream (pure: no I/O).

:class:`MessageStream` takes parsed chunks and gives ``(event, data)`` pairs;
:class:`MessageSseTranslator` wraps it for SSE bytes in and SSE bytes out. The request and the
whole-answer directions are in :mod:`gateway.api.messages_translate`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.api.messages_translate import error_body, items, message_id, obj, stop_of
from gateway.api.sse import Usage, _last_boundary, event_data, usage_from

Json = dict[str, Any]
Event = tuple[str, Json]


@dataclass(slots=True)
class _Block:
    index: int
    kind: str  # "text" | "tool_use"
    tool_index: int | None = None


@dataclass(slots=True)
class MessageStream:
    """Chat completion chunks in, Messages stream events out.

    The order is Anthropic's: ``message_start``, ``ping``, then for each block
    ``content_block_start`` / ``content_block_delta``... / ``content_block_stop``, and at the end
    ``message_delta`` (stop reason, usage) and ``message_stop``. Text and each tool call are
    separate blocks; a tool call's arguments go out as ``input_json_delta`` fragments.
    ``message_start`` carries ``input_tokens: 0``: chat completions reports the prompt's tokens
    only at the end, so the real count is in ``message_delta``'s usage.
    """

    alias: str
    stops: tuple[str, ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    deltas: int = 0
    usage_seen: bool = False  # the upstream's usage chunk came
    _id: str | None = None
    _started: bool = False
    _block: _Block | None = None
    _next_index: int = 0
    _stop: tuple[str, str | None] | None = None
    _ended: bool = False
    _tools: dict[int, int] = field(default_factory=dict)

    def feed(self, chunk: Json) -> list[Event]:
        events: list[Event] = []
        if self._ended:
            return events
        if not self._started:
            events.extend(self._start(chunk.get("id")))
        if "error" in chunk and not chunk.get("choices"):
            return events + self.fail(chunk.get("error"))
        usage = usage_from({"usage": chunk.get("usage")})  # counts read leniently
        if usage is not None:
            self.usage_seen = True
            self.input_tokens, self.output_tokens = usage.prompt_tokens, usage.completion_tokens
        for choice in items(chunk.get("choices")):
            if choice.get("index", 0) == 0:
                events.extend(self._choice(choice))
        return events

    def closing_events(self) -> list[Event]:
        """At the end of the upstream stream: close the open block and the message."""
        if self._ended:
            return []
        events = [] if self._started else self._start(None)
        events.extend(self._close_block())
        self._ended = True
        reason, sequence = self._stop or ("end_turn", None)
        output = self.output_tokens or self.deltas
        usage = {"input_tokens": self.input_tokens, "output_tokens": output}
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def fail(self, error: object) -> list[Event]:
        """The upstream sent an error in the stream (vLLM's ``{"error": {...}}`` chunk, its
        ``code`` the HTTP status): Anthropic's ``error`` event, and nothing after it."""
        self._ended = True
        message, status = "The upstream failed.", 500
        if isinstance(error, dict):
            if isinstance(error.get("message"), str):
                message = error["message"]
            code = error.get("code")
            if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
                status = code
        return [("error", error_body(status, message))]

    def _start(self, chat_id: object) -> list[Event]:
        self._started = True
        self._id = message_id(chat_id)
        message: Json = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self.alias,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [
            ("message_start", {"type": "message_start", "message": message}),
            ("ping", {"type": "ping"}),
        ]

    def _choice(self, choice: Json) -> list[Event]:
        events: list[Event] = []
        delta = obj(choice.get("delta"))
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self._block is None or self._block.kind != "text":
                events.extend(self._open("text", {"type": "text", "text": ""}))
            events.append(self._delta({"type": "text_delta", "text": text}))
        for call in items(delta.get("tool_calls")):
            events.extend(self._tool_fragment(call))
        if choice.get("finish_reason"):
            self._stop = stop_of(choice, self.stops)
        return events

    def _tool_fragment(self, call: Json) -> list[Event]:
        events: list[Event] = []
        position = call.get("index")
        position = position if isinstance(position, int) and not isinstance(position, bool) else 0
        function = obj(call.get("function"))
        if position not in self._tools:
            block = {
                "type": "tool_use",
                "id": str(call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}"),
                "name": str(function.get("name") or ""),
                "input": {},
            }
            events.extend(self._open("tool_use", block, position))
            self._tools[position] = self._next_index - 1
        arguments = function.get("arguments")
        current = self._block
        if isinstance(arguments, str) and arguments and current and current.tool_index == position:
            events.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        return events

    def _open(self, kind: str, block: Json, tool_index: int | None = None) -> list[Event]:
        events = self._close_block()
        index = self._next_index
        self._next_index += 1
        self._block = _Block(index, kind, tool_index)
        start = {"type": "content_block_start", "index": index, "content_block": block}
        events.append(("content_block_start", start))
        return events

    def _delta(self, delta: Json) -> Event:
        assert self._block is not None
        self.deltas += 1
        return (
            "content_block_delta",
            {"type": "content_block_delta", "index": self._block.index, "delta": delta},
        )

    def _close_block(self) -> list[Event]:
        if self._block is None:
            return []
        index, self._block = self._block.index, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]


def encode_events(events: Iterable[Event]) -> bytes:
    """Events as SSE, each with its ``event:`` line as Anthropic sends them."""
    return b"".join(
        b"event: "
        + name.encode()
        + b"\ndata: "
        + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        + b"\n\n"
        for name, data in events
    )


class MessageSseTranslator:
    """A chat completions SSE byte stream in, a Messages SSE byte stream out.

    It reads like :class:`gateway.api.sse.SseRewriter` to the forwarder (``feed``, ``flush``,
    ``usage``), which relays it the same way: each upstream chunk's events go out as it comes.
    """

    def __init__(self, alias: str, stops: Iterable[str] = ()) -> None:
        self.stream = MessageStream(alias, tuple(stops))
        self._pending = b""

    @property
    def usage(self) -> Usage | None:
        """The upstream's token counts once its usage chunk came (``include_usage``)."""
        if not self.stream.usage_seen:
            return None
        return Usage(self.stream.input_tokens, self.stream.output_tokens)

    def feed(self, data: bytes) -> bytes:
        data = self._pending + data
        cut = _last_boundary(data)
        data, self._pending = data[:cut], data[cut:]
        return encode_events(self._events(data)) if data else b""

    def close(self) -> bytes:
        """At the end of the upstream stream (``[DONE]`` or not)."""
        tail, self._pending = self._pending, b""
        events = self._events(tail) if tail.strip() else []
        return encode_events([*events, *self.stream.closing_events()])

    flush = close  # the forwarder's name for the end of the upstream's stream

    def _events(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for raw in data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n\n"):
            payload = event_data(raw)
            if payload is None or payload.strip() == b"[DONE]":
                continue
            try:
                chunk = json.loads(payload)
            except ValueError:
                continue
            if isinstance(chunk, dict):
                events.extend(self.stream.feed(chunk))
        return events
