"""What an admitted request sends its upstream, and how the answer is read (upstream_call): the
choice by route and ``messages_api``, and the translated answers, errors and token counts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.api.messages_stream import MessageSseTranslator
from gateway.api.models import ModelMap, ResolvedModel
from gateway.api.sse import SseRewriter, Usage
from gateway.api.upstream_call import (
    Relayed,
    TokenizeCount,
    TranslatedMessages,
    UpstreamCall,
    upstream_call,
)
from gateway.config import ModelRoute
from gateway.errors import TokensUncountableError, TranslationError, UpstreamFailedError

UP = "Qwen/Qwen3-Coder-30B-A3B-Instruct"
NATIVE = ResolvedModel("qwen3-coder", "office-llm", UP)
TRANSLATED = ResolvedModel("qwen3-coder", "office-llm", UP, "translate")
HEADERS = [
    ("x-api-key", "sk-gateway"),
    ("anthropic-version", "2023-06-01"),
    ("user-agent", "claude-cli"),
]
TURNS = [{"role": "user", "content": "hi"}]


def call(route: str, body: dict[str, Any], resolved: ResolvedModel) -> UpstreamCall:
    return upstream_call(route, HEADERS, json.dumps(body).encode(), body, resolved)


def test_openai_routes_and_native_messages_are_relayed() -> None:
    chat = call("/v1/chat/completions", {"model": "qwen3-coder", "messages": TURNS}, TRANSLATED)
    assert chat.path == "/v1/chat/completions"
    assert isinstance(chat.reader, Relayed)
    body = {"model": "qwen3-coder", "max_tokens": 5, "messages": TURNS, "stream": True}
    native = call("/v1/messages", body, NATIVE)
    assert native.path == "/v1/messages"
    assert json.loads(native.body)["model"] == UP
    assert ("anthropic-version", "2023-06-01") in native.headers
    assert all(k != "x-api-key" for k, _ in native.headers)
    assert isinstance(native.reader, Relayed)
    assert isinstance(native.reader.stream(), SseRewriter)


def test_translated_messages_go_to_chat_completions() -> None:
    body = {
        "model": "qwen3-coder", "max_tokens": 5, "messages": TURNS, "stream": True,
        "stop_sequences": ["END"], "thinking": {"type": "enabled", "budget_tokens": 9},
        "chat_template_kwargs": {"enable_thinking": False},
    }  # fmt: skip
    sent = call("/v1/messages", body, TRANSLATED)
    assert sent.path == "/v1/chat/completions"
    assert sent.headers == [("user-agent", "claude-cli"), ("content-type", "application/json")]
    chat = json.loads(sent.body)
    assert chat["model"] == UP
    assert chat["stop"] == ["END"]
    assert chat["stream_options"] == {"include_usage": True}
    assert "thinking" not in chat  # Anthropic's own: dropped
    assert chat["chat_template_kwargs"] == {"enable_thinking": False}  # anything else passes
    assert sent.reader == TranslatedMessages("qwen3-coder", ("END",))
    assert isinstance(sent.reader.stream(), MessageSseTranslator)


def test_translated_count_tokens_uses_tokenize() -> None:
    sent = call(
        "/v1/messages/count_tokens", {"model": "qwen3-coder", "messages": TURNS}, TRANSLATED
    )
    assert sent.path == "/tokenize"
    assert json.loads(sent.body) == {"model": UP, "messages": TURNS}
    reader = sent.reader
    assert isinstance(reader, TokenizeCount)
    data, usage = reader.whole(b'{"count": 7, "max_model_len": 32768, "tokens": [1]}')
    assert (json.loads(data), usage) == ({"input_tokens": 7}, None)  # counting charges nothing
    for status in (404, 405):
        with pytest.raises(TokensUncountableError) as missing:
            reader.error(status, b'{"detail": "Not Found"}')
        assert missing.value.status == 404
        assert "`qwen3-coder` cannot count tokens" in missing.value.message
    other = json.loads(reader.error(500, b'{"error": {"message": "boom", "type": "x"}}'))
    assert other == {"type": "error", "error": {"type": "api_error", "message": "boom"}}
    with pytest.raises(UpstreamFailedError):
        reader.whole(b'{"tokens": "none"}')


def test_translated_whole_answer_usage_and_errors() -> None:
    reader = TranslatedMessages("qwen3-coder")
    answer = {
        "id": "chatcmpl-9",
        "model": UP,
        "choices": [{"index": 0, "message": {"content": "yes"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    data, usage = reader.whole(json.dumps(answer).encode())
    message = json.loads(data)
    assert message["model"] == "qwen3-coder"
    assert message["stop_reason"] == "max_tokens"
    assert message["content"] == [{"type": "text", "text": "yes"}]
    assert usage == Usage(3, 1)
    assert reader.content_type == "application/json"
    assert reader.pieces(ok=True) is None  # a Message is made from the whole answer only
    error = json.loads(reader.error(429, b'{"error": {"message": "slow down"}}'))
    assert error == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    for bad in (b"<html>", b"[1]", b'{"choices": 5}'):
        with pytest.raises(UpstreamFailedError):
            reader.whole(bad)


def test_translated_stream_usage_is_known_at_the_end() -> None:
    stream = TranslatedMessages("qwen3-coder").stream()
    chunk = {"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}}]}
    out = stream.feed(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    assert b"event: message_start" in out
    assert b"text_delta" in out
    assert stream.usage is None  # a client leaving now is charged an estimate
    usage = {"id": "c", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 1}}
    stream.feed(b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n")
    assert stream.usage == Usage(4, 1)
    assert b"event: message_stop" in stream.flush()


def test_untranslatable_stop_sequences_are_400() -> None:
    body = {"model": "qwen3-coder", "max_tokens": 5, "messages": TURNS, "stop_sequences": "END"}
    with pytest.raises(TranslationError) as bad:
        call("/v1/messages", body, TRANSLATED)
    assert bad.value.param == "stop_sequences"


def test_a_models_own_id_takes_its_alias_mode() -> None:
    routes = {"qwen3-coder": ModelRoute("office-llm", UP, messages_api="translate")}
    m = ModelMap(routes)
    assert m.resolve("qwen3-coder", None).messages_api == "translate"
    assert m.resolve(UP, None).messages_api == "translate"
    m.learn("office-llm", ["other-model"])
    assert m.resolve("other-model", None).messages_api == "native"
