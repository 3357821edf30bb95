"""The request body for the upstream, changed as bytes where that is exact (pure).

IDE assistants send prompts of tens or hundreds of kilobytes; re-encoding such a body only to
rename ``model`` costs about as much as parsing it. So the two changes the gateway makes are done
on the client's bytes when the result is certain to be the same JSON, and by re-encoding only
when it is not:

- ``model`` renamed: the client's ``"model":"<alias>"`` (either separator, ``/`` escaped or not)
  is replaced when it occurs exactly once *and* the key ``"model"``, however it is spelt
  (``\u006d``...), occurs only once in the whole body. Inside a JSON string a quote is always
  escaped, so that one key is the top-level member that was parsed, and the one pair is its own;
  anything else (a nested object with a ``model``, a key written with escapes or a space before
  the colon) falls back to re-encoding.
- ``stream_options.include_usage`` added to a stream that did not ask (so tokens can be charged):
  when the body has no ``stream_options``, the member is inserted right after the opening brace.

A body that must be re-encoded but holds a string UTF-8 cannot carry (a lone surrogate such as
``"\ud800"``, which JSON's escapes allow) is the client's 400, not the gateway's 500.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from gateway.api.models import ResolvedModel
from gateway.api.sse import model_replacements
from gateway.errors import InvalidRequestError

USAGE_OPTION_ROUTES: Final = frozenset({"/v1/chat/completions", "/v1/completions"})
_USAGE_MEMBER: Final = b'"stream_options":{"include_usage":true},'
_JSON_SPACE: Final = b" \t\r\n"
#: the JSON string "model" in any spelling (each letter plain or as a \u escape)
_MODEL_KEY: Final = re.compile(
    rb'"(?:m|\\u006[dD])(?:o|\\u006[fF])(?:d|\\u0064)(?:e|\\u0065)(?:l|\\u006[cC])"'
)
Json = dict[str, Any]


def wants_stream(body: Json) -> bool:
    return body.get("stream") is True


def client_asked_usage(body: Json) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def upstream_body(raw: bytes, body: Json, route: str, resolved: ResolvedModel) -> bytes:
    """The body for the upstream: ``model`` renamed and, for streamed chat/completions,
    ``stream_options.include_usage`` set. Every other byte is the client's; an unchanged body is
    sent as the very bytes the client sent."""
    rename = body["model"] != resolved.model
    add_usage = route in USAGE_OPTION_ROUTES and wants_stream(body) and not client_asked_usage(body)
    out: bytes | None = raw
    if rename:
        out = rename_model(raw, body["model"], resolved.model)
    if out is not None and add_usage:
        out = None if "stream_options" in body else insert_first_member(out, _USAGE_MEMBER)
    if out is not None:
        return out
    return _reencoded(body, resolved.model, add_usage)


def rename_model(raw: bytes, alias: str, upstream_model: str) -> bytes | None:
    """``raw`` with its one ``"model":"<alias>"`` renamed, or None when that is not certain."""
    pairs = model_replacements(alias, upstream_model)
    found = [(old, new) for old, new in pairs if old in raw]
    if len(found) != 1 or raw.count(found[0][0]) != 1:
        return None
    if len(_MODEL_KEY.findall(raw)) != 1:
        return None  # another "model" key (nested, or the top one spelt differently)
    old, new = found[0]
    return raw.replace(old, new, 1)


def insert_first_member(raw: bytes, member: bytes) -> bytes | None:
    """``member`` (ending in a comma) inserted after the object's opening brace; the object must
    have at least one member (the parsed body always has ``model``)."""
    start = len(raw) - len(raw.lstrip(_JSON_SPACE))
    if raw[start : start + 1] != b"{":
        return None  # e.g. a byte order mark: leave it to re-encoding
    return raw[: start + 1] + member + raw[start + 1 :]


def _reencoded(body: Json, upstream_model: str, add_usage: bool) -> bytes:
    out = dict(body)
    out["model"] = upstream_model
    if add_usage:
        options = body.get("stream_options") or {}  # parse_body made sure it is an object
        out["stream_options"] = {**options, "include_usage": True}
    try:
        return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        raise InvalidRequestError(
            "The request body is not valid UTF-8 text: it contains a lone UTF-16 surrogate"
            " (such as \\ud800) in a string."
        ) from None
