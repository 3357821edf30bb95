"""Anthropic's Messages API <-> OpenAI chat completions, both ways (pure: no I/O).

For model aliases with ``messages_api = "translate"`` the upstream speaks only OpenAI's chat
completions. This module turns a ``POST /v1/messages`` body into a chat completions body
(:func:`messages_to_chat`) and a chat completion into a Message (:func:`chat_to_message`); the
stream direction is :mod:`gateway.api.messages_stream`.

What has no counterpart is dropped, never invented: ``cache_control``, ``thinking`` and
``redacted_thinking`` blocks of earlier turns, server tools (they have no ``input_schema``),
``metadata`` other than ``user_id``, the request fields only Anthropic's API knows
(:data:`ANTHROPIC_ONLY`), and the upstream's ``reasoning_content``. Any other top-level field
passes through as it is, as in native mode (a client's ``extra_body`` reaches the upstream:
vLLM's ``chat_template_kwargs``, ``repetition_penalty``...). What cannot be carried faithfully
(documents, image sources other than base64 and URLs) is refused with a 400 that names the field.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any, Final

from gateway.api.sse import Usage, usage_from
from gateway.errors import TranslationError

Json = dict[str, Any]
Event = tuple[str, Json]

#: OpenAI ``finish_reason`` -> Anthropic ``stop_reason``
STOP_REASONS: Final = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
#: HTTP status -> Anthropic error ``type`` (https://docs.anthropic.com/en/api/errors)
ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_SAMPLING: Final = ("temperature", "top_p", "top_k")
#: the Messages fields :func:`messages_to_chat` translates
TRANSLATED: Final = frozenset(
    {"model", "messages", "system", "max_tokens", "stop_sequences", "stream", "tools"}
    | {"tool_choice", "metadata", *_SAMPLING}
)
#: Messages fields with no chat completions counterpart: dropped
ANTHROPIC_ONLY: Final = frozenset(
    {"thinking", "service_tier", "container", "mcp_servers", "context_management"}
    | {"anthropic_version", "anthropic_beta", "output_format", "output_config"}
)


def error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status."""
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


# --------------------------------------------------------------------------- request


def messages_to_chat(body: Json, upstream_model: str) -> Json:
    """The chat completions body for a Messages body (already checked to be an object)."""
    messages: list[Json] = []
    system = body.get("system")
    if system is not None:
        messages.append({"role": "system", "content": _system_text(system)})
    turns = body.get("messages")
    if not isinstance(turns, list):
        raise TranslationError("messages: expected an array of messages.", "messages")
    for i, turn in enumerate(turns):
        messages.extend(_turn(turn, f"messages.{i}"))
    out: Json = {"model": upstream_model, "messages": messages}
    max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        out["max_tokens"] = max_tokens
    for name in _SAMPLING:
        if body.get(name) is not None:
            out[name] = body[name]
    stops = body.get("stop_sequences")
    if stops is not None and not (
        isinstance(stops, list) and all(isinstance(s, str) for s in stops)
    ):
        raise TranslationError("stop_sequences: expected an array of strings.", "stop_sequences")
    if stops:
        out["stop"] = list(stops)
    tools = [_tool(t, f"tools.{i}") for i, t in enumerate(body.get("tools") or [])]
    if any(tools):
        out["tools"] = [t for t in tools if t]
    choice = body.get("tool_choice")
    if choice is not None:
        out.update(_tool_choice(choice))
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # usage is known at the end
    skipped = TRANSLATED | ANTHROPIC_ONLY
    out.update((k, v) for k, v in body.items() if k not in skipped and k not in out)
    return out


def _system_text(system: object, where: str = "system") -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n\n".join(_text_of(block, f"{where}.{i}") for i, block in enumerate(system))
    raise TranslationError(f"{where}: expected a string or an array of text blocks.", where)


def _text_of(block: object, where: str) -> str:
    if (
        isinstance(block, dict)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    ):
        return str(block["text"])
    raise TranslationError(f"{where}: expected a text block.", where)


def _blocks(content: object, where: str) -> list[Json]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        return content
    raise TranslationError(f"{where}.content: expected a string or an array of blocks.", where)


def _turn(turn: object, where: str) -> list[Json]:
    """One turn; a ``system`` turn inside ``messages`` (Claude Code 2.1 sends one after the
    first user turn) stays a system message where it stands."""
    if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant", "system"):
        raise TranslationError(
            f"{where}.role: expected 'user', 'assistant' or 'system'.", f"{where}.role"
        )
    blocks = _blocks(turn.get("content"), where)
    if turn["role"] == "system":
        return [{"role": "system", "content": _system_text(blocks, f"{where}.content")}]
    if turn["role"] == "assistant":
        return [_assistant(blocks, where)]
    return _user(blocks, where)


def _assistant(blocks: list[Json], where: str) -> Json:
    text: list[str] = []
    calls: list[Json] = []
    for i, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "text":
            text.append(_text_of(block, f"{where}.content.{i}"))
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            function = {"name": str(block.get("name", "")), "arguments": arguments}
            calls.append({"id": str(block.get("id", "")), "type": "function", "function": function})
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise TranslationError(
                f"{where}.content.{i}: block type {kind!r} is not supported in an assistant turn.",
                f"{where}.content.{i}.type",
            )
    message: Json = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _user(blocks: list[Json], where: str) -> list[Json]:
    """Tool results become ``tool`` messages, placed first: they answer the assistant turn just
    before, which chat completions requires to be followed directly by its tool messages."""
    results: list[Json] = []
    parts: list[Json] = []
    for i, block in enumerate(blocks):
        at = f"{where}.content.{i}"
        kind = block.get("type")
        if kind == "tool_result":
            text, images = _tool_result(block, at)
            results.append(
                {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": text}
            )
            parts.extend(images)
        elif kind == "text":
            parts.append({"type": "text", "text": _text_of(block, at)})
        elif kind == "image":
            parts.append(_image(block, at))
        else:
            raise TranslationError(
                f"{at}: block type {kind!r} is not supported in translate mode.", f"{at}.type"
            )
    out = list(results)
    if parts:
        only_text = all(p["type"] == "text" for p in parts)
        content: object = "".join(p["text"] for p in parts) if only_text else parts
        out.append({"role": "user", "content": content})
    return out


def _tool_result(block: Json, where: str) -> tuple[str, list[Json]]:
    content = block.get("content")
    if content is None:
        content = ""
    texts: list[str] = []
    images: list[Json] = []
    for i, part in enumerate(_blocks(content, where)):
        if part.get("type") == "image":
            images.append(_image(part, f"{where}.content.{i}"))
        else:
            texts.append(_text_of(part, f"{where}.content.{i}"))
    text = "\n".join(texts)
    if block.get("is_error") is True and not text:
        text = "error"
    return text, images


def _image(block: Json, where: str) -> Json:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif isinstance(source, dict) and source.get("type") == "url":
        url = str(source.get("url", ""))
    else:
        raise TranslationError(
            f"{where}.source: only base64 and url image sources can be translated.",
            f"{where}.source",
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _tool(tool: object, where: str) -> Json | None:
    """A custom tool as a function; server tools (no ``input_schema``) are dropped."""
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise TranslationError(f"{where}: expected a tool with a name.", where)
    schema = tool.get("input_schema")
    if schema is None:
        return None
    function: Json = {"name": tool["name"], "parameters": schema}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: object) -> Json:
    if not isinstance(choice, dict):
        raise TranslationError("tool_choice: expected an object.", "tool_choice")
    kind = choice.get("type")
    out: Json
    if kind == "auto":
        out = {"tool_choice": "auto"}
    elif kind == "any":
        out = {"tool_choice": "required"}
    elif kind == "none":
        out = {"tool_choice": "none"}
    elif kind == "tool" and isinstance(choice.get("name"), str):
        out = {"tool_choice": {"type": "function", "function": {"name": choice["name"]}}}
    else:
        raise TranslationError(
            "tool_choice.type: expected 'auto', 'any', 'tool' (with a name) or 'none'.",
            "tool_choice.type",
        )
    if choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False
    return out


# --------------------------------------------------------------------------- answer


def message_id(chat_id: object) -> str:
    text = str(chat_id) if chat_id else uuid.uuid4().hex
    return "msg_" + text.removeprefix("chatcmpl-")


def stop_of(choice: Json, stops: Iterable[str] = ()) -> tuple[str, str | None]:
    """``(stop_reason, stop_sequence)`` for a finished choice. vLLM names the stop string that
    matched in ``stop_reason``; otherwise a stop with stop sequences requested stays ``end_turn``
    (chat completions does not say whether the model ended or a sequence matched)."""
    finish = choice.get("finish_reason")
    matched = choice.get("stop_reason")
    if finish == "stop" and isinstance(matched, str) and matched in set(stops):
        return "stop_sequence", matched
    return STOP_REASONS.get(str(finish), "end_turn"), None


def tool_input(arguments: object) -> Json:
    """A tool call's arguments as the ``input`` object Anthropic requires."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(str(arguments or "{}"))
    except ValueError:
        return {"_arguments": str(arguments)}
    return value if isinstance(value, dict) else {"_arguments": value}


def obj(value: object) -> Json:
    """``value`` if it is a JSON object, else an empty one (an upstream's answer is read
    leniently: what is not where it should be is absent)."""
    return value if isinstance(value, dict) else {}


def items(value: object) -> list[Json]:
    """The objects in ``value`` if it is an array, else none."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def chat_to_message(answer: Json, alias: str, stops: Iterable[str] = ()) -> Json:
    """A whole chat completion as a Message."""
    choice = next(iter(items(answer.get("choices"))), {})
    message = obj(choice.get("message"))
    content: list[Json] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in items(message.get("tool_calls")):
        function = obj(call.get("function"))
        content.append(
            {
                "type": "tool_use",
                "id": str(call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}"),
                "name": str(function.get("name", "")),
                "input": tool_input(function.get("arguments")),
            }
        )
    reason, sequence = stop_of(choice, stops)
    usage = usage_from({"usage": answer.get("usage")}) or Usage()
    return {
        "id": message_id(answer.get("id")),
        "type": "message",
        "role": "assistant",
        "model": alias,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens},
    }


def error_body(status: int, message: str, kind: str | None = None) -> Json:
    return {"type": "error", "error": {"type": kind or error_type(status), "message": message}}


def chat_error_to_message_error(status: int, data: bytes) -> Json:
    """An upstream's OpenAI-shaped error as Anthropic's, keeping its message."""
    try:
        message = str(json.loads(data)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = f"The upstream answered {status}."
    return error_body(status, message)


# --------------------------------------------------------------------------- count_tokens


def tokenize_request(body: Json, upstream_model: str) -> Json:
    """The body of vLLM's ``POST /tokenize`` that counts a Messages request's prompt."""
    chat = messages_to_chat({**body, "stream": False}, upstream_model)
    out: Json = {"model": upstream_model, "messages": chat["messages"]}
    if "tools" in chat:
        out["tools"] = chat["tools"]
    return out


def count_from_tokenize(answer: object) -> int | None:
    """``count`` from a ``/tokenize`` answer, or None when it has none."""
    if isinstance(answer, dict):
        count = answer.get("count")
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            return count
        tokens = answer.get("tokens")
        if isinstance(tokens, list):
            return len(tokens)
    return None
