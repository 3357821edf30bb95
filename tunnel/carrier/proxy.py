"""The TCP part of the ``tls`` carrier: direct, or through an HTTP proxy with ``CONNECT``.

Proxy selection and the CONNECT exchange are sans-IO functions; ``open_tcp`` does the I/O.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from tunnel.errors import DialError, ProxyRefusedError

MAX_PROXY_HEAD = 64 * 1024


@dataclass(frozen=True, slots=True)
class ProxySpec:
    host: str
    port: int
    username: str = ""
    password: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_proxy_url(url: str) -> ProxySpec:
    """``http://user:pass@host:port`` (or bare ``host:port``) -> ProxySpec; ValueError if bad."""
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", ""):
        raise ValueError(f"proxy URL {url!r}: only http:// proxies are supported")
    if not parts.hostname:
        raise ValueError(f"proxy URL {url!r} has no host")
    return ProxySpec(
        host=parts.hostname,
        port=parts.port or 8080,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )


def bypasses_proxy(host: str, no_proxy: str) -> bool:
    """NO_PROXY rules: ``*``, exact names, domain suffixes (``.corp`` or ``corp``), host:port."""
    host = host.lower().strip("[]")
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry = entry.strip("[]") if entry.startswith("[") else entry.rsplit(":", 1)[0]
        entry = entry.lstrip(".")
        if host == entry or host.endswith("." + entry):
            return True
    return False


def select_proxy(configured: str, target_host: str, environ: Mapping[str, str]) -> ProxySpec | None:
    """The configured proxy, else HTTPS_PROXY / https_proxy unless NO_PROXY exempts the host."""
    if configured:
        return parse_proxy_url(configured)
    url = environ.get("HTTPS_PROXY") or environ.get("https_proxy") or ""
    if not url:
        return None
    no_proxy = environ.get("NO_PROXY") or environ.get("no_proxy") or ""
    if bypasses_proxy(target_host, no_proxy):
        return None
    return parse_proxy_url(url)


def connect_request(host: str, port: int, proxy: ProxySpec) -> bytes:
    """The CONNECT request head, with Basic proxy auth when the proxy URL carries credentials."""
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if proxy.username:
        token = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_connect_response(head: bytes) -> tuple[int, str]:
    """(status code, status line) from the proxy's answer head."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1").strip()
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return 0, line or "(empty answer)"
    return int(parts[1]), line


def set_nodelay(writer: asyncio.StreamWriter) -> None:
    """No Nagle: HTTP/2 frames (a PING answer, a small answer) leave at once."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _connect(
    host: str, port: int, what: str, timeout_s: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port, limit=MAX_PROXY_HEAD)
    except TimeoutError:
        reason = f"no answer within {timeout_s:g}s"
        raise DialError(f"cannot reach {what} {host}:{port}: {reason}") from None
    except OSError as exc:
        raise DialError(f"cannot reach {what} {host}:{port}: {exc.strerror or exc}") from None
    set_nodelay(writer)
    return reader, writer


async def open_tcp(
    host: str, port: int, proxy: ProxySpec | None, timeout_s: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to host:port, directly or through ``proxy`` with CONNECT."""
    if proxy is None:
        return await _connect(host, port, "the gateway at", timeout_s)
    reader, writer = await _connect(proxy.host, proxy.port, "the proxy at", timeout_s)
    try:
        writer.write(connect_request(host, port, proxy))
        async with asyncio.timeout(timeout_s):
            head = await reader.readuntil(b"\r\n\r\n")
    except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        writer.close()
        timed_out = isinstance(exc, TimeoutError)
        reason = "no answer in time" if timed_out else "it closed the connection"
        raise DialError(f"proxy {proxy.address} did not answer CONNECT: {reason}") from None
    code, line = parse_connect_response(head)
    if not 200 <= code < 300:
        writer.close()
        raise ProxyRefusedError(line)
    return reader, writer
