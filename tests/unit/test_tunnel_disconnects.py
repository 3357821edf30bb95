"""How the listener names a tunnel's end, and what the pool remembers of the ends."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from pki import CA
from tunnel.api import DISCONNECT_REASONS, RECENT_DISCONNECTS
from tunnel.pool import Pool, Tunnel
from tunnel.security.secure_stream import PeerIdentity


def make_tunnel(
    cert_der: bytes = b"",
    *,
    stalled: str | None = None,
    ping_timed_out: bool = False,
    peer_closed: bool = False,
) -> Tunnel:
    tunnel = Tunnel("office-1#1", PeerIdentity("office-1", 7, cert_der), "tls", "10.0.0.9:4", 0.0)
    tunnel.session = SimpleNamespace(  # type: ignore[assignment]
        stalled=stalled, ping_timed_out=ping_timed_out, peer_closed=peer_closed
    )
    return tunnel


def test_the_client_certificate_expiry_is_read_from_the_presented_certificate(
    tmp_path: Path,
) -> None:
    ca = CA.init(tmp_path / "pki", name="Test CA")
    issued = ca.issue_client("office-1", days=10)
    cert = x509.load_pem_x509_certificate(issued.cert_path.read_bytes())
    der = cert.public_bytes(Encoding.DER)
    assert make_tunnel(der).cert_not_after == cert.not_valid_after_utc.timestamp()
    assert make_tunnel(b"garbage").cert_not_after is None


@pytest.mark.parametrize(
    ("setup", "detail", "reason"),
    [
        ({"peer_closed": True}, "the connector closed the connection", "peer_closed"),
        ({"peer_closed": True}, "the connection was reset", "peer_closed"),
        ({}, "TLS error (decryption failed or bad record mac)", "error"),
        ({"ping_timed_out": True}, "no PING answer within 10s", "ping_timeout"),
        ({"stalled": "inbound held"}, "the connection window stalled (x)", "stalled"),
        ({"goaway": True}, "drained", "goaway"),
        ({"goaway": True, "peer_closed": True}, "the connector closed the connection", "goaway"),
        ({"by_listener": "revoked", "goaway": True}, "certificate revoked", "revoked"),
        ({"by_listener": "no_hello"}, "no hello from the connector ()", "no_hello"),
    ],
)
def test_each_end_gets_its_label(setup: dict[str, object], detail: str, reason: str) -> None:
    tunnel = make_tunnel(
        stalled=setup.get("stalled"),  # type: ignore[arg-type]
        ping_timed_out=bool(setup.get("ping_timed_out")),
        peer_closed=bool(setup.get("peer_closed")),
    )
    if setup.get("goaway"):
        tunnel.peer_draining()
    tunnel.ended_by_listener = setup.get("by_listener")  # type: ignore[assignment]
    end = tunnel.disconnect(detail, shutdown=False)
    assert (end.reason, end.detail) == (reason, detail)
    assert (end.connector, end.tunnel_id, end.carrier, end.remote) == (
        "office-1", "office-1#1", "tls", "10.0.0.9:4",
    )  # fmt: skip
    assert reason in DISCONNECT_REASONS
    assert tunnel.disconnect(detail, shutdown=True).reason == "shutdown"  # whatever else


def test_the_pool_keeps_the_last_ends_newest_first_and_counts_all() -> None:
    pool = Pool()
    assert dict(pool.status().disconnects_total) == dict.fromkeys(DISCONNECT_REASONS, 0)
    tunnel = make_tunnel()
    for n in range(RECENT_DISCONNECTS + 5):
        pool.ended(tunnel.disconnect(f"end {n}", shutdown=n % 2 == 0))
    status = pool.status()
    assert len(status.recent_disconnects) == RECENT_DISCONNECTS
    assert status.recent_disconnects[0].detail == f"end {RECENT_DISCONNECTS + 4}"
    assert status.recent_disconnects[-1].detail == "end 5"
    counts = dict(status.disconnects_total)
    assert (counts["shutdown"], counts["error"]) == (28, 27)
    assert list(counts) == list(DISCONNECT_REASONS)
