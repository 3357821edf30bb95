"""The content blocks Claude Code 2.x sends, in translate mode: each is translated, dropped with a
reason (docs/api.md, "Translate mode"), or refused with a 400 that names the block type."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.api.messages_translate import messages_to_chat
from gateway.errors import TranslationError

TOOL_SEARCH = {"type": "tool_use", "id": "toolu_s", "name": "ToolSearch", "input": {"query": "x"}}
PDF = {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}


def chat_messages(*turns: dict[str, Any], **body: Any) -> list[Any]:
    request = {"model": "m", "max_tokens": 5, "messages": list(turns), **body}
    return list(messages_to_chat(request, "up")["messages"])


def test_tool_search_results_name_the_loaded_tools() -> None:
    """Claude Code's ToolSearch answers with ``tool_reference`` blocks; deferred tools are
    offered from the start (chat completions has no ``defer_loading``)."""
    deferred = {"name": "TaskCreate", "input_schema": {"type": "object"}, "defer_loading": True}
    references = [
        {"type": "tool_reference", "tool_name": "TaskCreate"},
        {"type": "tool_reference", "tool_name": "TaskUpdate", "cache_control": {"type": "x"}},
    ]
    result = {"type": "tool_result", "tool_use_id": "toolu_s", "content": references}
    chat = messages_to_chat(
        {
            "model": "m",
            "max_tokens": 5,
            "tools": [deferred],
            "messages": [
                {"role": "user", "content": "plan it"},
                {"role": "assistant", "content": [TOOL_SEARCH]},
                {"role": "user", "content": [result]},
            ],
        },
        "up",
    )
    assert chat["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "toolu_s",
        "content": "Tool loaded: TaskCreate\nTool loaded: TaskUpdate",
    }
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "TaskCreate", "parameters": {"type": "object"}}}
    ]


def test_a_turn_begun_with_a_claude_model_drops_what_ran_on_anthropics_side() -> None:
    """Switching model mid-session: thinking, server tools' calls and results are dropped, the
    text (its citations aside) and the client's tool calls are kept."""
    cited = {
        "type": "text",
        "text": "Paris.",
        "citations": [{"type": "web_search_result_location"}],
    }
    assistant = [
        {"type": "thinking", "thinking": "...", "signature": "s"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
        {"type": "web_fetch_tool_result", "tool_use_id": "srvtoolu_2", "content": {}},
        cited,
        TOOL_SEARCH,
    ]
    messages = chat_messages({"role": "assistant", "content": assistant})
    assert messages == [
        {
            "role": "assistant",
            "content": "Paris.",
            "tool_calls": [
                {
                    "id": "toolu_s",
                    "type": "function",
                    "function": {"name": "ToolSearch", "arguments": '{"query": "x"}'},
                }
            ],
        }
    ]


def test_documents_and_search_results_become_text() -> None:
    search = {
        "type": "search_result",
        "title": "Guide",
        "source": "https://example.test/guide",
        "content": [{"type": "text", "text": "Step one."}],
        "citations": {"enabled": True},
    }
    user = [
        {"type": "document", "title": "notes.txt", "source": {"type": "text", "data": "hello"}},
        {"type": "document", "source": {"type": "content", "content": "plain"}},
        {"type": "document", "title": "spec.pdf", "source": PDF, "cache_control": {}},
        {"type": "tool_result", "tool_use_id": "t", "content": [search]},
    ]
    tool, asked = chat_messages({"role": "user", "content": user})
    assert tool == {
        "role": "tool",
        "tool_call_id": "t",
        "content": "Guide\nhttps://example.test/guide\n\nStep one.",
    }
    assert asked["content"] == (
        "Document: notes.txt\n\nhello"
        "plain"
        "[Document 'spec.pdf' omitted: this model reads text, not PDFs or uploaded files.]"
    )


def test_a_pdf_read_by_a_tool_does_not_wedge_the_session() -> None:
    """Claude Code's Read tool answers a PDF as a document block: it stays in every later
    request, so a 400 would end the session; the model is told it was left out instead."""
    result = {
        "type": "tool_result",
        "tool_use_id": "t",
        "content": [{"type": "document", "source": PDF}],
    }
    (tool,) = chat_messages({"role": "user", "content": [result]})
    assert "omitted" in tool["content"]


@pytest.mark.parametrize(
    ("turn", "param", "named"),
    [
        (
            {"role": "user", "content": [{"type": "container_upload", "file_id": "f"}]},
            "messages.0.content.0.type",
            "'container_upload'",
        ),
        (
            {"role": "assistant", "content": [{"type": "image", "source": PDF}]},
            "messages.0.content.0.type",
            "'image' is not supported in an assistant turn",
        ),
        (
            {"role": "user", "content": [{"type": "tool_reference"}]},
            "messages.0.content.0.tool_name",
            "tool_name",
        ),
        (
            {
                "role": "user",
                "content": [{"type": "tool_result", "content": [{"type": "tool_use"}]}],
            },
            "messages.0.content.0.content.0.type",
            "'tool_use'",
        ),
    ],
)
def test_what_cannot_be_carried_is_a_400_naming_the_block(
    turn: dict[str, Any], param: str, named: str
) -> None:
    with pytest.raises(TranslationError) as caught:
        chat_messages(turn)
    assert caught.value.param == param
    assert named in str(caught.value)
