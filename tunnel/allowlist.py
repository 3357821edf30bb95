"""Which requests the connector forwards (sans-IO): configured upstream names, ``/v1/`` paths."""

from __future__ import annotations

from collections.abc import Container
from urllib.parse import unquote

ALLOWED_PREFIX = "/v1/"


def refusal(upstreams: Container[str], upstream: str, path: str) -> str | None:
    """Why this request must not be forwarded, in plain words; ``None`` when it may be."""
    if upstream not in upstreams:
        return f"upstream {upstream!r} is not configured on this connector"
    return path_refusal(path)


def path_refusal(path: str) -> str | None:
    """Only absolute paths under ``/v1/``, with no dot segments, even percent-encoded."""
    if not path.startswith(ALLOWED_PREFIX):
        return f"path {path!r} is outside /v1/"
    if any(ord(c) < 0x21 or ord(c) == 0x7F or c in "\\#" for c in path):
        return f"path {path!r} contains characters that are not allowed"
    route = unquote(unquote(path.split("?", 1)[0]))
    segments = route.replace("\\", "/").split("/")
    if any(seg in ("..", ".") for seg in segments):
        return f"path {path!r} contains a dot segment"
    return None
