"""The CRL watcher, the identity check and certificate inspection (files only, no sockets)."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from pki import CA
from tunnel.doctor import admission_hint
from tunnel.listener import refusal_reason
from tunnel.security.certificates import issued_by, peer_identity, subject_and_issuer
from tunnel.security.crl import CrlError, CrlWatcher, load_revoked


def der_of(path: Path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)


def bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_revocation_is_seen_on_the_next_poll(tmp_path: Path) -> None:
    ca = CA.init(tmp_path, name="Test CA")
    issued = ca.issue_client("office-1")
    watcher = CrlWatcher(tmp_path / "crl.pem", tmp_path / "ca.crt")
    assert not watcher.is_revoked(issued.serial)
    assert watcher.poll() is False  # unchanged file
    ca.revoke("office-1")
    bump_mtime(tmp_path / "crl.pem")
    assert watcher.poll() is True
    assert watcher.is_revoked(issued.serial)


def test_a_broken_crl_keeps_the_previous_list(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca = CA.init(tmp_path, name="Test CA")
    issued = ca.issue_client("office-1")
    ca.revoke("office-1")
    watcher = CrlWatcher(tmp_path / "crl.pem", tmp_path / "ca.crt")
    (tmp_path / "crl.pem").write_text("not a crl")
    with caplog.at_level(logging.WARNING):
        assert watcher.poll() is False
    assert watcher.is_revoked(issued.serial)
    assert "keeping the previous list" in caplog.text


def test_a_crl_from_another_ca_is_refused(tmp_path: Path) -> None:
    CA.init(tmp_path / "a", name="A")
    CA.init(tmp_path / "b", name="B")
    with pytest.raises(CrlError, match="not signed by the deployment CA"):
        load_revoked(tmp_path / "b" / "crl.pem", tmp_path / "a" / "ca.crt")


def test_identity_check_names_the_reason(tmp_path: Path) -> None:
    ca = CA.init(tmp_path, name="Test CA")
    ok = peer_identity(der_of(ca.issue_client("office-1").cert_path))
    other = peer_identity(der_of(ca.issue_client("office-9").cert_path))
    watcher = CrlWatcher(tmp_path / "crl.pem", tmp_path / "ca.crt")
    assert refusal_reason(ok, ("office-1",), watcher) is None
    assert "not in allowed_connectors" in (refusal_reason(other, ("office-1",), watcher) or "")
    ca.revoke("office-1")
    bump_mtime(tmp_path / "crl.pem")
    watcher.poll()
    assert "is revoked" in (refusal_reason(ok, ("office-1",), watcher) or "")


def test_issued_by_tells_our_ca_from_a_proxy_ca(tmp_path: Path) -> None:
    ours = CA.init(tmp_path / "ours", name="Home LLM CA")
    proxy = CA.init(tmp_path / "proxy", name="Corp Proxy CA")
    real = der_of(ours.issue_server("gateway", dns=["localhost"]).cert_path)
    forged = der_of(proxy.issue_server("gateway", dns=["localhost"]).cert_path)
    assert issued_by(real, tmp_path / "ours" / "ca.crt")
    assert not issued_by(forged, tmp_path / "ours" / "ca.crt")
    assert subject_and_issuer(forged) == ("gateway", "Corp Proxy CA")


def test_no_crl_says_that_revocation_is_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    CA.init(tmp_path, name="Test CA")
    with caplog.at_level(logging.WARNING, "tunnel.listener"):
        watcher = CrlWatcher(None, tmp_path / "ca.crt")
    assert "crl = false: certificate revocation is OFF" in caplog.text
    assert watcher.refusal(1) is None


def test_a_stale_crl_refuses_every_connector_until_it_is_refreshed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca = CA.init(tmp_path, name="Test CA")
    ok = peer_identity(der_of(ca.issue_client("office-1").cert_path))
    ca.crl(days=1, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
    with caplog.at_level(logging.WARNING, "tunnel.listener"):
        watcher = CrlWatcher(tmp_path / "crl.pem", tmp_path / "ca.crt")
    assert "is stale" in caplog.text
    reason = refusal_reason(ok, ("office-1",), watcher) or ""
    assert "CRL" in reason
    assert "is stale" in reason
    assert "pki crl" in reason
    ca.crl()
    bump_mtime(tmp_path / "crl.pem")
    watcher.poll()
    assert refusal_reason(ok, ("office-1",), watcher) is None


def test_a_crl_that_goes_stale_while_running_refuses_from_then_on(tmp_path: Path) -> None:
    ca = CA.init(tmp_path, name="Test CA")
    ok = peer_identity(der_of(ca.issue_client("office-1").cert_path))
    ca.crl(days=1)
    later = dt.datetime.now(dt.UTC)
    watcher = CrlWatcher(tmp_path / "crl.pem", tmp_path / "ca.crt", clock=lambda: later)
    assert refusal_reason(ok, ("office-1",), watcher) is None
    later += dt.timedelta(days=2)
    assert "is stale" in (refusal_reason(ok, ("office-1",), watcher) or "")


def test_the_doctor_says_what_to_do_about_each_refusal() -> None:
    stale = "refused: the CRL is stale (its nextUpdate 2026-12-01 03:12 UTC has passed); ..."
    assert "pki crl" in admission_hint(stale)
    assert "new one" in admission_hint("refused: certificate serial 1f is revoked")
    assert "allow this connector" in admission_hint("refused: connector name 'x' is not in ...")
