"""Which requests the connector forwards (sans-IO): configured upstream names, ``/v1/`` paths."""

from __future__ import annotations

import re
from collections.abc import Container
from urllib.parse import unquote

ALLOWED_PREFIX = "/v1/"
#: Anywhere in the raw path (query included): controls, space, DEL, backslash, fragment mark.
FORBIDDEN_CHARACTER = re.compile(r"[\x00-\x20\x7f\\#]")
#: A ``.`` or ``..`` segment (RFC 3986 section 3.3) in the decoded path, "\\" counting as "/".
DOT_SEGMENT = re.compile(r"(?:^|[/\\])\.\.?(?=[/\\]|$)")


def refusal(upstreams: Container[str], upstream: str, path: str) -> str | None:
    """Why this request must not be forwarded, in plain words; ``None`` when it may be."""
    if upstream not in upstreams:
        return f"upstream {upstream!r} is not configured on this connector"
    return path_refusal(path)


def path_refusal(path: str) -> str | None:
    """Only absolute paths under ``/v1/``, with no dot segments, even percent-encoded (twice)."""
    if not path.startswith(ALLOWED_PREFIX):
        return f"path {path!r} is outside /v1/"
    if FORBIDDEN_CHARACTER.search(path):
        return f"path {path!r} contains characters that are not allowed"
    if DOT_SEGMENT.search(unquote(unquote(path.split("?", 1)[0]))):
        return f"path {path!r} contains a dot segment"
    return None
