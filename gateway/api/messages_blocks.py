"""Messages turns and their content blocks as chat completions messages (pure: no I/O).

:func:`turn_to_chat` gives the chat messages for one turn of a ``POST /v1/messages`` body; the
rest of the request is :mod:`gateway.api.messages_translate`. Each block type Claude Code sends
is translated, dropped or refused (docs/api.md, "Translate mode", has the table and the reasons):

* translated: ``text``, ``image`` (base64 or URL), ``tool_use`` and ``tool_result``, ``document``
  (text or content sources as text; a PDF as a note that names it), ``search_result`` and
  ``tool_reference`` (the result of Claude Code's ToolSearch) as text;
* dropped: ``thinking`` and ``redacted_thinking``, Anthropic's server tools' calls and results
  in assistant turns (``server_tool_use``, ``web_search_tool_result``...), and the block fields
  ``cache_control`` and ``citations``;
* refused with a 400 naming the block: any other type, and image sources other than base64 and
  URLs (a Files API id means nothing to the upstream).
"""

from __future__ import annotations

import json
from typing import Any, Final

from gateway.errors import TranslationError

Json = dict[str, Any]

#: blocks with nothing a chat completions model can read: the reasoning of earlier turns
DROPPED: Final = frozenset({"thinking", "redacted_thinking"})
#: Anthropic's server tools ran on Anthropic's side; their calls have no tool message to pair
SERVER_TOOL_BLOCKS: Final = frozenset({"server_tool_use", "mcp_tool_use", "mcp_tool_result"})
#: the document sources whose bytes a chat completions model cannot read (PDFs, Files API ids)
OPAQUE_DOCUMENTS: Final = frozenset({"base64", "url", "file"})


def system_text(system: object, where: str = "system") -> str:
    """``system`` (a string or text blocks) as one string, blocks joined by blank lines."""
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n\n".join(_text_of(block, f"{where}.{i}") for i, block in enumerate(system))
    raise TranslationError(f"{where}: expected a string or an array of text blocks.", where)


def turn_to_chat(turn: object, where: str) -> list[Json]:
    """One turn; a ``system`` turn inside ``messages`` (Claude Code 2.1 sends one after the
    first user turn) stays a system message where it stands."""
    if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant", "system"):
        raise TranslationError(
            f"{where}.role: expected 'user', 'assistant' or 'system'.", f"{where}.role"
        )
    blocks = _blocks(turn.get("content"), where)
    if turn["role"] == "system":
        return [{"role": "system", "content": system_text(blocks, f"{where}.content")}]
    if turn["role"] == "assistant":
        return [_assistant(blocks, where)]
    return _user(blocks, where)


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


def _unsupported(kind: object, where: str, turn: str = "a message") -> TranslationError:
    return TranslationError(
        f"{where}: block type {kind!r} is not supported in {turn} in translate mode.",
        f"{where}.type",
    )


def _assistant(blocks: list[Json], where: str) -> Json:
    text: list[str] = []
    calls: list[Json] = []
    for i, block in enumerate(blocks):
        at, kind = f"{where}.content.{i}", block.get("type")
        if kind == "text":
            text.append(_text_of(block, at))
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            function = {"name": str(block.get("name", "")), "arguments": arguments}
            calls.append({"id": str(block.get("id", "")), "type": "function", "function": function})
        elif not _server_side(kind):
            raise _unsupported(kind, at, "an assistant turn")
    message: Json = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _server_side(kind: object) -> bool:
    """Blocks an assistant turn may hold that the upstream has no use for (a conversation begun
    with a Claude model: its reasoning, its server tools' calls and results)."""
    if not isinstance(kind, str):
        return False
    server_result = kind.endswith("_tool_result") and kind != "tool_result"
    return kind in DROPPED or kind in SERVER_TOOL_BLOCKS or server_result


def _user(blocks: list[Json], where: str) -> list[Json]:
    """Tool results become ``tool`` messages, placed first: they answer the assistant turn just
    before, which chat completions requires to be followed directly by its tool messages."""
    results: list[Json] = []
    parts: list[Json] = []
    for i, block in enumerate(blocks):
        at = f"{where}.content.{i}"
        if block.get("type") == "tool_result":
            text, images = _tool_result(block, at)
            results.append(
                {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": text}
            )
            parts.extend(images)
        else:
            parts.extend(_part(block, at))
    out = list(results)
    if parts:
        only_text = all(p["type"] == "text" for p in parts)
        content: object = "".join(p["text"] for p in parts) if only_text else parts
        out.append({"role": "user", "content": content})
    return out


def _tool_result(block: Json, where: str) -> tuple[str, list[Json]]:
    """A tool result's text, and its images (a ``tool`` message carries only text)."""
    content = block.get("content")
    texts: list[str] = []
    images: list[Json] = []
    for i, item in enumerate(_blocks("" if content is None else content, where)):
        for part in _part(item, f"{where}.content.{i}"):
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                images.append(part)
    text = "\n".join(texts)
    if block.get("is_error") is True and not text:
        text = "error"
    return text, images


def _part(block: Json, where: str) -> list[Json]:
    """A user turn's or tool result's block as chat content parts (none when dropped)."""
    kind = block.get("type")
    if kind == "text":
        return [_text_part(_text_of(block, where))]
    if kind == "image":
        return [_image(block, where)]
    if kind == "document":
        return [_text_part(_document(block, where))]
    if kind == "search_result":
        return [_text_part(_search_result(block, where))]
    if kind == "tool_reference":
        return [_text_part(f"Tool loaded: {_string(block, 'tool_name', where)}")]
    if kind in DROPPED:
        return []
    raise _unsupported(kind, where)


def _text_part(text: str) -> Json:
    return {"type": "text", "text": text}


def _string(block: Json, name: str, where: str) -> str:
    value = block.get(name)
    if not isinstance(value, str):
        raise TranslationError(f"{where}.{name}: expected a string.", f"{where}.{name}")
    return value


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


def _document(block: Json, where: str) -> str:
    """A document as text: its title, then its text (a plain-text or content source), or a note
    naming it when its bytes are a PDF or a file the upstream cannot read."""
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    title = block.get("title")
    heading = f"Document: {title}\n\n" if isinstance(title, str) and title else ""
    if isinstance(source, dict) and kind == "text":
        return heading + _string(source, "data", f"{where}.source")
    if isinstance(source, dict) and kind == "content":
        return heading + _texts(source.get("content"), f"{where}.source")
    if kind in OPAQUE_DOCUMENTS:
        name = f" {title!r}" if isinstance(title, str) and title else ""
        return f"[Document{name} omitted: this model reads text, not PDFs or uploaded files.]"
    raise TranslationError(
        f"{where}.source: expected a document source of type text, content, base64, url or file.",
        f"{where}.source",
    )


def _search_result(block: Json, where: str) -> str:
    """A search result as text: its title and source, then its text blocks."""
    title, source = _string(block, "title", where), _string(block, "source", where)
    return f"{title}\n{source}\n\n{_texts(block.get('content'), where)}"


def _texts(content: object, where: str) -> str:
    """The text blocks of ``content`` (a string or blocks), joined by blank lines; other blocks
    (a content document's images) are left out."""
    blocks = _blocks(content, where)
    return "\n\n".join(
        _text_of(b, f"{where}.content.{i}")
        for i, b in enumerate(blocks)
        if b.get("type") != "image"
    )
