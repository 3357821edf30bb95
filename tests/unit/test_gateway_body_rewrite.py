"""The upstream body: renamed and usage-asking as bytes when exact, re-encoded otherwise."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.api.body_rewrite import insert_first_member, rename_model, upstream_body
from gateway.api.models import ResolvedModel

CHAT = "/v1/chat/completions"
RESOLVED = ResolvedModel(name="coder", upstream="office-llm", model="Qwen/Qwen3-Coder")


def rewrite(raw: bytes, route: str = CHAT, resolved: ResolvedModel = RESOLVED) -> bytes:
    return upstream_body(raw, json.loads(raw), route, resolved)


def expected(raw: bytes, add_usage: bool) -> dict[str, Any]:
    body = json.loads(raw)
    body["model"] = RESOLVED.model
    if add_usage:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return body


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"coder","messages":[{"role":"user","content":"hi"}]}',
        b'{"messages": [{"role": "user", "content": "\\"model\\":\\"coder\\""}], "model": "coder"}',
        b' \n{"temperature":0.2,"model":"coder","messages":[]}',
    ],
)
def test_rename_keeps_every_other_byte(raw: bytes) -> None:
    out = rewrite(raw)
    assert json.loads(out) == expected(raw, add_usage=False)
    assert out.replace(b'"Qwen/Qwen3-Coder"', b'"coder"') == raw  # only the name changed


def test_a_nested_lookalike_falls_back_to_reencoding_and_stays_untouched() -> None:
    raw = (
        b'{"model":"coder","response_format":{"type":"json_schema","json_schema":{"schema":'
        b'{"properties":{"x":{"default":{"model":"coder"}}}}}},"messages":[]}'
    )
    assert rename_model(raw, "coder", RESOLVED.model) is None
    out = json.loads(rewrite(raw))
    assert out == expected(raw, add_usage=False)
    schema = out["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["x"]["default"] == {"model": "coder"}


def test_an_escaped_model_name_falls_back_to_reencoding() -> None:
    raw = b'{"model":"\\u0063oder","messages":[]}'
    assert rename_model(raw, "coder", RESOLVED.model) is None
    assert json.loads(rewrite(raw)) == expected(raw, add_usage=False)


def test_a_stream_gets_include_usage_inserted() -> None:
    raw = b'{"model":"coder","stream":true,"messages":[]}'
    out = rewrite(raw)
    assert json.loads(out) == expected(raw, add_usage=True)
    assert out.startswith(b'{"stream_options":{"include_usage":true},"model":"Qwen/Qwen3-Coder"')


def test_existing_stream_options_are_merged_by_reencoding() -> None:
    raw = b'{"model":"coder","stream":true,"stream_options":{"x":1},"messages":[]}'
    assert json.loads(rewrite(raw)) == expected(raw, add_usage=True)


def test_a_client_that_asked_for_usage_and_an_unchanged_model_keep_their_bytes() -> None:
    same = ResolvedModel(name="coder", upstream="office-llm", model="coder")
    raw = b'{"model": "coder", "stream": true, "stream_options": {"include_usage": true}}'
    assert rewrite(raw, resolved=same) is raw


def test_embeddings_never_get_stream_options() -> None:
    raw = b'{"model":"coder","input":"hi","stream":true}'
    assert json.loads(rewrite(raw, "/v1/embeddings")) == expected(raw, add_usage=False)


def test_insert_needs_an_object() -> None:
    assert insert_first_member(b'\xef\xbb\xbf{"a":1}', b'"b":2,') is None
    assert insert_first_member(b' {"a":1}', b'"b":2,') == b' {"b":2,"a":1}'
