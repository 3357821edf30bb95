"""What the ``h2`` library alone costs per request-response exchange, with the tunnel's settings.

In-process and socket-free: two h2 connections built as the tunnel builds them
(:func:`tunnel.session._new_connection`, :class:`tunnel.session.SessionSettings`), the client
role as in the gateway, the server role as in the connector, the bytes handed from one to the
other. Each exchange is one small chat completion as the tunnel carries it in the benchmark: the
request head the gateway builds from the load client's headers and a ~200 B body (END_STREAM),
the bench upstream's answer head and a ~300 B body (END_STREAM), each side
acknowledging the DATA it received (flow control, as ``tunnel.h2stream.Stream.read`` does).
No event loop, no TLS, no copies into or out of sockets: the figure is h2 + hpack + hyperframe,
a lower bound of what the tunnel's HTTP/2 layer costs per request.

``python -m bench.h2_cost [N]`` prints the figures.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import h2.events

from gateway.api.upstream_call import forward_headers
from tunnel.headers import filter_headers, response_headers
from tunnel.session import SessionSettings, _Connection, _new_connection

REQUEST_BODY = (
    b'{"model":"bench-model","messages":[{"role":"user","content":"Say hello in five words."}],'
    b'"max_tokens":16,"temperature":0.2,"user":"office-1","metadata":{"origin":"bench-h2-cost"}}'
)
RESPONSE_BODY = (
    b'{"id":"chatcmpl-0123456789","object":"chat.completion","created":1767225600,'
    b'"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"Hello there, how are you?"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19},'
    b'"system_fingerprint":"fp_bench"}'
)
#: What the bench's load client sends the gateway (aiohttp's own headers included).
CLIENT_HEADERS = [
    ("host", "127.0.0.1:8443"),
    ("content-type", "application/json"),
    ("authorization", "Bearer sk-gw-0123456789abcdef"),
    ("accept", "*/*"),
    ("accept-encoding", "gzip, deflate"),
    ("user-agent", "Python/3.11 aiohttp/3.13"),
    ("content-length", str(len(REQUEST_BODY))),
]
#: The head the gateway puts into the tunnel for it, built by the gateway's own code.
REQUEST_HEAD = [
    (":method", "POST"),
    (":scheme", "https"),
    (":authority", "bench-direct"),
    (":path", "/v1/chat/completions"),
    *filter_headers(forward_headers(CLIENT_HEADERS)),
]
#: The bench upstream's answer head as the connector sends it back (``bench/fast_upstream.py``
#: answers with content-type and content-length only).
RESPONSE_HEAD = [
    (":status", "200"),
    *response_headers(
        [("content-type", "application/json"), ("content-length", str(len(RESPONSE_BODY)))]
    ),
]
PREFACE_ROUNDS = 4


@dataclass
class Outcome:
    """Timings of ``exchanges`` exchanges, and what each side last saw (to prove they happened)."""

    exchanges: int = 0
    client_ns: int = 0
    server_ns: int = 0
    process_s: float = 0.0
    request_head: list[tuple[str, str]] = field(default_factory=list)
    request_body: bytes = b""
    response_head: list[tuple[str, str]] = field(default_factory=list)
    response_body: bytes = b""
    completed: int = 0  # exchanges whose request and response both ended (END_STREAM seen)


def connected_pair(settings: SessionSettings | None = None) -> tuple[_Connection, _Connection]:
    """A client and a server connection past the preface and the SETTINGS exchange."""
    settings = settings or SessionSettings()
    client = _new_connection(True, settings)
    server = _new_connection(False, settings)
    for _ in range(PREFACE_ROUNDS):
        to_server, to_client = client.data_to_send(), server.data_to_send()
        if not to_server and not to_client:
            return client, server
        if to_server:
            server.receive_data(to_server)
        if to_client:
            client.receive_data(to_client)
    raise RuntimeError("h2 preface exchange did not settle")


def _take(
    conn: _Connection, events: list[h2.events.Event]
) -> tuple[list[tuple[str, str]], bytes, bool]:
    """Act on received events as the tunnel does (acknowledge DATA); return head, body, ended."""
    head: list[tuple[str, str]] = []
    body = b""
    ended = False
    for event in events:
        if isinstance(event, h2.events.RequestReceived | h2.events.ResponseReceived):
            head = [(str(name), str(value)) for name, value in event.headers or []]
        elif isinstance(event, h2.events.DataReceived):
            body += event.data or b""
            conn.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id or 0)
        elif isinstance(event, h2.events.StreamEnded):
            ended = True
    return head, body, ended


def run(n: int) -> Outcome:
    """``n`` request-response exchanges on one connection pair."""
    client, server = connected_pair()
    out = Outcome()
    clock = time.perf_counter_ns
    process_start = time.process_time()
    for _ in range(n):
        t0 = clock()
        sid = client.get_next_available_stream_id()
        client.send_headers(sid, REQUEST_HEAD)
        client.send_data(sid, REQUEST_BODY, end_stream=True)
        wire = client.data_to_send()  # and any WINDOW_UPDATE left from the last answer
        t1 = clock()
        head, body, request_ended = _take(server, server.receive_data(wire))
        server.send_headers(sid, RESPONSE_HEAD)
        server.send_data(sid, RESPONSE_BODY, end_stream=True)
        wire = server.data_to_send()
        t2 = clock()
        answer_head, answer, response_ended = _take(client, client.receive_data(wire))
        t3 = clock()
        out.client_ns += (t1 - t0) + (t3 - t2)
        out.server_ns += t2 - t1
        out.exchanges += 1
        out.completed += request_ended and response_ended
        out.request_head, out.request_body = head, body
        out.response_head, out.response_body = answer_head, answer
    out.process_s = time.process_time() - process_start
    return out


def measure(n: int = 3000) -> dict[str, float]:
    """Microseconds per exchange: ``client_us`` (the gateway's side), ``server_us`` (the
    connector's side), ``total_us`` (both), ``process_us`` (CPU time of the whole loop per
    exchange, its bookkeeping included), and ``exchanges``."""
    if n <= 0:
        raise ValueError(f"n must be positive, not {n}")
    out = run(n)
    if out.completed != n:
        raise RuntimeError(f"only {out.completed} of {n} h2 exchanges completed")
    client_us = out.client_ns / n / 1000
    server_us = out.server_ns / n / 1000
    return {
        "client_us": client_us,
        "server_us": server_us,
        "total_us": client_us + server_us,
        "process_us": out.process_s / n * 1e6,
        "exchanges": float(n),
    }


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 3000
    figures = measure(n)
    for key, value in figures.items():
        print(f"{key}: {value:.1f}" if math.isfinite(value) else f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
