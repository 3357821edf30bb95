"""Sans-IO checks of an API request's JSON body, answered like OpenAI (400 naming ``param``).

Only what the gateway itself relies on or what an upstream would choke on is checked: the
required field of each route and its type, ``model``, ``stream``, ``stream_options``. Every
other field passes through untouched. ``NaN`` / ``Infinity`` are not JSON and are refused, and
so is nesting deeper than :data:`MAX_JSON_DEPTH`. The body must be UTF-8 (RFC 8259 8.1: Python
would also take UTF-16 and UTF-32, which the gateway cannot rewrite as bytes) and its strings
must be Unicode text: a lone UTF-16 surrogate (``"\ud800"``) can be neither re-encoded nor read
by most upstreams, so it is a 400 whether or not the body needs re-encoding.

:func:`parse_body_async` parses a body of :data:`LARGE_BODY_BYTES` or more in a worker thread,
one such body at a time. ``json.loads`` holds the GIL for the whole document, so the event loop
still waits while one large body is parsed; what the thread and the one-at-a-time cap give is
that the loop runs between large parses, instead of after a burst of them all
(docs/operations.md, "Large request bodies", has the numbers).
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, NoReturn

from gateway.errors import InvalidRequestError

Json = dict[str, Any]
LARGE_BODY_BYTES: Final = 256 * 1024  # below: parsed on the loop (at most a few ms)
MAX_JSON_DEPTH: Final = 128  # objects and arrays inside each other, the body itself counted

REQUIRED_FIELDS: Final = {
    "/v1/chat/completions": ("model", "messages"),
    "/v1/completions": ("model", "prompt"),
    "/v1/embeddings": ("model", "input"),
    "/v1/responses": ("model",),
    "/v1/messages": ("model", "max_tokens", "messages"),
    "/v1/messages/count_tokens": ("model", "messages"),
}
# field -> (accepted Python types, OpenAI's words for them); checked whenever present
FIELD_TYPES: Final[dict[str, tuple[tuple[type, ...], str]]] = {
    "model": ((str,), "a string"),
    "messages": ((list,), "an array of objects"),
    "prompt": ((str, list), "a string or an array"),
    "input": ((str, list), "a string or an array"),
    "stream": ((bool,), "a boolean"),
    "stream_options": ((dict,), "an object"),
    "max_tokens": ((int,), "an integer"),
}
ROUTE_FIELDS: Final = {
    "/v1/chat/completions": ("model", "messages", "stream", "stream_options"),
    "/v1/completions": ("model", "prompt", "stream", "stream_options"),
    "/v1/embeddings": ("model", "input"),
    "/v1/responses": ("model", "input", "stream"),
    "/v1/messages": ("model", "max_tokens", "messages", "stream"),
    "/v1/messages/count_tokens": ("model", "messages"),
}
#: where a surrogate may hide: a \uD800-\uDFFF escape, or its bytes let through by json's
#: ``surrogatepass`` decoding; only bodies that have one pay for the exact check
_SURROGATE_HINT: Final = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_JSON_NAMES: Final = {str: "a string", bool: "a boolean", int: "a number", float: "a number"}


def invalid(message: str, param: str | None, code: str) -> InvalidRequestError:
    error = InvalidRequestError(message, param=param)
    error.code = code
    return error


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def too_deep() -> InvalidRequestError:
    return invalid(
        f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels, the gateway's limit.",
        None,
        "json_too_deep",
    )


class _LargeParses:
    """One thread for large bodies: they are parsed one at a time, in arrival order."""

    executor: ThreadPoolExecutor | None = None

    @classmethod
    def get(cls) -> ThreadPoolExecutor:
        if cls.executor is None:
            cls.executor = ThreadPoolExecutor(1, thread_name_prefix="gateway-json")
        return cls.executor


async def parse_body_async(raw: bytes, route: str) -> Json:
    """:func:`parse_body`; a body of :data:`LARGE_BODY_BYTES` or more in the large-body thread.
    A request cancelled while its body waits for that thread is not parsed at all."""
    if len(raw) < LARGE_BODY_BYTES:
        return parse_body(raw, route)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_LargeParses.get(), parse_body, raw, route)


def parse_body(raw: bytes, route: str) -> Json:
    """The JSON object of an API request; 400 naming the ``param`` when it is not usable."""
    if json.detect_encoding(raw) not in ("utf-8", "utf-8-sig"):
        raise invalid("The request body must be UTF-8 encoded JSON.", None, "invalid_encoding")
    try:
        body = _loads(raw)
    except RecursionError:  # nesting past the interpreter's recursion limit (~1000)
        raise too_deep() from None
    except ValueError:
        raise InvalidRequestError(
            "We could not parse the JSON body of your request. The API expects a JSON payload, "
            "but what was sent was not valid JSON."
        ) from None
    if _may_nest_deeper(raw) and nests_deeper(body, MAX_JSON_DEPTH):
        raise too_deep()
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    if _SURROGATE_HINT.search(raw) and has_lone_surrogate(body):
        raise invalid(
            "The request body is not valid Unicode text: a string holds a lone UTF-16 surrogate "
            "(such as \\ud800).",
            None,
            "invalid_unicode",
        )
    for name in REQUIRED_FIELDS.get(route, ("model",)):
        if body.get(name) is None:
            raise invalid(
                f"Missing required parameter: '{name}'.", name, "missing_required_parameter"
            )
    for name in ROUTE_FIELDS.get(route, ("model", "stream")):
        _check_type(body, name)
    if route == "/v1/chat/completions":
        _check_messages(body["messages"])
    return body


def _loads(raw: bytes) -> object:
    """``json.loads``; for a large body with the cyclic GC paused: the millions of objects a body
    of small objects makes would otherwise set off collections that scan every live object
    (4 MiB: 50-80 ms instead of 130-500 ms). ``json.loads`` holds the GIL throughout, so no
    other thread runs while the GC is paused."""
    if len(raw) < LARGE_BODY_BYTES or not gc.isenabled():
        return json.loads(raw, parse_constant=_no_constant)
    gc.disable()
    try:
        return json.loads(raw, parse_constant=_no_constant)
    finally:
        gc.enable()


def has_lone_surrogate(body: Json) -> bool:
    """Whether a string anywhere in ``body`` (keys included) holds an unpaired surrogate (the
    C encoder finds it at the cost of one encoding; paired ``\\ud83d\\ude00`` is an emoji)."""
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


def _may_nest_deeper(raw: bytes) -> bool:
    """False when ``raw`` holds too few brackets to nest past the limit (no walk needed)."""
    return raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH


def nests_deeper(value: object, limit: int) -> bool:
    """Whether parsed JSON has objects and arrays more than ``limit`` levels inside each other.
    Level by level, in list comprehensions: about half the cost of a stack walk (50 ms for an
    adversarial 5 MiB body of small objects, 0 for a prompt of long strings)."""
    dicts: list[Any] = [value] if type(value) is dict else []
    lists: list[Any] = [value] if type(value) is list else []
    for _ in range(limit):
        children = [c for d in dicts for c in d.values()]
        children += [c for items in lists for c in items]
        dicts = [c for c in children if type(c) is dict]
        lists = [c for c in children if type(c) is list]
        if not dicts and not lists:
            return False
    return True


def _check_type(body: Json, name: str) -> None:
    value = body.get(name)
    types, words = FIELD_TYPES[name]
    if value is None or (isinstance(value, types) and not _is_bool_for_non_bool(value, types)):
        return
    raise invalid(
        f"Invalid type for '{name}': expected {words}, but got {json_kind(value)} instead.",
        name,
        "invalid_type",
    )


def _is_bool_for_non_bool(value: object, types: tuple[type, ...]) -> bool:
    return isinstance(value, bool) and bool not in types


def _check_messages(messages: list[Any]) -> None:
    if not messages:
        raise invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            "messages",
            "empty_array",
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid(
                f"Invalid type for 'messages[{i}]': expected an object, "
                f"but got {json_kind(message)} instead.",
                f"messages[{i}]",
                "invalid_type",
            )


def json_kind(value: object) -> str:
    """OpenAI's words for a JSON value's type ("a string", "an array", ...)."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if value is None:
        return "null"
    for kind, words in _JSON_NAMES.items():
        if isinstance(value, kind):
            return words
    return "a value"
