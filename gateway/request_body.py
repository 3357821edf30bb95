"""Sans-IO checks of an API request's JSON body, answered like OpenAI (400 naming ``param``).

Only what the gateway itself relies on or what an upstream would choke on is checked: the
required field of each route and its type, ``model``, ``stream``, ``stream_options``. Every
other field passes through untouched. ``NaN`` / ``Infinity`` are not JSON and are refused.
"""

from __future__ import annotations

import json
from typing import Any, Final, NoReturn

from gateway.errors import InvalidRequestError

Json = dict[str, Any]

REQUIRED_FIELDS: Final = {
    "/v1/chat/completions": ("model", "messages"),
    "/v1/completions": ("model", "prompt"),
    "/v1/embeddings": ("model", "input"),
    "/v1/responses": ("model",),
}
# field -> (accepted Python types, OpenAI's words for them); checked whenever present
FIELD_TYPES: Final[dict[str, tuple[tuple[type, ...], str]]] = {
    "model": ((str,), "a string"),
    "messages": ((list,), "an array of objects"),
    "prompt": ((str, list), "a string or an array"),
    "input": ((str, list), "a string or an array"),
    "stream": ((bool,), "a boolean"),
    "stream_options": ((dict,), "an object"),
}
ROUTE_FIELDS: Final = {
    "/v1/chat/completions": ("model", "messages", "stream", "stream_options"),
    "/v1/completions": ("model", "prompt", "stream", "stream_options"),
    "/v1/embeddings": ("model", "input"),
    "/v1/responses": ("model", "input", "stream"),
}
_JSON_NAMES: Final = {str: "a string", bool: "a boolean", int: "a number", float: "a number"}


def invalid(message: str, param: str, code: str) -> InvalidRequestError:
    error = InvalidRequestError(message, param=param)
    error.code = code
    return error


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def parse_body(raw: bytes, route: str) -> Json:
    """The JSON object of an API request; 400 naming the ``param`` when it is not usable."""
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise InvalidRequestError(
            "We could not parse the JSON body of your request. The API expects a JSON payload, "
            "but what was sent was not valid JSON."
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
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
