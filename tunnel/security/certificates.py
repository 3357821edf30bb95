"""Reading certificates: the peer's identity after a handshake, and who issued a certificate
(to tell an intercepting proxy's certificate from ours)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from tunnel.security.secure_stream import PeerIdentity


def _common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if attrs:
        value = attrs[0].value
        return value if isinstance(value, str) else value.decode()
    return name.rfc4514_string()


def peer_identity(cert_der: bytes) -> PeerIdentity:
    cert = x509.load_der_x509_certificate(cert_der)
    return PeerIdentity(_common_name(cert.subject), cert.serial_number, cert_der)


def certificate_not_after(cert_der: bytes) -> float | None:
    """Unix time a DER certificate expires (None if it cannot be read)."""
    try:
        return x509.load_der_x509_certificate(cert_der).not_valid_after_utc.timestamp()
    except ValueError:
        return None


def subject_and_issuer(cert_der: bytes) -> tuple[str, str]:
    cert = x509.load_der_x509_certificate(cert_der)
    return _common_name(cert.subject), _common_name(cert.issuer)


def issued_by(cert_der: bytes, ca_path: Path) -> bool:
    """Whether ``ca_path``'s key signed this certificate (signature only; no dates, no names)."""
    cert = x509.load_der_x509_certificate(cert_der)
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    if cert.issuer != ca.subject:
        return False
    key = ca.public_key()
    hash_alg = cert.signature_hash_algorithm
    try:
        if isinstance(key, rsa.RSAPublicKey) and hash_alg is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hash_alg)
        elif isinstance(key, ec.EllipticCurvePublicKey) and hash_alg is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hash_alg))
        else:
            cert.verify_directly_issued_by(ca)
    except Exception:  # any failure means "not ours"
        return False
    return True
