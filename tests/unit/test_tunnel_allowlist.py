"""What the connector forwards (tunnel.allowlist): methods, upstream names, ``/v1/`` paths that
stay ``/v1/`` paths however many times an upstream or a framework in front of it decodes them."""

from __future__ import annotations

import posixpath
import string
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnel.allowlist import ALLOWED_METHODS, Refusal, fully_decoded, path_refusal, refusal

UPSTREAMS = {"office-llm"}


@pytest.mark.parametrize(
    "path",
    [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/models",
        "/v1/embeddings?x=1",
        "/v1/models/Qwen%2FQwen3",
        "/v1/models/qwen3:30b",
        "/v1/x?next=../admin",  # the query is not part of the path the upstream routes on
        "/v1/x?a=1&b=%2e%2e",
        "/v1/files/a..b",  # dots inside a name are not a dot segment
        "/v1/.well-known",
        "/v1/...",
        "/tokenize",  # vLLM's, exactly: the gateway counts translated Messages tokens with it
    ],
)
def test_paths_under_v1_are_allowed(path: str) -> None:
    assert path_refusal(path) is None
    assert refusal(UPSTREAMS, "office-llm", "POST", path) is None


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/v2/models", "outside /v1/"),
        ("/v1", "outside /v1/"),
        ("/admin", "outside /v1/"),
        ("/tokenize?x=1", "outside /v1/"),
        ("/tokenize/x", "outside /v1/"),
        ("/%74okenize", "outside /v1/"),
        ("/detokenize", "outside /v1/"),
        ("", "outside /v1/"),
        ("*", "outside /v1/"),
        ("http://evil/v1/x", "outside /v1/"),
        ("/v1/../admin", "dot segment"),
        ("/v1/%2e%2e/admin", "dot segment"),
        ("/v1/%252e%252e/admin", "dot segment"),
        ("/v1/%25252e%25252e/admin", "dot segment"),  # three decodings: the example
        ("/v1/%2525252e%2525252e/admin", "dot segment"),
        ("/v1/./models", "dot segment"),
        ("/v1/a b", "not allowed"),
        ("/v1/a\\..\\b", "not allowed"),
        ("/v1/../x", "dot segment"),
        ("/v1/%2e%2e/", "dot segment"),
        ("/v1/%2E%2e", "dot segment"),
        ("/v1/%2e", "dot segment"),
        ("/v1/x/..", "dot segment"),
        ("/v1/x/..?a=1", "dot segment"),
        ("/v1/%5c..%5cadmin", "dot segment"),
        ("/v1/%2f..%2fadmin", "dot segment"),
        ("/v1/..;/admin", "not allowed"),  # Tomcat and friends read "..;" as ".."
        ("/v1/x;jsessionid=1", "not allowed"),
        ("/v1/%3b/x", "not allowed"),
        ("/v1/a%5cb", "not allowed"),
        ("/v1/a%00b", "not allowed"),
        ("/v1/a%2500b", "not allowed"),
        ("/v1/a%0d%0aX-Injected:%201", "not allowed"),
        ("/v1/a%c3%a9", "not allowed"),
        ("/v1/a%zz", "not allowed"),
        ("/v1/%c0%ae%c0%ae/admin", "not allowed"),  # overlong UTF-8 for "."
        ("/v1/%u002e%u002e/admin", "not allowed"),  # IIS's %u escapes
        ("/v1//x", "empty segment"),
        ("/v1/x//y", "empty segment"),
        ("/v1/%2f/x", "empty segment"),
        ("/v1/models/", "empty segment"),
        ("/v1/%252f%252fx", "empty segment"),
        ("/v1/%" + "25" * 20 + "2e", "encoded too many times"),
        ("/v2/x", "outside /v1/"),
        ("/v1?x=1", "outside /v1/"),
        ("/V1/models", "outside /v1/"),
        ("/v1/models#frag", "not allowed"),
        ("/v1/models?q=a b", "not allowed"),
        ("/v1/a\tb", "not allowed"),
        ("/v1/a\x7fb", "not allowed"),
        ("/v1/a\x00b", "not allowed"),
    ],
)
def test_other_paths_are_refused(path: str, words: str) -> None:
    reason = path_refusal(path)
    assert reason is not None
    assert words in reason
    assert refusal(UPSTREAMS, "office-llm", "POST", path) == Refusal(403, reason)


def test_unknown_upstreams_are_refused() -> None:
    refused = refusal(UPSTREAMS, "other", "POST", "/v1/models")
    assert refused is not None
    assert refused.status == 403
    assert "not configured" in refused.reason


def test_the_methods_the_gateway_sends_are_allowed() -> None:
    """POST for the API routes, GET for /v1/models (gateway/api/forwarding.py and models.py)."""
    assert {"GET", "POST"} == ALLOWED_METHODS
    assert refusal(UPSTREAMS, "office-llm", "GET", "/v1/models") is None


@pytest.mark.parametrize(
    "method", ["DELETE", "PUT", "PATCH", "OPTIONS", "HEAD", "TRACE", "CONNECT", "get", "", "P OST"]
)
def test_other_methods_are_refused_with_405(method: str) -> None:
    refused = refusal(UPSTREAMS, "office-llm", method, "/v1/models")
    assert refused is not None
    assert refused.status == 405
    assert "method" in refused.reason


def test_decoding_runs_until_the_path_is_stable() -> None:
    assert fully_decoded("/v1/%25252e") == "/v1/."
    assert fully_decoded("/v1/plain") == "/v1/plain"
    assert fully_decoded("/v1/%" + "25" * 20 + "2e") is None


# Characters that make the attacks: escapes, dots, separators, path parameters.
ATTACK_ALPHABET = "%2501eEfFcC5bB3./\\;v1a?"


def check_allowed_path_is_normal(path: str) -> None:
    if path_refusal(path) is not None:
        return
    route = path.split("?", 1)[0]
    decoded = route
    for _ in range(50):  # decode far past the filter's own bound
        decoded = unquote(decoded)
    assert decoded.startswith("/v1/")
    assert posixpath.normpath(decoded) == decoded  # no dot segments, no empty ones
    segments = decoded.split("/")[1:]
    assert all(s not in ("", ".", "..") for s in segments)
    assert not set(decoded) & set(";\\%\x00")
    assert decoded.isprintable()


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=ATTACK_ALPHABET, max_size=40))
def test_an_allowed_attack_shaped_path_decodes_to_a_normal_v1_path(tail: str) -> None:
    check_allowed_path_is_normal("/v1/" + tail)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_an_allowed_arbitrary_path_decodes_to_a_normal_v1_path(path: str) -> None:
    check_allowed_path_is_normal(path)
    check_allowed_path_is_normal("/v1/" + path)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=string.ascii_letters + string.digits + "-_.:", min_size=1, max_size=20))
def test_ordinary_names_are_allowed(name: str) -> None:
    if name.strip(".") == "":
        return  # ".", ".." (and "..." is allowed, but not the point here)
    assert path_refusal(f"/v1/models/{name}") is None
