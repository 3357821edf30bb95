"""Certificates for tests, made by `pki` itself (no pytest here, so any test or script can use it).

paths = make_pki(tmp_path / "pki")
server_ctx = server_context(paths)          # gateway cert, requires a client cert, CRL checked
client_ctx = client_context(paths)          # office-1 cert, trusts only ca.crt
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from pki import CA

SERVER_NAME = "gateway"
CLIENT_NAME = "office-1"


@dataclass(frozen=True)
class PkiPaths:
    """The files of a test CA with one server and one client certificate."""

    dir: Path
    ca_cert: Path
    ca_key: Path
    crl: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def cert(self, name: str) -> Path:
        """DIR/NAME.crt (for certificates issued later with CA.load(paths.dir))."""
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        """DIR/NAME.key."""
        return self.dir / f"{name}.key"


def make_pki(
    directory: Path,
    *,
    server: str = SERVER_NAME,
    client: str = CLIENT_NAME,
    dns: tuple[str, ...] = ("localhost",),
    ips: tuple[str, ...] = ("127.0.0.1",),
) -> PkiPaths:
    """Create a CA in DIRECTORY, a server cert for localhost/127.0.0.1 and a client cert."""
    ca = CA.init(directory, name="Test LLM CA")
    srv = ca.issue_server(server, dns=dns, ips=ips)
    cli = ca.issue_client(client)
    return PkiPaths(
        dir=directory,
        ca_cert=ca.cert_path,
        ca_key=directory / "ca.key",
        crl=ca.crl_path,
        server_cert=srv.cert_path,
        server_key=srv.key_path,
        client_cert=cli.cert_path,
        client_key=cli.key_path,
    )


def server_context(paths: PkiPaths, *, check_crl: bool = True) -> ssl.SSLContext:
    """A TLS server context: server cert, client cert required (CA-only trust), CRL on the leaf."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(paths.server_cert, paths.server_key)
    ctx.load_verify_locations(cafile=paths.ca_cert)
    ctx.verify_mode = ssl.CERT_REQUIRED
    if check_crl:
        ctx.load_verify_locations(cafile=paths.crl)
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return ctx


def client_context(
    paths: PkiPaths, *, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """A TLS client context trusting only ca.crt, presenting the client cert (or CERT/KEY)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=paths.ca_cert)
    ctx.load_cert_chain(cert or paths.client_cert, key or paths.client_key)
    return ctx
