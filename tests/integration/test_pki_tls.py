"""Real TLS on loopback with pki certificates: mutual TLS works, and each wrong cert is refused."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from pki import CA
from tests.support.pki_fixtures import PkiPaths, client_context, make_pki, server_context

TIMEOUT_S = 10.0


@dataclass
class Outcome:
    """What each side saw: the peer's common name on success, the error text on refusal."""

    server_peer: str | None = None
    server_error: str | None = None
    client_peer: str | None = None
    client_got: bytes | None = None
    client_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.server_error is None and self.client_error is None and self.client_got == b"ok"


def _cn(cert: object) -> str | None:
    assert isinstance(cert, dict)
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _serve_one(listener: socket.socket, ctx: ssl.SSLContext, out: Outcome) -> None:
    try:
        conn, _ = listener.accept()
        conn.settimeout(TIMEOUT_S)
        with ctx.wrap_socket(conn, server_side=True) as tls:
            out.server_peer = _cn(tls.getpeercert())
            tls.sendall(b"ok")
    except (ssl.SSLError, OSError) as exc:
        out.server_error = str(exc)


def handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str = "localhost"
) -> Outcome:
    """One TLS connection over 127.0.0.1; the server sends b'ok' once the handshake succeeds."""
    out = Outcome()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT_S)
        port = listener.getsockname()[1]
        thread = threading.Thread(target=_serve_one, args=(listener, server_ctx, out))
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as raw,
                client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls,
            ):
                out.client_peer = _cn(tls.getpeercert())
                # TLS 1.3: a refused client certificate shows up on the client's first read.
                out.client_got = tls.recv(16)
        except (ssl.SSLError, OSError) as exc:
            out.client_error = str(exc)
        thread.join(TIMEOUT_S)
        assert not thread.is_alive()
    return out


@pytest.fixture
def paths(tmp_path: Path) -> PkiPaths:
    return make_pki(tmp_path / "pki")


@pytest.mark.parametrize("check_crl", [True, False])
@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_mutual_tls_succeeds(paths: PkiPaths, check_crl: bool, hostname: str) -> None:
    server_ctx = server_context(paths, check_crl=check_crl)
    out = handshake(server_ctx, client_context(paths), server_hostname=hostname)
    assert out.ok, out
    assert out.server_peer == "office-1"
    assert out.client_peer == "gateway"


def test_server_certificate_as_client_certificate_refused(paths: PkiPaths) -> None:
    client_ctx = client_context(paths, cert=paths.server_cert, key=paths.server_key)
    out = handshake(server_context(paths), client_ctx)
    assert not out.ok
    assert out.server_error is not None
    assert "unsuitable certificate purpose" in out.server_error


def test_client_certificate_from_another_ca_refused(paths: PkiPaths, tmp_path: Path) -> None:
    other = trustme.CA()
    stranger = other.issue_cert("office-1")
    chain = tmp_path / "stranger.pem"
    stranger.private_key_and_cert_chain_pem.write_to_path(str(chain))
    client_ctx = client_context(paths, cert=chain, key=chain)
    out = handshake(server_context(paths), client_ctx)
    assert not out.ok
    assert out.server_error is not None
    assert "unable to get local issuer certificate" in out.server_error


def test_revoked_client_certificate_refused(paths: PkiPaths) -> None:
    ca = CA.load(paths.dir)
    ca.issue_client("office-2")
    ca.revoke("office-2")
    server_ctx = server_context(paths)  # loads the rewritten crl.pem
    revoked_ctx = client_context(paths, cert=paths.cert("office-2"), key=paths.key("office-2"))
    out = handshake(server_ctx, revoked_ctx)
    assert not out.ok
    assert out.server_error is not None
    assert "certificate revoked" in out.server_error
    # The twin: the same server still accepts the certificate that was not revoked.
    assert handshake(server_ctx, client_context(paths)).ok


def test_expired_client_certificate_refused(paths: PkiPaths) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    CA.load(paths.dir).issue_client("old", days=2, not_before=past)
    client_ctx = client_context(paths, cert=paths.cert("old"), key=paths.key("old"))
    out = handshake(server_context(paths), client_ctx)
    assert not out.ok
    assert out.server_error is not None
    assert "certificate has expired" in out.server_error


def test_missing_client_certificate_refused(paths: PkiPaths) -> None:
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cafile=paths.ca_cert)
    out = handshake(server_context(paths), client_ctx)
    assert not out.ok
    assert out.server_error is not None
    assert "peer did not return a certificate" in out.server_error


def test_client_refuses_server_from_another_ca(paths: PkiPaths, tmp_path: Path) -> None:
    other = trustme.CA()
    chain = tmp_path / "impostor.pem"
    other.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(chain))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(chain)
    out = handshake(server_ctx, client_context(paths))
    assert not out.ok
    assert out.client_error is not None
    assert "unable to get local issuer certificate" in out.client_error


def test_client_refuses_client_certificate_as_server(paths: PkiPaths) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(paths.client_cert, paths.client_key)
    out = handshake(server_ctx, client_context(paths), server_hostname="office-1")
    assert not out.ok
    assert out.client_error is not None
    assert "unsuitable certificate purpose" in out.client_error
