"""OpenAI and Anthropic Messages wire shapes, deterministic helpers of the stand-in (pure)."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Final

DEFAULT_MODELS = ("Qwen/Qwen3-Coder-30B-A3B-Instruct", "text-embedding-test")
DEFAULT_REPLY_WORDS = ("Hello", "from", "the", "stand-in", "LLM.")
BULK_BLOCK_SIZE = 65536
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
Json = dict[str, Any]


# --------------------------------------------------------------------------- pure helpers


def _make_bulk_block() -> bytes:
    parts = (hashlib.sha256(b"standin-%d" % i).digest() for i in range(BULK_BLOCK_SIZE // 32))
    return b"".join(parts)


BULK_BLOCK = _make_bulk_block()


def bulk_chunks(n: int, chunk_size: int = BULK_BLOCK_SIZE) -> Iterator[bytes]:
    """The deterministic bytes of ``GET /v1/bulk/download?bytes=n``, in chunks."""
    view = memoryview(BULK_BLOCK)
    remaining = n
    while remaining > 0:
        size = min(remaining, chunk_size, BULK_BLOCK_SIZE)
        yield bytes(view[:size])
        remaining -= size


def bulk_bytes(n: int) -> bytes:
    return b"".join(bulk_chunks(n))


def bulk_sha256(n: int) -> str:
    digest = hashlib.sha256()
    for chunk in bulk_chunks(n):
        digest.update(chunk)
    return digest.hexdigest()


def count_words(value: Any) -> int:
    """Deterministic token count: whitespace-separated words in every text found in ``value``."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, int):
        return 1  # a token id
    if isinstance(value, list):
        return sum(count_words(item) for item in value)
    if isinstance(value, dict):
        texts = [value[k] for k in ("content", "text", "input", "output") if k in value]
        return sum(count_words(t) for t in texts)
    return 0


def prompt_tokens_for(path: str, body: Json) -> int:
    if path.endswith(("/messages", "/messages/count_tokens")):
        n = count_words(body.get("messages", [])) + count_words(body.get("system") or "")
    elif path.endswith("/chat/completions"):
        n = count_words(body.get("messages", []))
    elif path.endswith("/completions"):
        n = count_words(body.get("prompt", ""))
    elif path.endswith("/embeddings"):
        n = count_words(body.get("input", ""))
    else:
        n = count_words(body.get("input", "")) + count_words(body.get("instructions") or "")
    return max(n, 1)


def embedding_vector(text: str, dims: int) -> list[float]:
    """Deterministic floats in [-1, 1), exactly representable as float32."""
    out: list[float] = []
    counter = 0
    while len(out) < dims:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        out.extend((b - 128) / 128 for b in digest)
        counter += 1
    return out[:dims]


def encode_base64_floats(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [json.dumps(value)]
    if isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v) for v in value]
    return [json.dumps(value)]


def sse(data: Json | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def error_body(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> Json:
    kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
    if status == 429:
        kind = code = "rate_limit_exceeded"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


ANTHROPIC_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def anthropic_error_body(status: int, message: str) -> Json:
    kind = ANTHROPIC_ERROR_TYPES.get(
        status, "api_error" if status >= 500 else "invalid_request_error"
    )
    return {"type": "error", "error": {"type": kind, "message": message}}


@dataclass(frozen=True)
class Controls:
    chunks: int = 5
    pace_ms: float = 0.0
    first_delay_ms: float = 0.0
    status: int | None = None
    fail_after: int | None = None
    timestamps: bool = False
    reply: str | None = None
    piece_bytes: int = 0
    head_delay_ms: float = 0.0

    _HEADERS = (
        ("chunks", "x-standin-chunks", int),
        ("pace_ms", "x-standin-pace-ms", float),
        ("first_delay_ms", "x-standin-first-delay-ms", float),
        ("status", "x-standin-status", int),
        ("fail_after", "x-standin-fail-after", int),
        ("timestamps", "x-standin-timestamps", lambda v: v.lower() in ("1", "true", "yes")),
    )

    def merged(self, headers: dict[str, str], body: Json) -> Controls:
        values = asdict(self)
        for name, header, convert in self._HEADERS:
            if header in headers:
                values[name] = convert(headers[header])
        extra = body.get("standin")
        if isinstance(extra, dict):
            values.update({k: v for k, v in extra.items() if k in values})
        return Controls(**values)

    def piece(self, i: int) -> str:
        """Content piece ``i`` of the answer (its trailing space included, but the last's),
        padded with ``x`` to ``piece_bytes`` when that is set (large answers, few chunks)."""
        text = self._piece_text(i)
        return text + "x" * (self.piece_bytes - len(text)) if self.piece_bytes else text

    def _piece_text(self, i: int) -> str:
        if self.reply is not None:
            words = self.reply.split(" ")
            return words[i] + (" " if i < len(words) - 1 else "")
        if self.timestamps:
            return f"w{i}@t={time.monotonic_ns()} "
        return DEFAULT_REPLY_WORDS[i % len(DEFAULT_REPLY_WORDS)] + " "

    def count(self) -> int:
        return len(self.reply.split(" ")) if self.reply is not None else self.chunks


def chat_usage(prompt: int, completion: int) -> Json:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def response_object(
    body: Json, model: str, ident: str, status: str, text: str, usage: Json | None
) -> Json:
    output = []
    if status == "completed":
        output.append(
            {
                "id": "msg_" + ident[5:],
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                ],
            }
        )
    return {
        "id": ident,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "metadata": {},
    }


def response_usage(prompt: int, completion: int) -> Json:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


@dataclass
class RecordedRequest:
    id: int
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any = None  # parsed JSON, or None
    body_size: int = 0
    body_sha256: str | None = None
    started_ns: int = field(default_factory=time.monotonic_ns)
    started_wall: float = field(default_factory=time.time)
    ended_ns: int | None = None
    status: int | None = None
    completed: bool = False
    disconnected: bool = False
    chunks_sent: int = 0
    usage: Json | None = None
    model: str | None = None

    def as_dict(self) -> Json:
        return asdict(self)


# ---- Anthropic's Messages API (native mode)


def wants_tool_use(body: Json) -> bool:
    """A tool call is answered when the request has ``tools``, does not forbid them
    (``tool_choice: {"type": "none"}``) and its last turn is not a ``tool_result`` (the model
    has not yet seen the tool's answer)."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools:
        return False
    if isinstance(choice, dict) and choice.get("type") == "none":
        return False
    turns = body.get("messages") or [{}]
    content = turns[-1].get("content") if isinstance(turns[-1], dict) else None
    if isinstance(content, list):
        return not any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
    return True


def tool_use_block(body: Json) -> Json:
    """The ``tool_use`` block calling the request's first tool, with a fixed input."""
    name = str(body["tools"][0].get("name", "tool"))
    return {"type": "tool_use", "id": "toolu_standin_1", "name": name, "input": TOOL_INPUT}


TOOL_INPUT: Final = {"location": "Paris", "unit": "celsius"}


def message_usage(prompt: int, completion: int) -> Json:
    return {"input_tokens": prompt, "output_tokens": completion}


def message_object(
    model: str, ident: str, content: list[Json], stop_reason: str | None, usage: Json
) -> Json:
    return {
        "id": ident,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


# ---- OpenAI's chat completions: tool calls and stop strings; vLLM's /tokenize

CHAT_TOOL_CALL_ID: Final = "call_standin_1"


def wants_tool_call(body: Json) -> bool:
    """Chat completions: a tool call is answered when the request offers ``tools``, does not say
    ``tool_choice: "none"``, and its last message is not a ``tool`` message (the tool's answer)."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools or body.get("tool_choice") == "none":
        return False
    messages = body.get("messages") or [{}]
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    return last.get("role") != "tool"


def chat_tool_call(body: Json) -> Json:
    """The call of the tool ``tool_choice`` names, else of the first tool, with
    :data:`TOOL_INPUT` as its arguments (a JSON string, as OpenAI sends them)."""
    choice = body.get("tool_choice")
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if not isinstance(name, str):
        first = body["tools"][0] if isinstance(body["tools"][0], dict) else {}
        name = str((first.get("function") or {}).get("name", "tool"))
    function = {"name": name, "arguments": json.dumps(TOOL_INPUT)}
    return {"id": CHAT_TOOL_CALL_ID, "type": "function", "function": function}


def stop_strings(value: object) -> tuple[str, ...]:
    """``stop`` (chat: a string or a list) or ``stop_sequences`` (Messages: a list)."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(s for s in value if isinstance(s, str) and s)
    return ()


@dataclass
class StopWatch:
    """The answer's text as it is generated, ended where a stop string first appears: the stop
    string is left out and named in ``matched`` (vLLM's ``stop_reason``). Text already sent
    stays sent (a stop string split over two pieces cuts the second). Only the text's last
    characters are kept (a stop string's length less one): answers may be tens of megabytes."""

    stops: tuple[str, ...]
    pieces: int = 0  # pieces generated (= completion tokens)
    matched: str | None = None
    _tail: str = ""

    def take(self, piece: str) -> str:
        """What of ``piece`` goes out."""
        if self.matched is not None:
            return ""
        self.pieces += 1
        if not self.stops:
            return piece
        window = self._tail + piece
        hits = [(window.find(s), s) for s in self.stops if s in window]
        if hits:
            at, self.matched = min(hits)
            return piece[: max(at - len(self._tail), 0)]
        keep = max(len(s) for s in self.stops) - 1
        self._tail = window[len(window) - keep :] if keep else ""
        return piece


def tokenize_answer(body: Json, max_model_len: int = 32768) -> Json:
    """vLLM's ``POST /tokenize`` answer for ``messages`` (chat) or ``prompt``: the count is
    what the chat completions route reports as ``prompt_tokens`` for the same prompt."""
    path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
    count = prompt_tokens_for(path, body)
    return {"count": count, "max_model_len": max_model_len, "tokens": list(range(1, count + 1))}
