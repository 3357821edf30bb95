"""What an admitted API request sends its upstream, and how the answer is read back (pure).

:func:`upstream_call` chooses by the client's route and the model's ``messages_api``:

=========================================  ============================  ==========================
client's route                             sent upstream                 answer read by
=========================================  ============================  ==========================
OpenAI's routes; Messages, ``native``      the same path, the client's   :class:`Relayed` (model
                                           body (model renamed)          renamed back, usage read)
``/v1/messages``, ``translate``            ``/v1/chat/completions``      :class:`TranslatedMessages`
``/v1/messages/count_tokens``,             ``/tokenize`` (vLLM's)        :class:`TokenizeCount`
``translate``
=========================================  ============================  ==========================

The translation itself is :mod:`gateway.api.messages_translate` and
:mod:`gateway.api.messages_stream`. :class:`gateway.api.forwarding.UpstreamForwarder` sends the
call and feeds the answer to its reader; the relay (timeouts, keep-alives, backpressure, the
settling of tokens) is one for every route and mode.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from gateway.api.answer import JSON_TYPE
from gateway.api.body_rewrite import client_asked_usage, upstream_body, wants_stream
from gateway.api.messages_stream import MessageSseTranslator
from gateway.api.messages_translate import (
    chat_error_to_message_error,
    chat_to_message,
    count_from_tokenize,
    items,
    messages_to_chat,
    tokenize_request,
)
from gateway.api.models import ResolvedModel
from gateway.api.sse import (
    BodyRewriter,
    SseRewriter,
    Usage,
    model_replacements,
    rewrite_json_body,
    usage_from,
)
from gateway.errors import TokensUncountableError, UpstreamFailedError

MESSAGES_ROUTE: Final = "/v1/messages"
COUNT_TOKENS_ROUTE: Final = "/v1/messages/count_tokens"
MESSAGES_ROUTES: Final = (MESSAGES_ROUTE, COUNT_TOKENS_ROUTE)  # Anthropic's
CHAT_PATH: Final = "/v1/chat/completions"
TOKENIZE_PATH: Final = "/tokenize"  # vLLM serves it beside /v1, not under it
NO_TOKENIZE: Final = frozenset({404, 405})  # an upstream without /tokenize
FORWARDED_HEADERS: Final = frozenset({"content-type", "accept", "user-agent", "openai-beta"})
ANTHROPIC_HEADERS: Final = frozenset({"anthropic-version", "anthropic-beta"})  # native Messages
Json = dict[str, Any]


def forward_headers(
    headers: Iterable[tuple[str, str]], also: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """Only the headers an upstream needs (and the route's own, ``also``); never the client's
    ``authorization`` or ``x-api-key``."""
    allowed = FORWARDED_HEADERS | also
    out = [(k.lower(), v) for k, v in headers if k.lower() in allowed]
    if not any(k == "content-type" for k, _ in out):
        out.append(("content-type", "application/json"))
    return out


class StreamRewriter(Protocol):
    """Upstream bytes in, the client's bytes out, whole events at a time; ``usage`` once known."""

    @property
    def usage(self) -> Usage | None: ...
    def feed(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class AnswerReader(Protocol):
    """How one call's answer becomes the client's."""

    @property
    def content_type(self) -> str | None:
        """The client's content type of a whole answer; None: the upstream's."""

    def stream(self) -> StreamRewriter:
        """For an SSE answer."""

    def whole(self, data: bytes) -> tuple[bytes, Usage | None]:
        """A complete 2xx answer and its usage."""

    def error(self, status: int, data: bytes) -> bytes:
        """A complete error answer (or an :class:`~gateway.errors.ApiError` raised)."""

    def pieces(self, ok: bool) -> StreamRewriter | None:
        """For a JSON answer too large to hold; None when it cannot be passed on in pieces."""


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    reader: AnswerReader


@dataclass(frozen=True, slots=True)
class Relayed:
    """The upstream speaks the client's API: its answer is passed on, the model renamed back,
    usage read (and the usage chunk the gateway asked for hidden when ``drop_usage_chunk``)."""

    pairs: tuple[tuple[bytes, bytes], ...]
    drop_usage_chunk: bool = False
    content_type: str | None = None

    def stream(self) -> SseRewriter:
        return SseRewriter(self.pairs, drop_usage_chunk=self.drop_usage_chunk)

    def whole(self, data: bytes) -> tuple[bytes, Usage | None]:
        return rewrite_json_body(data, self.pairs)

    def error(self, status: int, data: bytes) -> bytes:  # passed on as it is
        return data

    def pieces(self, ok: bool) -> BodyRewriter:
        return BodyRewriter(self.pairs if ok else ())


@dataclass(frozen=True, slots=True)
class TranslatedMessages:
    """A chat completion (whole or streamed) as Anthropic's Message; errors in its shape."""

    alias: str
    stops: tuple[str, ...] = ()
    content_type: str | None = JSON_TYPE

    def stream(self) -> MessageSseTranslator:
        return MessageSseTranslator(self.alias, self.stops)

    def whole(self, data: bytes) -> tuple[bytes, Usage | None]:
        answer = _json_object(data)
        if not items(answer.get("choices")):
            raise _unreadable("a chat completion")
        message = chat_to_message(answer, self.alias, self.stops)
        return _dumps(message), usage_from(answer)

    def error(self, status: int, data: bytes) -> bytes:
        return _dumps(chat_error_to_message_error(status, data))

    def pieces(self, ok: bool) -> None:  # made from the whole
        return None


@dataclass(frozen=True, slots=True)
class TokenizeCount(TranslatedMessages):
    """vLLM's ``/tokenize`` answer as ``count_tokens``'; an upstream without ``/tokenize``
    (404, 405) is the client's :class:`~gateway.errors.TokensUncountableError`."""

    def whole(self, data: bytes) -> tuple[bytes, Usage | None]:
        count = count_from_tokenize(_json_object(data))
        if count is None:
            raise _unreadable("a /tokenize answer")
        return _dumps({"input_tokens": count}), None  # counting charges no tokens

    def error(self, status: int, data: bytes) -> bytes:
        if status in NO_TOKENIZE:
            raise TokensUncountableError(self.alias)
        return TranslatedMessages.error(self, status, data)


def upstream_call(
    route: str, headers: Iterable[tuple[str, str]], raw: bytes, body: Json, resolved: ResolvedModel
) -> UpstreamCall:
    """The call for an admitted request (its body already checked by ``parse_body``)."""
    messages = route in MESSAGES_ROUTES
    if messages and resolved.messages_api == "translate":
        return translated_call(route, headers, body, resolved)
    drop = wants_stream(body) and not messages and not client_asked_usage(body)
    reader = Relayed(model_replacements(resolved.model, resolved.name), drop_usage_chunk=drop)
    also = ANTHROPIC_HEADERS if messages else frozenset()
    sent = upstream_body(raw, body, route, resolved)
    return UpstreamCall(route, forward_headers(headers, also), sent, reader)


def translated_call(
    route: str, headers: Iterable[tuple[str, str]], body: Json, resolved: ResolvedModel
) -> UpstreamCall:
    """A Messages request for an upstream that speaks only chat completions (and, to count
    tokens, vLLM's ``/tokenize``); Anthropic's headers mean nothing to it."""
    sent = forward_headers(headers)
    if route == COUNT_TOKENS_ROUTE:
        count = _dumps(tokenize_request(body, resolved.model))
        return UpstreamCall(TOKENIZE_PATH, sent, count, TokenizeCount(resolved.name))
    chat = _dumps(messages_to_chat(body, resolved.model))  # stop_sequences checked there
    reader = TranslatedMessages(resolved.name, tuple(body.get("stop_sequences") or ()))
    return UpstreamCall(CHAT_PATH, sent, chat, reader)


def _dumps(obj: object) -> bytes:
    # an upstream's lone surrogate cannot be UTF-8: replaced rather than failing the answer
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")


def _json_object(data: bytes) -> Json:
    try:
        obj = json.loads(data)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise _unreadable("JSON")
    return obj


def _unreadable(what: str) -> UpstreamFailedError:
    return UpstreamFailedError(f"The upstream's answer is not {what} the gateway can translate.")
