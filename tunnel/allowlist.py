"""Which requests the connector forwards (sans-IO): configured upstream names, the methods the
gateway sends, ``/v1/`` paths that stay ``/v1/`` paths however often they are decoded, and the
few exact paths outside ``/v1/`` the gateway uses (:data:`EXACT_PATHS`).

An upstream (or a framework or proxy in front of it) may percent-decode a path once, twice, or
treat ``..;`` as ``..``; so the path is decoded until it stops changing, and what is left must be
plain segments of RFC 3986 ``pchar`` (section 3.3) without ``;``, none empty, none a dot segment.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

ALLOWED_PREFIX: Final = "/v1/"
#: Outside /v1/, only these, byte for byte with no query: vLLM's /tokenize, with which the
#: gateway counts the tokens of Anthropic Messages requests it translates (messages_api).
EXACT_PATHS: Final = frozenset({"/tokenize"})
#: The gateway sends POST for the API routes and GET for /v1/models (and the hello); nothing else.
ALLOWED_METHODS: Final = frozenset({"GET", "POST"})
#: Decodings after which a path must be stable; real clients need one at most.
MAX_DECODE_ROUNDS: Final = 4
#: Anywhere in the raw path (query included): controls, space, DEL, backslash, fragment mark.
FORBIDDEN_CHARACTER: Final = re.compile(r"[\x00-\x20\x7f\\#]")
#: One segment of the fully decoded path: RFC 3986 unreserved and sub-delims, ":" and "@",
#: but not ";" (a path parameter, how "..;" reaches ".." in some servers) and not "%".
SEGMENT: Final = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,=:@]+")
DOT_SEGMENTS: Final = frozenset({".", ".."})


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is not forwarded, and the status the connector answers with."""

    status: int  # 403 (not allowed here) or 405 (method not allowed)
    reason: str


def refusal(upstreams: Container[str], upstream: str, method: str, path: str) -> Refusal | None:
    """Why this request must not be forwarded; ``None`` when it may be."""
    if method not in ALLOWED_METHODS:
        allowed = ", ".join(sorted(ALLOWED_METHODS))
        return Refusal(405, f"method {method!r} is not allowed (only {allowed})")
    if upstream not in upstreams:
        return Refusal(403, f"upstream {upstream!r} is not configured on this connector")
    reason = path_refusal(path)
    return None if reason is None else Refusal(403, reason)


def fully_decoded(path: str) -> str | None:
    """``path`` percent-decoded until it stops changing; ``None`` if that takes too many rounds."""
    for _ in range(MAX_DECODE_ROUNDS + 1):
        decoded = unquote(path, errors="replace")
        if decoded == path:
            return path
        path = decoded
    return None


def path_refusal(path: str) -> str | None:
    """Only ``/v1/`` paths whose full decoding is plain, non-empty, non-dot segments."""
    if path in EXACT_PATHS:
        return None
    if FORBIDDEN_CHARACTER.search(path):
        return f"path {path!r} contains characters that are not allowed"
    route = path.split("?", 1)[0]  # the query is the upstream's to read, not to route on
    if not route.startswith(ALLOWED_PREFIX):
        return f"path {path!r} is outside /v1/"
    decoded = fully_decoded(route)
    if decoded is None:
        return f"path {path!r} is encoded too many times"
    why = _decoded_refusal(decoded)
    return None if why is None else f"path {path!r} {why}"


def _decoded_refusal(decoded: str) -> str | None:
    if not decoded.startswith(ALLOWED_PREFIX):
        return "is outside /v1/ once decoded"
    if DOT_SEGMENTS.intersection(re.split(r"[/\\]", decoded)):  # some servers read "\" as "/"
        return "contains a dot segment"
    segments = decoded.split("/")[1:]
    if "" in segments:
        return "contains an empty segment"
    if not all(SEGMENT.fullmatch(s) for s in segments):
        return "contains characters that are not allowed once decoded"
    return None
