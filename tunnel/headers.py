"""Header rules for the tunnel (sans-IO): what crosses it and what never does."""

from __future__ import annotations

from collections.abc import Iterable

# RFC 9110 section 7.6.1 connection-specific fields, plus Host (the connector sets its own).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)

Headers = list[tuple[str, str]]


def _connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    tokens: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def _is_dropped(name: str, extra: set[str]) -> bool:
    return name.startswith((":", "proxy-")) or name in HOP_BY_HOP or name in extra


def filter_headers(headers: Iterable[tuple[str, str]]) -> Headers:
    """Lower-case names; drop pseudo-headers, hop-by-hop ones and those named by Connection."""
    items = list(headers)
    extra = _connection_tokens(items)
    out: Headers = []
    for name, value in items:
        lower = name.lower()
        if not _is_dropped(lower, extra):
            out.append((lower, value))
    return out


def upstream_request_headers(headers: Iterable[tuple[str, str]], credential: str) -> Headers:
    """Headers for the upstream request: filtered, the client's Authorization ALWAYS removed,
    the upstream's own key added when there is one."""
    out = [(n, v) for n, v in filter_headers(headers) if n != "authorization"]
    if credential:
        out.append(("authorization", f"Bearer {credential}"))
    return out


def response_headers(headers: Iterable[tuple[str, str]]) -> Headers:
    """Headers of an upstream response as they go back through the tunnel."""
    return filter_headers(headers)


def request_head(method: str, authority: str, path: str) -> Headers:
    """The pseudo-headers of a request the gateway sends through a tunnel (RFC 9113 8.3.1);
    ``:authority`` names the upstream, never a host."""
    return [(":method", method), (":scheme", "https"), (":authority", authority), (":path", path)]
