"""The hello exchange that admits a tunnel, and the connector's own answers.

Once the mutual TLS is up, the gateway (the HTTP/2 client) sends ``GET /_tunnel/v1/hello``
(authority ``_tunnel``) on the new session; the connector answers it itself with its version and
the upstream names it serves, and the gateway puts the tunnel in its pool only then.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from tunnel.errors import HandshakeError
from tunnel.h2.session import Session
from tunnel.h2.stream import Stream
from tunnel.headers import request_head

VERSION = "0.1.0"
HELLO_PATH = "/_tunnel/v1/hello"
MAX_HELLO_BYTES = 64 * 1024


def hello_body(upstreams: Iterable[str]) -> bytes:
    """The connector's announcement: its version and the upstream names it serves."""
    return json.dumps({"version": VERSION, "upstreams": sorted(upstreams)}).encode()


async def respond(stream: Stream, status: int, body: bytes) -> None:
    """An answer of the connector's own: the hello, or a refusal (the gateway logs, and does not
    relay, its errors)."""
    head = [
        (":status", str(status)),
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("x-tunnel-answer", "connector"),
    ]
    await stream.send_headers(head)
    await stream.send_data(body, end_stream=True)


async def ask_hello(session: Session) -> dict[str, object]:
    """The gateway's side: ask the connector for its hello and return it, checked to be a JSON
    object of at most MAX_HELLO_BYTES (HandshakeError otherwise)."""
    stream = session.open_stream(request_head("GET", "_tunnel", HELLO_PATH), end_stream=True)
    head = dict(await stream.response_head())
    if head.get(":status") != "200":
        raise HandshakeError(f"hello answered {head.get(':status')}")
    body = b""
    while chunk := await stream.read():
        body += chunk
        if len(body) > MAX_HELLO_BYTES:
            stream.reset()
            raise HandshakeError("hello too large")
    data = json.loads(body)
    if not isinstance(data, dict):
        raise HandshakeError("hello is not an object")
    return data
