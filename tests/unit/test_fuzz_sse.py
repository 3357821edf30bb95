"""Property tests (hypothesis) for gateway/api/sse.py: the SSE rewriter against a reference model,
independent of how the stream is cut into pieces, and the non-streamed body rewrite."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.api.sse import (
    SseRewriter,
    Usage,
    has_real_usage,
    model_replacements,
    replace_all,
    rewrite_json_body,
    usage_from,
)
from tests.support.fuzz import fuzz_settings

FUZZ = fuzz_settings(120)

UP = "Qwen/Qwen3-Coder-30B-A3B-Instruct"
ALIAS = "qwen3-coder"
PAIRS = model_replacements(UP, ALIAS)

# JSON values whose keys never spell "usage" (a nested "usage" is a different question)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from([UP, ALIAS, '"model":"' + UP + '"', "data: x\n\n", "usage"]),
)
KEYS = st.sampled_from(["id", "content", "model", "x", "n", "role", "data"])
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
USAGE = st.fixed_dictionaries(
    {"prompt_tokens": st.integers(0, 10**6), "completion_tokens": st.integers(0, 10**6)}
)
# how upstreams encode: compact, Python's default separators, "/" escaped or not
ENCODINGS = st.sampled_from([(",", ":"), (", ", ": ")])


def rename(value: Any) -> Any:
    """The reference: every ``"model": UP`` member (at any depth) becomes the alias."""
    if isinstance(value, dict):
        return {k: ALIAS if k == "model" and v == UP else rename(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rename(v) for v in value]
    return value


def encode(obj: Any, seps: tuple[str, str], escape_slash: bool) -> bytes:
    text = json.dumps(obj, separators=seps)
    return (text.replace("/", "\\/") if escape_slash else text).encode()


@st.composite
def chunk_objects(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["content", "usage_only", "usage_null", "free"]))
    obj: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "model": UP}
    if kind == "content":
        obj["choices"] = [{"index": 0, "delta": draw(st.dictionaries(KEYS, JSON, max_size=2))}]
    elif kind == "usage_only":
        obj["choices"] = []
        obj["usage"] = draw(USAGE)
    elif kind == "usage_null":
        obj["choices"] = [{"index": 0, "delta": {"content": draw(st.text(max_size=8))}}]
        obj["usage"] = None
    else:
        obj.update(draw(st.dictionaries(KEYS, JSON, max_size=3)))
    return obj


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes | dict[str, Any]], bytes, bytes]:
    """(events, the stream's bytes, its separator): JSON events, comments and ``[DONE]``."""
    sep = draw(st.sampled_from([b"\n\n", b"\r\n\r\n"]))
    seps = draw(ENCODINGS)
    escape = draw(st.booleans())
    events: list[bytes | dict[str, Any]] = draw(
        st.lists(
            st.one_of(chunk_objects(), st.sampled_from([b": keep-alive", b"data: [DONE]"])),
            max_size=8,
        )
    )
    wire = b""
    for event in events:
        wire += event if isinstance(event, bytes) else b"data: " + encode(event, seps, escape)
        wire += sep
    return events, wire, sep


def cuts(data: bytes) -> st.SearchStrategy[list[bytes]]:
    return st.lists(st.integers(0, len(data)), max_size=12).map(lambda at: split(data, at))


def split(data: bytes, at: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *at})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def run(rewriter: SseRewriter, pieces: list[bytes]) -> bytes:
    return b"".join(rewriter.feed(piece) for piece in pieces) + rewriter.flush()


def reference(events: list[bytes | dict[str, Any]], drop: bool) -> tuple[list[Any], Usage | None]:
    """What the client must get (each event parsed) and the usage the gateway must charge."""
    out: list[Any] = []
    usage = None
    for event in events:
        if isinstance(event, bytes):
            out.append(event)
            continue
        found = usage_from(event)
        usage = found if found is not None else usage
        if drop and event.get("choices") == [] and isinstance(event.get("usage"), dict):
            continue
        out.append(rename(event))
    return out, usage


def parsed(wire: bytes, sep: bytes) -> list[Any]:
    events = wire.split(sep)
    assert events[-1] == b""
    return [json.loads(e[6:]) if e.startswith(b"data: {") else e for e in events[:-1]]


@FUZZ
@given(data=st.data(), stream=streams(), drop=st.booleans())
def test_the_rewritten_stream_matches_the_reference_however_it_is_cut(
    data: st.DataObject, stream: tuple[list[bytes | dict[str, Any]], bytes, bytes], drop: bool
) -> None:
    events, wire, sep = stream
    pieces = data.draw(cuts(wire))
    whole = SseRewriter(PAIRS, drop_usage_chunk=drop)
    cut = SseRewriter(PAIRS, drop_usage_chunk=drop)
    out_whole, out_cut = run(whole, [wire]), run(cut, pieces)
    assert out_cut == out_whole
    assert cut.usage == whole.usage
    expected, usage = reference(events, drop)
    assert parsed(out_whole, sep) == expected
    assert whole.usage == usage


@FUZZ
@given(data=st.data(), raw=st.binary(max_size=300))
def test_without_dropping_any_bytes_come_out_as_they_went_in_renamed(
    data: st.DataObject, raw: bytes
) -> None:
    wire = raw + data.draw(st.sampled_from([b"", b'data: {"model":"' + UP.encode() + b'"}\n\n']))
    pieces = data.draw(cuts(wire))
    rewriter = SseRewriter(PAIRS)
    assert run(rewriter, pieces) == replace_all(wire, PAIRS)


@FUZZ
@given(data=st.data(), raw=st.binary(max_size=300), drop=st.booleans())
def test_any_bytes_with_dropping_lose_only_whole_events(
    data: st.DataObject, raw: bytes, drop: bool
) -> None:
    usage_chunk = b'data: {"choices":[],"usage":{"prompt_tokens":1}}\n\n'
    wire = data.draw(st.sampled_from([raw, usage_chunk + raw, raw + b"\n\n" + usage_chunk]))
    rewriter = SseRewriter((), drop_usage_chunk=drop)
    out = run(rewriter, data.draw(cuts(wire)))
    assert len(out) <= len(wire)
    if not drop:
        assert out == wire
    if rewriter.usage is not None:
        assert rewriter.usage.prompt_tokens >= 0
        assert rewriter.usage.completion_tokens >= 0


@FUZZ
@given(
    obj=st.dictionaries(KEYS, JSON, max_size=5),
    usage=st.one_of(st.none(), USAGE, JSON),
    seps=ENCODINGS,
    escape=st.booleans(),
    pretty=st.booleans(),
)
def test_rewrite_json_body_changes_nothing_but_the_model(
    obj: dict[str, Any], usage: Any, seps: tuple[str, str], escape: bool, pretty: bool
) -> None:
    obj = {**obj, "model": UP, "usage": usage}
    body = (
        json.dumps(obj, indent=2).encode() if pretty else encode(obj, seps, escape)
    )  # indent=2 uses ": " too
    out, found = rewrite_json_body(body, PAIRS)
    assert json.loads(out) == rename(obj)
    assert found == usage_from(obj)


@FUZZ
@given(st.binary(max_size=200))
def test_rewrite_json_body_takes_any_bytes(body: bytes) -> None:
    out, found = rewrite_json_body(body, PAIRS)
    assert out == replace_all(body, PAIRS)
    assert found is None or isinstance(found, Usage)
    assert rewrite_json_body(body, ()) == (body, found)


@FUZZ
@given(JSON)
def test_usage_from_any_json_is_none_or_non_negative_counts(value: Any) -> None:
    for candidate in (value, {"usage": value}, {"response": {"usage": value}}):
        found = usage_from(candidate)
        assert found is None or (found.prompt_tokens >= 0 and found.completion_tokens >= 0)


@FUZZ
@given(
    upstream=st.text(alphabet=st.characters(codec="ascii"), max_size=20),
    alias=st.text(max_size=20),
    seps=ENCODINGS,
    escape=st.booleans(),
)
def test_model_replacements_rename_any_ascii_upstream_name(
    upstream: str, alias: str, seps: tuple[str, str], escape: bool
) -> None:
    pairs = model_replacements(upstream, alias)
    body = encode({"id": "x", "model": upstream}, seps, escape)
    assert json.loads(replace_all(body, pairs)) == {"id": "x", "model": alias}


@FUZZ
@given(st.binary(max_size=100))
def test_has_real_usage_takes_any_bytes(data: bytes) -> None:
    assert has_real_usage(data) in (True, False)
