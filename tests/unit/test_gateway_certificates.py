"""Certificate facts: read from the configured files (cached by mtime) and the live tunnels."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from cryptography import x509

from gateway.certificates import (
    CRL_WARN_DAYS,
    WARN_DAYS,
    CertificateFact,
    certificate_facts,
)
from gateway.config import GatewayConfig, config_from_table
from pki import CA
from tests.support.pki_fixtures import PkiPaths, make_pki
from tunnel.api import PoolStatus, TunnelInfo

DAY = 86_400.0


def config_for(pki: PkiPaths, tmp: Path) -> GatewayConfig:
    table = {
        "server": {"cert": str(pki.server_cert), "key": str(pki.server_key)},
        "tunnel": {
            "cert": str(pki.server_cert),
            "key": str(pki.server_key),
            "ca": str(pki.ca_cert),
            "crl": str(pki.crl),
            "allowed_connectors": ["office-1"],
        },
    }
    return config_from_table(table, tmp / "gateway.toml")


def not_after(path: Path) -> float:
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc.timestamp()


def tunnel(connector: str, tunnel_id: str, cert_not_after: float | None) -> TunnelInfo:
    return TunnelInfo(
        connector=connector,
        tunnel_id=tunnel_id,
        carrier="tls",
        remote="127.0.0.1:5000",
        upstreams=("office-llm",),
        active_streams=0,
        draining=False,
        connected_s=1.0,
        client_cert_not_after=cert_not_after,
    )


def test_the_files_and_the_connectors_each_give_their_expiry(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    status = PoolStatus(
        (
            tunnel("office-2", "office-2#3", 3000.0),
            tunnel("office-1", "office-1#1", 2000.0),
            tunnel("office-1", "office-1#2", 1000.0),  # the earliest of its two tunnels counts
            tunnel("office-3", "office-3#4", None),  # unknown: not listed
        )
    )
    facts = certificate_facts(config_for(pki, tmp_path), status)
    crl = x509.load_pem_x509_crl(pki.crl.read_bytes())
    assert crl.next_update_utc is not None
    assert facts == (
        CertificateFact("ca", "Test LLM CA", not_after(pki.ca_cert)),
        CertificateFact("server", "gateway", not_after(pki.server_cert)),
        CertificateFact("tunnel", "gateway", not_after(pki.server_cert)),
        CertificateFact("crl", "Test LLM CA", crl.next_update_utc.timestamp()),
        CertificateFact("connector:office-1", "office-1", 1000.0),
        CertificateFact("connector:office-2", "office-2", 3000.0),
    )


def test_days_left_and_what_is_flagged() -> None:
    now = 1_800_000_000.0
    cert = CertificateFact("connector:office-1", "office-1", now + 10 * DAY)
    assert cert.days_left(now) == pytest.approx(10.0)
    assert cert.expiring(now)
    assert not cert.expiring(now - 21 * DAY)  # 31 days left
    assert CertificateFact("ca", "ca", now - DAY).days_left(now) == pytest.approx(-1.0)
    crl = CertificateFact("crl", "ca", now + 6 * DAY)  # re-signed daily, 7 days ahead: fine
    assert not crl.expiring(now)
    assert crl.expiring(now + 4 * DAY)
    assert (WARN_DAYS, CRL_WARN_DAYS, crl.warn_days, cert.warn_days) == (30, 3, 3, 30)


def test_a_file_is_read_again_only_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = make_pki(tmp_path / "pki")
    config = config_for(pki, tmp_path)
    reads: list[Path] = []
    original = Path.read_bytes

    def counted(path: Path) -> bytes:
        reads.append(path)
        return original(path)

    monkeypatch.setattr(Path, "read_bytes", counted)
    first = certificate_facts(config, PoolStatus())
    reads.clear()
    assert certificate_facts(config, PoolStatus()) == first
    assert reads == []  # nothing changed: nothing read

    CA.load(pki.dir).issue_server(
        "gateway", dns=["localhost"], ips=["127.0.0.1"], days=10, force=True
    )
    stat = pki.server_cert.stat()  # a rewrite within the same clock tick still counts
    os.utime(pki.server_cert, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    reads.clear()
    facts = {f.role: f for f in certificate_facts(config, PoolStatus())}
    assert set(reads) == {pki.server_cert}
    assert facts["server"].days_left(time.time()) == pytest.approx(10.0, abs=0.01)
    assert facts["tunnel"].expiring(time.time())


def test_an_unreadable_file_is_left_out(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    config = config_for(pki, tmp_path)
    pki.crl.write_bytes(b"not a CRL")
    pki.server_cert.unlink()
    assert [f.role for f in certificate_facts(config, PoolStatus())] == ["ca"]


def test_the_json_of_a_fact() -> None:
    fact = CertificateFact("connector:office-1", "office-1", 1_800_000_000.0 + 10 * DAY)
    assert fact.as_json(1_800_000_000.0 + 0.001 * DAY) == {
        "role": "connector:office-1",
        "subject": "office-1",
        "not_after": 1_800_864_000.0,
        "days_left": 10.0,
        "expiring": True,
    }
