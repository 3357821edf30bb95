"""One TLS-context factory per role: TLS 1.2 minimum, ALPN h2, no compression, CERT_REQUIRED."""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from tunnel.errors import ConfigError
from tunnel.stream import PeerIdentity

ALPN = ["h2"]


def _base(purpose: int) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.set_alpn_protocols(ALPN)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ConfigError(f"cannot read {exc.filename}: no such file") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load certificate {cert} with key {key}: {exc}") from None


def _load_ca(ctx: ssl.SSLContext, ca: Path) -> None:
    try:
        ctx.load_verify_locations(cafile=ca)
    except FileNotFoundError:
        raise ConfigError(f"cannot read CA certificate {ca}: no such file") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load CA certificate {ca}: {exc}") from None


def listener_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """The gateway's tunnel port: its server certificate, a client certificate from ``ca``."""
    ctx = _base(ssl.PROTOCOL_TLS_SERVER)
    _load_chain(ctx, cert, key)
    _load_ca(ctx, ca)
    return ctx


def connector_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """The connector: trusts ONLY the deployment CA (no system store), checks the host name,
    presents its client certificate."""
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = True
    _load_ca(ctx, ca)
    _load_chain(ctx, cert, key)
    return ctx


def probe_context() -> ssl.SSLContext:
    """Verifies nothing: used only to look at a certificate that failed verification, to tell
    an intercepting proxy from a real mistake. Never used to carry a tunnel."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(ALPN)
    return ctx


def _common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if attrs:
        value = attrs[0].value
        return value if isinstance(value, str) else value.decode()
    return name.rfc4514_string()


def peer_identity(cert_der: bytes) -> PeerIdentity:
    cert = x509.load_der_x509_certificate(cert_der)
    return PeerIdentity(_common_name(cert.subject), cert.serial_number, cert_der)


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
