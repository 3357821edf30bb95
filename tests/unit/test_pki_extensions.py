"""The X.509 profile of what pki issues: CA, server and client extensions, serials, CRL."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pki import CA


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _ext(
    cert: x509.Certificate, cls: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(cls)


@pytest.fixture
def ca(tmp_path: Path) -> CA:
    return CA.init(tmp_path / "pki", name="Unit CA")


@pytest.fixture
def server(ca: CA) -> x509.Certificate:
    issued = ca.issue_server(
        "gateway", dns=["localhost", "GW.example.org"], ips=["127.0.0.1", "::1"]
    )
    return _load(issued.cert_path)


@pytest.fixture
def client(ca: CA) -> x509.Certificate:
    return _load(ca.issue_client("office-1").cert_path)


def test_ca_certificate_profile(ca: CA) -> None:
    cert = _load(ca.cert_path)
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Unit CA"
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"
    cert.verify_directly_issued_by(cert)
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical
    assert bc.value == x509.BasicConstraints(ca=True, path_length=0)
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical
    assert isinstance(ku.value, x509.KeyUsage)
    assert ku.value.key_cert_sign
    assert ku.value.crl_sign
    assert not ku.value.digital_signature
    ski = _ext(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=3650) <= lifetime <= dt.timedelta(days=3651)


def _common_leaf_checks(cert: x509.Certificate, ca: CA, name: str) -> None:
    ca_cert = _load(ca.cert_path)
    cert.verify_directly_issued_by(ca_cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical
    assert isinstance(ku.value, x509.KeyUsage)
    assert ku.value.digital_signature
    assert not ku.value.key_cert_sign
    assert not ku.value.crl_sign
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical
    assert bc.value == x509.BasicConstraints(ca=False, path_length=None)
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    ca_ski = _ext(ca_cert, x509.SubjectKeyIdentifier).value
    assert isinstance(ca_ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ca_ski.digest
    ski = _ext(cert, x509.SubjectKeyIdentifier).value
    assert isinstance(ski, x509.SubjectKeyIdentifier)
    assert ski.digest != ca_ski.digest
    assert cert.serial_number > 0
    assert cert.serial_number.bit_length() == 128
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=397) <= lifetime <= dt.timedelta(days=397, minutes=6)


def test_server_certificate_profile(server: x509.Certificate, ca: CA) -> None:
    _common_leaf_checks(server, ca, "gateway")
    eku = _ext(server, x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]  # type: ignore[call-overload]
    san = _ext(server, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "gw.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_client_certificate_profile(client: x509.Certificate, ca: CA) -> None:
    _common_leaf_checks(client, ca, "office-1")
    eku = _ext(client, x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]  # type: ignore[call-overload]
    with pytest.raises(x509.ExtensionNotFound):
        _ext(client, x509.SubjectAlternativeName)


def test_serials_are_random(ca: CA) -> None:
    serials = {ca.issue_client(f"c{i}").serial for i in range(8)}
    assert len(serials) == 8
    assert all(s.bit_length() == 128 for s in serials)


def test_key_files_are_0600_and_certs_readable(ca: CA) -> None:
    issued = ca.issue_client("office-1")
    for key in (ca.directory / "ca.key", issued.key_path):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(issued.cert_path.stat().st_mode) == 0o644
    assert stat.S_IMODE(ca.directory.stat().st_mode) == 0o700


def test_initial_crl_is_empty_signed_and_current(ca: CA) -> None:
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    ca_cert = _load(ca.cert_path)
    assert crl.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]
    assert len(crl) == 0
    assert crl.issuer == ca_cert.subject
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = _ext(ca_cert, x509.SubjectKeyIdentifier).value
    assert isinstance(ca_ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ca_ski.digest
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(days=7)


def test_revoke_lists_serial_in_crl_with_higher_number(ca: CA) -> None:
    issued = ca.issue_client("office-1")
    keep = ca.issue_client("office-2")
    assert ca.revoke("office-1") == [issued.serial]
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(issued.serial) is not None
    assert crl.get_revoked_certificate_by_serial_number(keep.serial) is None
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    ca.crl(days=3)
    again = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert again.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3
    assert again.get_revoked_certificate_by_serial_number(issued.serial) is not None
    assert again.next_update_utc is not None
    assert again.next_update_utc - again.last_update_utc == dt.timedelta(days=3)
