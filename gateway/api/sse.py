"""Sans-IO handling of upstream answers: SSE events, the ``model`` field, and ``usage``.

The hot path of a stream is :meth:`SseRewriter.feed`: it cuts the bytes at the last event boundary,
replaces the upstream's model name with the client's alias *as bytes* (the JSON encoding of a model
name is fixed, and an escaped quote inside a string can never look like ``"model":"``), and only
parses an event as JSON when it carries a real ``usage`` object (the last one, with
``stream_options.include_usage``). Chunks that need no change are never decoded or re-encoded.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Final

MAX_PENDING_BYTES: Final = 1 << 20  # an "event" with no end this long is passed on as it is
_EVENT_SPLIT: Final = re.compile(rb"(\r\n\r\n|\n\n|\r\r)")
_USAGE: Final = b'"usage"'
_NO_USAGE: Final = (b'"usage":null', b'"usage": null')


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@functools.lru_cache(maxsize=1024)
def model_replacements(upstream_model: str, alias: str) -> tuple[tuple[bytes, bytes], ...]:
    """Byte pairs that turn ``"model":"<upstream>"`` into ``"model":"<alias>"`` (cached: the
    same few names come back on every request)."""
    if upstream_model == alias:
        return ()
    old = json.dumps(upstream_model).encode()
    new = json.dumps(alias).encode()
    escaped = old.replace(b"/", b"\\/")  # some servers escape "/" (JSON allows both)
    olds = (old,) if escaped == old else (old, escaped)
    return tuple(
        (b'"model"' + sep + o, b'"model"' + sep + new) for o in olds for sep in (b":", b": ")
    )


def replace_all(data: bytes, pairs: tuple[tuple[bytes, bytes], ...]) -> bytes:
    for old, new in pairs:
        if old in data:
            data = data.replace(old, new)
    return data


def usage_from(obj: object) -> Usage | None:
    """The token counts in an answer or stream event of any of the four routes, if present.

    chat / completions / embeddings: ``usage.prompt_tokens`` (+ ``completion_tokens``);
    responses: ``usage.input_tokens`` / ``output_tokens``, in streams under ``response``;
    Anthropic's Messages: the same names, in streams under ``message`` (``message_start``) and
    at the top of ``message_delta`` (see :func:`merged_usage`).
    """
    if not isinstance(obj, dict):
        return None
    usage = obj.get("usage")
    if usage is None:
        outer = obj.get("response") or obj.get("message")  # responses; Messages' message_start
        if isinstance(outer, dict):
            usage = outer.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens", 0))
    completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
    return Usage(_as_count(prompt), _as_count(completion))


def merged_usage(before: Usage | None, usage: Usage, obj: dict[str, Any]) -> Usage:
    """The usage after an event: the event's own, except that Anthropic's ``message_delta``,
    which carries ``output_tokens`` and often no ``input_tokens``, keeps the prompt count of
    ``message_start``."""
    if before is None or obj.get("type") != "message_delta":
        return usage
    own = obj.get("usage")
    if isinstance(own, dict) and "input_tokens" in own:
        return usage
    return Usage(before.prompt_tokens, usage.completion_tokens)


def _as_count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def has_real_usage(data: bytes) -> bool:
    """True if ``data`` may hold a ``usage`` object that is not ``null`` (cheap byte counts)."""
    count = data.count(_USAGE)
    return count > 0 and count > sum(data.count(n) for n in _NO_USAGE)


def rewrite_json_body(
    body: bytes, pairs: tuple[tuple[bytes, bytes], ...]
) -> tuple[bytes, Usage | None]:
    """A non-streamed answer: model name rewritten, usage read (the body is not re-encoded)."""
    usage = None
    if _USAGE in body:
        try:
            usage = usage_from(json.loads(body))
        except ValueError:
            usage = None
    return replace_all(body, pairs), usage


def event_data(event: bytes) -> bytes | None:
    """The ``data`` of one SSE event (its ``data:`` lines joined by newlines), or None."""
    lines = [line for line in event.splitlines() if line.startswith(b"data:")]
    if not lines:
        return None
    parts = [line[6:] if line.startswith(b"data: ") else line[5:] for line in lines]
    return b"\n".join(parts)


def is_usage_only_chunk(obj: dict[str, Any]) -> bool:
    """The extra chunk ``stream_options.include_usage`` adds: ``choices: []`` and a usage."""
    return obj.get("choices") == [] and isinstance(obj.get("usage"), dict)


class SseRewriter:
    """Turns an upstream SSE byte stream into the client's, event boundaries respected.

    ``drop_usage_chunk``: hide the usage-only chunk from a client that did not ask for it
    (the gateway asked on its behalf, to charge tokens). ``usage`` holds the last usage seen.
    """

    def __init__(
        self, pairs: tuple[tuple[bytes, bytes], ...] = (), *, drop_usage_chunk: bool = False
    ) -> None:
        self._pairs = pairs
        self._drop = drop_usage_chunk
        self._pending = b""
        self.usage: Usage | None = None

    def feed(self, data: bytes) -> bytes:
        """Bytes to send now: every complete event so far (the rest waits for more data)."""
        if self._pending:
            data = self._pending + data
            self._pending = b""
        cut = _last_boundary(data)
        if cut < len(data):
            if cut == 0 and len(data) < MAX_PENDING_BYTES:
                self._pending = data
                return b""
            if cut > 0:
                data, self._pending = data[:cut], data[cut:]
        return self._process(data)

    def flush(self) -> bytes:
        """At the end of the stream: whatever incomplete event remains."""
        data, self._pending = self._pending, b""
        return self._process(data) if data else b""

    def _process(self, data: bytes) -> bytes:
        if self._pairs:
            data = replace_all(data, self._pairs)
        if _USAGE in data and has_real_usage(data):
            data = self._take_usage(data)
        return data

    def _take_usage(self, data: bytes) -> bytes:
        pieces = _EVENT_SPLIT.split(data)  # [event, sep, event, sep, ..., tail]
        out: list[bytes] = []
        for i in range(0, len(pieces), 2):
            event = pieces[i]
            sep = pieces[i + 1] if i + 1 < len(pieces) else b""
            if _USAGE in event and has_real_usage(event) and self._keep_event(event) is False:
                continue
            out.append(event + sep)
        return b"".join(out)

    def _keep_event(self, event: bytes) -> bool:
        payload = event_data(event)
        if payload is None:
            return True
        try:
            obj = json.loads(payload)
        except ValueError:
            return True
        usage = usage_from(obj)
        if usage is not None:
            self.usage = merged_usage(self.usage, usage, obj)
        return not (self._drop and isinstance(obj, dict) and is_usage_only_chunk(obj))


def _last_boundary(data: bytes) -> int:
    """Index just past the last blank line (the end of the last complete event), or 0."""
    best = 0
    for sep in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        at = data.rfind(sep)
        if at >= 0:
            best = max(best, at + len(sep))
    return best


USAGE_TAIL_BYTES: Final = 64 * 1024  # a large answer's usage is read from its last bytes
_DECODER: Final = json.JSONDecoder()


class BodyRewriter:
    """A JSON answer too large to hold, passed on piece by piece (sans-IO).

    ``model`` is renamed as in :func:`rewrite_json_body`, also when a piece boundary cuts it:
    output that ends in what may be the start of an upstream ``"model":"..."`` pair is held back
    (at most one pair's length) until the next piece. ``usage`` is read at the end from the last
    :data:`USAGE_TAIL_BYTES` of the answer, where OpenAI's answers put it; an answer whose usage
    sits earlier is charged as if it had none.
    """

    def __init__(self, pairs: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self._pairs = pairs
        self._olds = tuple(old for old, _ in pairs)
        self._longest = max((len(old) for old in self._olds), default=0)
        self._held = b""
        self._tail = b""
        self.usage: Usage | None = None

    def feed(self, data: bytes) -> bytes:
        """Bytes to send now."""
        self._keep_tail(data)
        if not self._pairs:
            return data
        out = replace_all(self._held + data if self._held else data, self._pairs)
        cut = self._partial_start(out)
        self._held = out[cut:]
        return out[:cut]

    def flush(self) -> bytes:
        """At the end of the answer: what was held back; ``usage`` is set."""
        self.usage = usage_in_tail(self._tail)
        held, self._held, self._tail = self._held, b"", b""
        return held

    def _keep_tail(self, data: bytes) -> None:
        if len(data) >= USAGE_TAIL_BYTES:
            self._tail = data[-USAGE_TAIL_BYTES:]
        else:
            self._tail = (self._tail + data)[-USAGE_TAIL_BYTES:]

    def _partial_start(self, out: bytes) -> int:
        """Where the unfinished start of an upstream pair begins at the end of ``out``."""
        at = out.find(b'"', max(0, len(out) - self._longest + 1))
        while at >= 0:
            rest = out[at:]
            if any(old.startswith(rest) for old in self._olds):
                return at
            at = out.find(b'"', at + 1)
        return len(out)


def usage_in_tail(tail: bytes) -> Usage | None:
    """The last ``"usage": {...}`` object in ``tail`` (the end of a JSON answer), if any."""
    at = tail.rfind(_USAGE)
    while at >= 0:
        rest = tail[at + len(_USAGE) :].lstrip()
        if rest.startswith(b":"):
            text = rest[1:].lstrip().decode("utf-8", "replace")
            try:
                obj, _ = _DECODER.raw_decode(text)
            except ValueError:
                obj = None
            usage = usage_from({"usage": obj})
            if usage is not None:
                return usage
        at = tail.rfind(_USAGE, 0, at)
    return None
