"""Property tests (hypothesis) for the request body: ``parse_body`` answers a dict or the
project's 400, ``upstream_body`` sends exactly the re-encoded reference, ``estimate_tokens``
takes any body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.api.body_rewrite import USAGE_OPTION_ROUTES, insert_first_member, upstream_body
from gateway.api.models import ResolvedModel
from gateway.api.request_body import FIELD_TYPES, REQUIRED_FIELDS, parse_body
from gateway.api.routes import MESSAGES_ROUTES
from gateway.errors import InvalidRequestError
from gateway.limits.estimate import estimate_tokens
from tests.support.fuzz import fuzz_settings

FUZZ = fuzz_settings(150)

ROUTES = st.sampled_from([*REQUIRED_FIELDS, "/v1/messages", "/v1/unknown"])
UP = "Qwen/Qwen3-Coder-30B-A3B-Instruct"
RENAMED = ResolvedModel(name="qwen3-coder", upstream="office-llm", model=UP)
SAME = ResolvedModel(name=UP, upstream="office-llm", model=UP)  # an id the upstream listed itself
CHAT = "/v1/chat/completions"
STREAMLESS = ("/v1/embeddings", "/v1/messages/count_tokens")  # routes that never stream

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.sampled_from(["qwen3-coder", UP, '"model":"qwen3-coder"', "\\", "/"]),
)
KEYS = st.sampled_from(
    ["model", "messages", "prompt", "input", "stream", "stream_options", "role", "content", "x"]
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS | st.text(max_size=4), inner),
    max_leaves=10,
)


def is_400(error: InvalidRequestError) -> bool:
    return error.status == 400 and bool(str(error))


def parse_or_error(raw: bytes, route: str) -> dict[str, Any] | InvalidRequestError:
    """``parse_body``'s dict, or the InvalidRequestError it raised (anything else escapes)."""
    try:
        return parse_body(raw, route)
    except InvalidRequestError as error:
        return error


# ----------------------------------------------------------------------------- parse_body


@FUZZ
@given(raw=st.binary(max_size=200), route=ROUTES)
@example(raw=b"[" * 100_000, route=CHAT)
@example(raw=b'{"model":"m","x":' + b"1" * 5000 + b"}", route=CHAT)
@example(raw=b"\xff\xfe{\x00}\x00", route=CHAT)
@example(raw=b'{"model":"\\ud800","messages":[{}]}', route=CHAT)
@example(raw=b'{"model":"m","messages":[{}],"n":NaN}', route=CHAT)
def test_parse_body_answers_a_dict_or_a_400_for_any_bytes(raw: bytes, route: str) -> None:
    outcome = parse_or_error(raw, route)
    assert isinstance(outcome, dict) or is_400(outcome)


@FUZZ
@given(fields=st.dictionaries(KEYS, JSON, max_size=6), route=ROUTES, indent=st.none() | st.just(1))
def test_a_body_parse_body_accepts_has_the_fields_the_gateway_relies_on(
    fields: dict[str, Any], route: str, indent: int | None
) -> None:
    raw = json.dumps(fields, indent=indent).encode()
    body = parse_or_error(raw, route)
    if isinstance(body, InvalidRequestError):
        assert is_400(body)
        param = body.param or ""
        assert param == "" or param.split("[")[0] in FIELD_TYPES
        return
    assert body == fields
    assert isinstance(body["model"], str)
    for name in REQUIRED_FIELDS.get(route, ("model",)):
        assert body.get(name) is not None
    if body.get("stream") is not None and route not in STREAMLESS:
        assert isinstance(body["stream"], bool)
    if route == CHAT:
        assert body["messages"]
        assert all(isinstance(m, dict) for m in body["messages"])


# ----------------------------------------------------------------------------- upstream_body


def reference(body: dict[str, Any], route: str, resolved: ResolvedModel) -> dict[str, Any]:
    out = {**body, "model": resolved.model}
    asked = (
        isinstance(body.get("stream_options"), dict)
        and body["stream_options"].get("include_usage") is True
    )
    if route in USAGE_OPTION_ROUTES and body.get("stream") is True and not asked:
        out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return out


@st.composite
def api_bodies(draw: st.DrawFn, *, nested_model: bool = True) -> tuple[str, dict[str, Any]]:
    route = draw(st.sampled_from([*REQUIRED_FIELDS]))
    body: dict[str, Any] = {"model": draw(st.sampled_from(["qwen3-coder", UP]))}
    if route in {CHAT, *MESSAGES_ROUTES}:
        body["messages"] = [{"role": "user", "content": draw(st.text(max_size=10))}]
        if route == "/v1/messages":
            body["max_tokens"] = draw(st.integers(1, 4096))
    elif route != "/v1/responses":
        body[REQUIRED_FIELDS[route][1]] = draw(st.text(max_size=10))
    body["stream"] = draw(st.sampled_from([True, False, None]))
    options = st.none() | st.fixed_dictionaries({}, optional={"include_usage": st.booleans()})
    body["stream_options"] = draw(options)
    extra = draw(st.dictionaries(st.sampled_from(["x", "metadata", "n", "temperature"]), JSON))
    if nested_model and draw(st.booleans()):
        extra["metadata"] = {"model": body["model"]}  # the same pair, nested: not the top one
    body.update(extra)
    for key in [k for k in ("stream", "stream_options") if body[k] is None and draw(st.booleans())]:
        del body[key]
    keys = draw(st.permutations(list(body)))
    return route, {k: body[k] for k in keys}


def encodings() -> st.SearchStrategy[Any]:
    return st.sampled_from(
        [
            lambda o: json.dumps(o, separators=(",", ":")),
            json.dumps,
            lambda o: json.dumps(o, indent=2),
            lambda o: json.dumps(o, ensure_ascii=False, separators=(",", ":")),
            lambda o: json.dumps(o).replace("/", "\\/"),
            lambda o: "  \r\n" + json.dumps(o) + "\n",
        ]
    )


def send(raw: bytes, route: str, resolved: ResolvedModel) -> tuple[dict[str, Any], bytes]:
    body = parse_body(raw, route)
    return body, upstream_body(raw, body, route, resolved)


@FUZZ
@given(case=api_bodies(nested_model=False), encode=encodings())
def test_upstream_body_is_the_reencoded_reference(case: tuple[str, Any], encode: Any) -> None:
    route, obj = case
    raw = encode(obj).encode()
    resolved = RENAMED if obj["model"] == "qwen3-coder" else SAME
    body, out = send(raw, route, resolved)
    assert json.loads(out) == reference(body, route, resolved)
    if json.loads(out) == body:
        assert out == raw  # nothing to change: the client's very bytes


@FUZZ
@given(case=api_bodies(), space=st.sampled_from([" ", "\t", "\n"]))
@example(
    case=(CHAT, {"model": "qwen3-coder", "messages": [], "m": {"model": "qwen3-coder"}}), space=" "
)
def test_upstream_body_renames_the_top_level_model_however_it_is_written(
    case: tuple[str, Any], space: str
) -> None:
    route, obj = case
    obj = {**obj, "messages": [{"role": "user"}]} if route == CHAT else obj
    obj = {**obj, "metadata": {"model": obj["model"]}}
    text = json.dumps(obj, separators=(",", ":"))
    raw = text.replace('"model":', '"model"' + space + ":", 1).encode()  # only the first, top one
    body, out = send(raw, route, RENAMED if obj["model"] == "qwen3-coder" else SAME)
    resolved = RENAMED if obj["model"] == "qwen3-coder" else SAME
    assert json.loads(out) == reference(body, route, resolved)


@FUZZ
@given(case=api_bodies(), lone=st.integers(0xD800, 0xDFFF).map(chr))
@example(case=(CHAT, {"model": "qwen3-coder", "metadata": {"model": "qwen3-coder"}}), lone="\ud800")
def test_a_lone_surrogate_is_a_400_before_any_rewrite(case: tuple[str, Any], lone: str) -> None:
    route, obj = case
    obj = {**obj, "messages": [{"role": "user"}]} if route == CHAT else obj
    obj = {**obj, "metadata": {"model": obj["model"]}, "x": lone}  # two pairs: re-encoded
    raw = json.dumps(obj).encode()  # ensure_ascii: the surrogate travels as an escape
    with pytest.raises(InvalidRequestError) as caught:
        parse_body(raw, route)
    assert caught.value.code == "invalid_unicode"
    paired = json.dumps({**obj, "x": "\U0001f600"}).encode()  # an emoji: a surrogate pair
    assert parse_body(paired, route)["x"] == "\U0001f600"


@FUZZ
@given(codec=st.sampled_from(["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"]))
@example(codec="utf-16-le")
def test_a_utf16_or_utf32_body_is_a_400(codec: str) -> None:
    obj = {"model": UP, "stream": True, "prompt": "x"}
    raw = json.dumps(obj).encode(codec)
    with pytest.raises(InvalidRequestError) as caught:
        parse_body(raw, "/v1/completions")
    assert caught.value.code == "invalid_encoding"


@FUZZ
@given(raw=st.binary(max_size=60))
def test_insert_first_member_keeps_the_rest_of_the_bytes(raw: bytes) -> None:
    member = b'"a":1,'
    out = insert_first_member(raw, member)
    if out is not None:
        assert out.replace(member, b"", 1) == raw
        assert out.lstrip(b" \t\r\n").startswith(b"{" + member)


# ----------------------------------------------------------------------------- estimate_tokens


@FUZZ
@given(st.dictionaries(KEYS | st.sampled_from(["max_tokens", "n", "instructions"]), JSON))
def test_estimate_tokens_of_any_body_is_a_non_negative_int(body: dict[str, Any]) -> None:
    tokens = estimate_tokens(body)
    assert isinstance(tokens, int)
    assert tokens >= 0


@FUZZ
@given(text=st.text(max_size=50), budget=st.integers(1, 10**6), n=st.integers(1, 8))
def test_estimate_tokens_counts_the_prompt_and_the_budget(text: str, budget: int, n: int) -> None:
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": budget, "n": n}
    assert estimate_tokens(body) >= budget * n
    assert estimate_tokens({**body, "messages": []}) == budget * n


def test_estimate_tokens_of_a_deep_body_does_not_recurse_without_end() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    assert estimate_tokens({"messages": deep}) == 0
