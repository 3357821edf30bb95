"""Sans-IO: validate names and build certificates and CRLs in memory (no files, no clock reads).

Every function takes the time and the keys it needs, so unit tests can call it directly.
Extension choices follow RFC 5280 section 4.2 (profile notes in docs/pki.md).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pki.errors import PKIError

# File names in DIR are NAME.crt / NAME.key; these names would collide with the CA's own files.
RESERVED_NAMES = frozenset({"ca", "crl", "index"})
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DNS_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SERIAL_BITS = 128
# Leaves start slightly in the past so a peer whose clock lags a little still accepts them.
CLOCK_SKEW = dt.timedelta(minutes=5)
# The longest validity any --days may ask for (100 years): far beyond any sane use, and far
# below where date arithmetic overflows or X.509 GeneralizedTime (years up to 9999) ends.
MAX_DAYS = 36500


@dataclass(frozen=True)
class LeafSpec:
    """What a leaf certificate says: who, which role, where, and for how long."""

    name: str
    kind: str  # "server" | "client"
    not_before: dt.datetime
    not_after: dt.datetime
    dns: tuple[str, ...] = ()
    ips: tuple[IPAddress, ...] = ()


def check_name(name: str) -> str:
    """Return NAME if it is a safe file stem, else raise PKIError."""
    if not _NAME_RE.fullmatch(name) or name.endswith("."):
        raise PKIError(
            f"bad name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    if name.lower() in RESERVED_NAMES:
        raise PKIError(f"bad name {name!r}: it is reserved for the CA's own files")
    return name


def check_dns(host: str) -> str:
    """Return HOST if it is a valid DNS name (a leading '*.' wildcard allowed), else raise."""
    labels = host.rstrip(".").split(".")
    if labels and labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    ok = (
        0 < len(host) <= 253
        and host.isascii()
        and all(_DNS_LABEL_RE.fullmatch(label) for label in labels)
    )
    if not ok:
        raise PKIError(f"bad DNS name {host!r} (for non-ASCII names give the xn-- form)")
    return host.rstrip(".").lower()


def parse_ips(values: Iterable[str]) -> tuple[IPAddress, ...]:
    """Parse IP address strings, raising PKIError naming the first bad one."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_address(value))
        except ValueError:
            raise PKIError(f"bad IP address {value!r}") from None
    return tuple(out)


def check_days(days: int) -> int:
    """Return DAYS if it is a whole number from 1 to MAX_DAYS, else raise PKIError."""
    if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
        raise PKIError(f"bad --days {days!r}: give a whole number of days above 0")
    if days > MAX_DAYS:
        raise PKIError(f"bad --days {days}: at most {MAX_DAYS} (100 years)")
    return days


def add_days(start: dt.datetime, days: int) -> dt.datetime:
    """START + DAYS, as PKIError (not OverflowError) if that falls outside the calendar."""
    try:
        return start + dt.timedelta(days=days)
    except OverflowError:  # datetime (like X.509 GeneralizedTime) stops at the year 9999
        raise PKIError(f"bad --days {days}: the end date would fall past the year 9999") from None


def random_serial() -> int:
    """A random positive serial of exactly SERIAL_BITS bits (RFC 5280 4.1.2.2 allows 20 octets)."""
    return secrets.randbits(SERIAL_BITS - 1) | (1 << (SERIAL_BITS - 1))


def new_key() -> ec.EllipticCurvePrivateKey:
    """A new EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def _cn(name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def build_ca_cert(
    key: ec.EllipticCurvePrivateKey, name: str, now: dt.datetime, days: int
) -> x509.Certificate:
    """A self-signed CA certificate: CA:TRUE pathlen 0, keyCertSign + cRLSign, SKI."""
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_cn(name))
        .issuer_name(_cn(name))
        .public_key(public)
        .serial_number(random_serial())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(add_days(now, days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _aki(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def build_leaf_cert(
    spec: LeafSpec,
    public: ec.EllipticCurvePublicKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    """A server (serverAuth + SAN) or client (clientAuth) certificate signed by the CA."""
    usage = (
        ExtendedKeyUsageOID.SERVER_AUTH
        if spec.kind == "server"
        else ExtendedKeyUsageOID.CLIENT_AUTH
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_cn(spec.name))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(random_serial())
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(_aki(ca_cert), critical=False)
    )
    alt_names = _alt_names(spec.dns, spec.ips)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _alt_names(dns: Sequence[str], ips: Sequence[IPAddress]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(host) for host in dns]
    names.extend(x509.IPAddress(ip) for ip in ips)
    return names


def build_crl(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    revoked: Iterable[tuple[int, dt.datetime]],
    *,
    number: int,
    now: dt.datetime,
    days: int,
) -> x509.CertificateRevocationList:
    """A CRL (RFC 5280 5.1) listing (serial, revoked_at) pairs, with CRL number and AKI."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(add_days(now, days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(_aki(ca_cert), critical=False)
    )
    for serial, when in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ca_key, hashes.SHA256())
