"""Malformed requests against a real `gateway serve` (with a real connector and the stand-in LLM):
every one gets a specific 4xx, or the connection is closed when the HTTP itself cannot be parsed;
never a 5xx, and never a "Traceback" in the gateway's log.

One gateway serves the whole module (starting one costs seconds on a shared machine); each test
looks only at the log written during that test. Generated bodies go through one reusable client.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from joserfc.jwk import ECKey

from tests.integration.test_gateway_api import UP, connector_toml, create_key, gateway_toml
from tests.support.fuzz import fuzz_settings
from tests.support.pki_fixtures import PkiPaths, make_pki
from tests.support.procs import ManagedProcess, file_ready, our_command, standin_process

CHAT = "/v1/chat/completions"
ISSUER = "https://idp.fuzz.test"
FUZZ = fuzz_settings(25, [HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@dataclass(repr=False)
class Surface:
    tmp: Path
    pki: PkiPaths
    gateway: ManagedProcess
    ports: dict[str, int]
    key: str
    limited_key: str  # tpm = 1000
    http1: httpx.Client
    http2: httpx.Client

    def __repr__(self) -> str:  # hypothesis prints it with every failing example
        return f"Surface({self.url})"

    def ssl_context(self, alpn: str = "http/1.1") -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        ctx.set_alpn_protocols([alpn])
        return ctx

    @property
    def url(self) -> str:
        return f"https://localhost:{self.ports['public']}"

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {key or self.key}"}

    def log_size(self) -> int:
        return len(self.gateway.log_text())

    def raw(self, data: bytes, *, timeout: float = 5.0) -> bytes:
        """Send bytes over a fresh TLS connection; everything the gateway answers until it
        closes (or stops talking for ``timeout``)."""
        with self.connect(timeout=timeout) as tls:
            tls.sendall(data)
            return read_all(tls)

    @contextlib.contextmanager
    def connect(self, alpn: str = "http/1.1", timeout: float = 5.0) -> Iterator[ssl.SSLSocket]:
        tcp = socket.create_connection(("127.0.0.1", self.ports["public"]), timeout=timeout)
        with tcp, self.ssl_context(alpn).wrap_socket(tcp, server_hostname="localhost") as tls:
            yield tls


def read_all(sock: ssl.SSLSocket) -> bytes:
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (TimeoutError, ssl.SSLError, ConnectionError):
        pass
    return out


def status_of(answer: bytes) -> int | None:
    """The status of the first final HTTP/1.1 response in ``answer``; None when the connection
    was closed unanswered."""
    while answer.startswith(b"HTTP/1.1 1") and b"\r\n\r\n" in answer:  # 100 Continue first
        rest = answer.split(b"\r\n\r\n", 1)[1]
        if not rest.startswith(b"HTTP/1."):
            break
        answer = rest
    if not answer.startswith(b"HTTP/1."):
        assert answer == b"", answer[:200]
        return None
    return int(answer.split(b" ", 2)[1])


def write_jwks(tmp: Path) -> Path:
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    path = tmp / "jwks.json"
    path.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    return path


@pytest.fixture(scope="module")
def surface(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Surface]:
    tmp = tmp_path_factory.mktemp("fuzz-surface")
    pki = make_pki(tmp / "pki")
    toml = gateway_toml(tmp, pki)
    jwks = write_jwks(tmp)
    with toml.open("a") as f:
        f.write(f'[[auth.jwt]]\nissuer = "{ISSUER}"\naudience = "llm"\njwks_file = "{jwks}"\n')
        f.write('algorithms = ["ES256"]\n')
    key = create_key(toml, "fuzzer")
    limited = create_key(toml, "limited", "--tpm", "1000", "--rpm", "1000")
    processes: list[ManagedProcess] = []
    try:
        standin = standin_process(tmp)
        standin.start()
        processes.append(standin)
        ready = tmp / "ready.json"
        gateway = our_command(
            "gateway", "serve", "-c", str(toml), "--ready-file", str(ready),
            work_dir=tmp, ready=file_ready(ready),
        ).start()  # fmt: skip
        processes.append(gateway)
        ports = json.loads(ready.read_text())
        connector = our_command(
            "connector", "run", "-c",
            str(connector_toml(tmp, pki, ports["tunnel"], standin.url, 'transport = "tls"\n')),
            work_dir=tmp,
        )  # fmt: skip
        connector.launch()
        processes.append(connector)
        wait_ready(ports["admin"])
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        with (
            httpx.Client(verify=ctx, timeout=15.0) as http1,
            httpx.Client(verify=ctx, timeout=15.0, http2=True) as http2,
        ):
            yield Surface(tmp, pki, gateway, ports, key, limited, http1, http2)
    finally:
        for proc in reversed(processes):
            proc.stop()


def wait_ready(admin_port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client() as http:
        while http.get(f"http://127.0.0.1:{admin_port}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "no tunnel came up"
            time.sleep(0.05)


@pytest.fixture
def clean_log(surface: Surface) -> Iterator[Surface]:
    """The gateway logs no traceback (nor an unexpected error) while the test runs."""
    start = surface.log_size()
    yield surface
    time.sleep(0.1)  # a traceback from a task that outlived the answer
    written = surface.gateway.log_text()[start:]
    assert "Traceback" not in written, written
    assert "unexpected error" not in written, written


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return dict(body["error"])


def post(surface: Surface, body: bytes, *, http2: bool = False, **headers: str) -> httpx.Response:
    client = surface.http2 if http2 else surface.http1
    merged = {**surface.auth(), "content-type": "application/json", **headers}
    return client.post(surface.url + CHAT, content=body, headers=merged)


# ----------------------------------------------------------------------------- bodies


@FUZZ
@given(body=st.binary(max_size=300), http2=st.booleans())
def test_any_bytes_as_a_chat_body_get_a_400(clean_log: Surface, body: bytes, http2: bool) -> None:
    response = post(clean_log, body, http2=http2)
    assert response.status_code == 400, response.text
    assert error_of(response)["type"] == "invalid_request_error"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
FIELDS = st.sampled_from(["model", "messages", "stream", "stream_options", "max_tokens", "n"])


@FUZZ
@given(
    fields=st.dictionaries(FIELDS, JSON, max_size=5),
    route=st.sampled_from([CHAT, "/v1/completions", "/v1/embeddings", "/v1/responses"]),
)
def test_wrong_types_get_a_400_naming_the_param(
    clean_log: Surface, fields: dict[str, Any], route: str
) -> None:
    response = clean_log.http1.post(clean_log.url + route, json=fields, headers=clean_log.auth())
    assert response.status_code in (400, 404), response.text  # 404: a well-typed unknown model
    error = error_of(response)
    if response.status_code == 400:
        assert error["type"] == "invalid_request_error"
    else:
        assert error["code"] == "model_not_found"


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe\xfd",
        b'{"model":"qwen3-coder","messages":[{"role":"user","content":"\xc3\x28"}]}',
        b'{"model":"qwen3-coder","messages":[{"role":"user","content":"x"}]',
        b'{"model":"qwen3-coder","messages":[{"role":"user","content":"x"}],"n":NaN}',
        b'{"model":"qwen3-coder","messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"model":"qwen3-coder","messages":[{"role":"user"}],"x":' + b"9" * 5000 + b"}",
        b"[]",
        b"",
        b"null",
        b'{"model":null,"messages":[{"role":"user"}]}',
        b'{"model":"qwen3-coder","messages":[]}',
        b'{"model":"qwen3-coder","messages":["hi"]}',
        b'{"model":"qwen3-coder","messages":[{"role":"user"}],"stream":"yes"}',
        b'{"model":"qwen3-coder","messages":[{"role":"user"}],"stream_options":[]}',
        b'{"model":"qwen3-coder","messages":[{"role":"user"}],"stream":true,"stream_options":1}',
    ],
    ids=lambda b: repr(b[:40]),
)
def test_a_bad_body_gets_a_400(clean_log: Surface, body: bytes) -> None:
    response = post(clean_log, body)
    assert response.status_code in (400, 413), response.text
    assert error_of(response)


LONE_SURROGATE_CHAT = b'{"model":"qwen3-coder","messages":[{"role":"user","content":"\\ud800"}]}'


def test_a_lone_surrogate_in_a_body_sent_as_it_is_is_a_400(clean_log: Surface) -> None:
    response = post(clean_log, LONE_SURROGATE_CHAT)
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == "invalid_unicode"


@pytest.mark.parametrize(
    "body",
    [
        # two "model":"qwen3-coder" pairs: the rename cannot be done on the bytes
        b'{"model":"qwen3-coder","messages":[{"role":"user","content":"\\ud800"}],'
        b'"metadata":{"model":"qwen3-coder"}}',
        # the client's stream_options without include_usage: the body is re-encoded to add it
        b'{"model":"qwen3-coder","stream":true,"stream_options":{},'
        b'"messages":[{"role":"user","content":"\\udfff"}]}',
    ],
    ids=["nested-model", "stream-options"],
)
def test_a_lone_surrogate_in_a_body_that_is_reencoded_is_a_400(
    clean_log: Surface, body: bytes
) -> None:
    response = post(clean_log, body)
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == "invalid_unicode"


def test_a_body_over_the_limit_gets_a_413(clean_log: Surface) -> None:
    response = post(clean_log, b'{"model":"' + b"x" * 200_000 + b'"}')
    assert response.status_code == 413
    assert error_of(response)


@FUZZ
@given(
    budget=st.integers(0, 2**200) | st.sampled_from([2**63, 2**64, 10**30]),
    n=st.integers(-5, 2**70),
    field=st.sampled_from(["max_tokens", "max_completion_tokens"]),
)
def test_a_huge_token_budget_on_a_limited_key_gets_a_429_or_an_answer(
    clean_log: Surface, budget: int, n: int, field: str
) -> None:
    body: dict[str, Any] = {"model": "qwen3-coder", "messages": [{"role": "user", "content": "x"}]}
    body |= {field: budget, "n": n}
    response = clean_log.http1.post(
        clean_log.url + CHAT, json=body, headers=clean_log.auth(clean_log.limited_key)
    )
    assert response.status_code in (200, 400, 429), response.text
    if response.status_code != 200:
        assert error_of(response)


# ----------------------------------------------------------------------------- authorization


def jwt_like(header: bytes, claims: bytes = b"{}") -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    return f"{b64(header)}.{b64(claims)}.c2ln"


BAD_AUTHORIZATIONS = [
    "Basic dXNlcjpwYXNz",
    "Bearer",
    "Token sk-nothing",
    "Bearer sk-not-a-real-key",
    "Bearer a.b.c",
    "Bearer " + jwt_like(b'{"alg":"none"}', json.dumps({"iss": ISSUER}).encode()),
    "Bearer " + jwt_like(b'{"alg":"HS256"}', json.dumps({"iss": ISSUER}).encode()),
    "Bearer " + jwt_like(b'{"alg":"ES256","kid":"zz"}', json.dumps({"iss": ISSUER}).encode()),
    "Bearer " + jwt_like(b'{"alg":"ES256","kid":"k1"}', json.dumps({"iss": ISSUER}).encode()),
    "Bearer " + jwt_like(b"[]", b"[]"),
    "Bearer " + "x" * 20_000,
    "Bearer " + "a." * 2 + "b" * 15_000,
]


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATIONS, ids=lambda a: repr(a[:30]))
@pytest.mark.parametrize("path", [CHAT, "/v1/models"])
def test_a_bad_authorization_gets_a_401(clean_log: Surface, authorization: str, path: str) -> None:
    headers = {"authorization": authorization}
    body = {"model": "qwen3-coder", "messages": [{"role": "user", "content": "x"}]}
    if path == CHAT:
        response = clean_log.http1.post(clean_log.url + path, json=body, headers=headers)
    else:
        response = clean_log.http1.get(clean_log.url + path, headers=headers)
    assert response.status_code == 401, response.text
    assert error_of(response)


@FUZZ
@given(
    authorization=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF)).map(
        str.strip
    )
)
def test_any_latin1_authorization_gets_a_401(clean_log: Surface, authorization: str) -> None:
    response = clean_log.http1.post(
        clean_log.url + CHAT,
        content=b"{}",
        headers={b"authorization": authorization.encode("latin-1")},
    )
    assert response.status_code in (400, 401), response.text


def test_a_deeply_nested_jwt_header_gets_a_401(clean_log: Surface) -> None:
    token = jwt_like(b'{"a":' + b"[" * 3000 + b"}", json.dumps({"iss": ISSUER}).encode())
    response = clean_log.http1.get(
        clean_log.url + "/v1/models", headers={"authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401, response.text


def test_an_x_api_key_header_is_not_a_bearer_key(clean_log: Surface) -> None:
    body = {"model": "qwen3-coder", "messages": [{"role": "user", "content": "x"}]}
    for headers in ({"x-api-key": clean_log.key}, {"x-api-key": ""}, {}):
        response = clean_log.http1.post(clean_log.url + CHAT, json=body, headers=headers)
        assert response.status_code == 401, response.text


# ----------------------------------------------------------------------------- methods and paths


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "FOO", "TRACE"])
def test_a_wrong_method_on_an_api_route_gets_a_4xx(clean_log: Surface, method: str) -> None:
    response = clean_log.http1.request(method, clean_log.url + CHAT, headers=clean_log.auth())
    assert 400 <= response.status_code < 500, response.text


RAW_PATHS = [
    "/v1/../x",
    "/v1/../../etc/passwd",
    "/v1/%2e%2e/x",
    "/v1/chat/completions%00",
    "/v1/%00",
    "/v1/chat/completions/",
    "/v1/chat/completions#frag",
    "/V1/CHAT/COMPLETIONS",
    "/v1/models/%ff%fe",
    "/v1/models/..%2f..%2fx",
    "/v1/models/" + "a" * 6000,
    "*",
    "/%",
    "/v1/%zz",
]


# an empty segment, a query that is not UTF-8, the absolute form (RFC 9112 3.2.2): served or 4xx
MAY_BE_SERVED = [
    "//v1/chat/completions",
    "/v1/chat/completions?x=%ff",
    "http://evil.example/v1/chat/completions",
]


@pytest.mark.parametrize("path", RAW_PATHS + MAY_BE_SERVED, ids=lambda p: repr(p[:40]))
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_odd_path_gets_a_4xx_or_a_closed_connection(
    clean_log: Surface, path: str, method: str
) -> None:
    body = b'{"model":"qwen3-coder","messages":[{"role":"user","content":"x"}]}'
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {clean_log.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    status = status_of(clean_log.raw(request))
    if path in MAY_BE_SERVED:
        assert status is None or status < 500, status
    else:
        assert status is None or 400 <= status < 500, status


# ----------------------------------------------------------------------------- broken HTTP/1.1

GOOD_HEAD = "Host: localhost\r\nContent-Type: application/json\r\nConnection: close\r\n"
BODY = b'{"model":"qwen3-coder","messages":[{"role":"user","content":"x"}]}'


def chat_head(extra: str) -> bytes:
    return f"POST {CHAT} HTTP/1.1\r\n{GOOD_HEAD}{extra}\r\n".encode()


BROKEN = {
    "garbage": b"GARBAGE\r\n\r\n",
    "binary": bytes(range(256)),
    "no-version": b"GET /v1/models\r\n\r\n",
    "http-9.9": b"GET /v1/models HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n",
    "http-0.9": b"GET /v1/models\r\n",
    "bad-header-line": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
    "space-before-colon": b"GET /v1/models HTTP/1.1\r\nHost : x\r\n\r\n",
    "nul-in-header": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "bad-method-token": b"G@T /v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
    "lf-only": b"GET /v1/models HTTP/1.1\nHost: x\nConnection: close\n\n",
    "no-host": b"GET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n",
    "two-hosts": b"GET /v1/models HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    "obs-fold": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  b\r\nConnection: close\r\n\r\n",
    "duplicate-content-length": chat_head(f"Content-Length: {len(BODY)}\r\nContent-Length: 3\r\n")
    + BODY,
    "negative-content-length": chat_head("Content-Length: -1\r\n") + BODY,
    "hex-content-length": chat_head("Content-Length: 0x10\r\n") + BODY,
    "content-length-and-chunked": chat_head("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")
    + f"{len(BODY):x}\r\n".encode()
    + BODY
    + b"\r\n0\r\n\r\n",
    "unknown-transfer-encoding": chat_head("Transfer-Encoding: gzip\r\n") + BODY,
    "bad-chunk-size": chat_head("Transfer-Encoding: chunked\r\n") + b"zz\r\n" + BODY,
    "chunk-too-short": chat_head("Transfer-Encoding: chunked\r\n")
    + b"ff\r\n"
    + BODY
    + b"\r\n0\r\n\r\n",
    "huge-header": f"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 100_000}\r\n\r\n".encode(),
    "many-headers": (
        "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + "X-A: b\r\n" * 5000 + "\r\n"
    ).encode(),
    "latin1-header": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: \xff\xfe\r\n"
    b"Connection: close\r\n\r\n",
    "expect-100": chat_head(f"Expect: 100-continue\r\nContent-Length: {len(BODY)}\r\n") + BODY,
    "bad-expect": chat_head(f"Expect: 999-nope\r\nContent-Length: {len(BODY)}\r\n") + BODY,
    "h2c-upgrade": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"Upgrade: h2c\r\nHTTP2-Settings: !!!\r\n\r\n",
    "websocket-upgrade-bad": b"GET /.well-known/llm-tunnel HTTP/1.1\r\nHost: x\r\n"
    b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 99\r\n\r\n",
}


# answers that are right although not 4xx (the request was not broken enough, or RFC 9112 says so)
ALSO_FINE = {
    "unknown-transfer-encoding": (501,),  # RFC 9112 section 6.1: "SHOULD respond with 501"
    "h2c-upgrade": (101,),  # hypercorn upgrades to h2c even over TLS (RFC 9113 3.1 says h2c is
    # cleartext only); the h2 session that follows then refuses the request: not a server error
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_http1_gets_a_4xx_or_a_closed_connection(clean_log: Surface, name: str) -> None:
    status = status_of(clean_log.raw(BROKEN[name], timeout=2.0))
    assert status is None or 400 <= status < 500 or status in ALSO_FINE.get(name, ()), status


def send_and_vanish(surface: Surface, data: bytes) -> None:
    """Send ``data`` and close the connection abruptly, mid-request."""
    with surface.connect() as tls:
        tls.sendall(data)
        time.sleep(0.3)  # the gateway is now waiting for the rest of the body


def still_serving(surface: Surface) -> None:
    response = post(surface, BODY)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "cut", [b"", b"4", b"40\r\n", b"40\r\n" + BODY[:10]], ids=["nothing", "size", "head", "half"]
)
def test_a_chunked_body_cut_short_is_not_a_server_error(clean_log: Surface, cut: bytes) -> None:
    head = chat_head(f"Authorization: Bearer {clean_log.key}\r\nTransfer-Encoding: chunked\r\n")
    send_and_vanish(clean_log, head + cut)
    still_serving(clean_log)


def test_a_content_length_longer_than_the_body_is_not_a_server_error(clean_log: Surface) -> None:
    head = chat_head(f"Authorization: Bearer {clean_log.key}\r\nContent-Length: 5000\r\n")
    send_and_vanish(clean_log, head + BODY)
    still_serving(clean_log)


@FUZZ
@given(
    line=st.binary(min_size=1, max_size=60).filter(lambda b: b"\n" not in b),
    headers=st.lists(st.binary(max_size=30).filter(lambda b: b"\n" not in b), max_size=4),
)
def test_a_generated_request_head_gets_a_4xx_or_a_closed_connection(
    clean_log: Surface, line: bytes, headers: list[bytes]
) -> None:
    request = b"\r\n".join([line, *headers, b"Connection: close", b"", b""])
    status = status_of(clean_log.raw(request, timeout=3.0))
    assert status is None or status < 500, (request, status)


# ----------------------------------------------------------------------------- broken HTTP/2


def h2_exchange(
    surface: Surface, headers: list[tuple[bytes, bytes]], body: bytes | None, timeout: float = 3.0
) -> str:
    """One stream with headers the h2 library would not send (validation off): the status the
    gateway answers, or "reset" / "goaway" / "closed" when it refuses the stream instead."""
    config = h2.config.H2Configuration(
        client_side=True,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    conn = h2.connection.H2Connection(config=config)
    with surface.connect("h2", timeout) as tls:
        assert tls.selected_alpn_protocol() == "h2"
        conn.initiate_connection()
        conn.send_headers(1, headers, end_stream=body is None)
        if body is not None:
            conn.send_data(1, body, end_stream=True)
        tls.sendall(conn.data_to_send())
        return h2_outcome(conn, tls)


def h2_outcome(conn: h2.connection.H2Connection, tls: ssl.SSLSocket) -> str:
    status = "closed"
    while True:
        try:
            data = tls.recv(65536)
        except (TimeoutError, ssl.SSLError, ConnectionError):
            return status
        if not data:
            return status
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == 1:
                status = dict(event.headers)[b":status"].decode()
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == 1:
                return status
            elif isinstance(event, h2.events.StreamReset) and event.stream_id == 1:
                return "reset"
            elif isinstance(event, h2.events.ConnectionTerminated):
                return "goaway" if status == "closed" else status
        tls.sendall(conn.data_to_send())


H2_BASE = [
    (b":method", b"POST"),
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", CHAT.encode()),
    (b"content-type", b"application/json"),
]
H2_BROKEN: dict[str, tuple[list[tuple[bytes, bytes]], bytes | None]] = {
    "uppercase-name": ([*H2_BASE, (b"X-Upper", b"1")], BODY),
    "connection-header": ([*H2_BASE, (b"connection", b"keep-alive")], BODY),
    "te-gzip": ([*H2_BASE, (b"te", b"gzip")], BODY),
    "no-path": ([h for h in H2_BASE if h[0] != b":path"], BODY),
    "empty-path": ([*(h for h in H2_BASE if h[0] != b":path"), (b":path", b"")], BODY),
    "relative-path": ([*(h for h in H2_BASE if h[0] != b":path"), (b":path", b"v1/x")], BODY),
    "two-paths": ([*H2_BASE, (b":path", b"/v1/models")], BODY),
    "pseudo-after-regular": ([*H2_BASE[:-1], (b"x-a", b"1"), (b":status", b"200")], BODY),
    "unknown-pseudo": ([*H2_BASE, (b":foo", b"bar")], BODY),
    "no-method": ([h for h in H2_BASE if h[0] != b":method"], BODY),
    "bad-method": ([(b":method", b"P O S T"), *H2_BASE[1:]], BODY),
    "content-length-too-big": ([*H2_BASE, (b"content-length", b"9999")], BODY),
    "content-length-too-small": ([*H2_BASE, (b"content-length", b"3")], BODY),
    "content-length-garbage": ([*H2_BASE, (b"content-length", b"abc")], BODY),
    "nul-in-value": ([*H2_BASE, (b"x-a", b"a\x00b")], BODY),
    "newline-in-value": ([*H2_BASE, (b"x-a", b"a\r\nb: c")], BODY),
    "no-body-for-post": (H2_BASE, None),
    "no-authorization": (H2_BASE, BODY),
}


@pytest.mark.parametrize("name", list(H2_BROKEN))
def test_broken_http2_gets_a_4xx_or_a_refused_stream(clean_log: Surface, name: str) -> None:
    headers, body = H2_BROKEN[name]
    auth = [(b"authorization", f"Bearer {clean_log.key}".encode())]
    outcome = h2_exchange(clean_log, headers + (auth if name != "no-authorization" else []), body)
    assert outcome in ("reset", "goaway", "closed") or 400 <= int(outcome) < 500, outcome


def test_the_raw_http2_client_gets_an_answer_to_a_good_request(clean_log: Surface) -> None:
    """The control for the broken HTTP/2 cases: their GOAWAYs are the gateway's refusals."""
    auth = [(b"authorization", f"Bearer {clean_log.key}".encode())]
    assert h2_exchange(clean_log, H2_BASE + auth, BODY) == "200"


# ----------------------------------------------------------------------------- still healthy


def test_the_gateway_still_answers_after_all_that(clean_log: Surface) -> None:
    response = post(clean_log, BODY)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "qwen3-coder"
    assert clean_log.gateway.running
    models = clean_log.http2.get(clean_log.url + "/v1/models", headers=clean_log.auth())
    assert UP in [m["id"] for m in models.json()["data"]]


UNPARSABLE = {
    "no-colon-header": (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", 400),
    "head-over-64k": (
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
        431,
    ),
}


@pytest.mark.parametrize("name", list(UNPARSABLE))
def test_a_request_hypercorn_cannot_parse_gets_an_openai_error(
    clean_log: Surface, name: str
) -> None:
    """Hypercorn answers what it cannot parse itself (before any app runs), with an empty body;
    a client then shows a bare status. The gateway's answer names the problem, as OpenAI's JSON."""
    request, status = UNPARSABLE[name]
    answer = clean_log.raw(request, timeout=3.0)
    assert status_of(answer) == status
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\ncontent-type: application/json" in head.lower()
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]
