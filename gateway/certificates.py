"""When each certificate the deployment depends on expires, and when the CRL must be re-signed.

The facts come from the files named in ``gateway.toml`` (the public server certificate, the
tunnel listener's certificate, the CA, the CRL), each read once and again only when its
modification time or size changes, and from the live tunnels: each connector's client
certificate as it presented it (``TunnelInfo.client_cert_not_after``). The status page,
``gateway status``, the admin ``/readyz``, the metrics and the daily warning all read them here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.x509.oid import NameOID

from gateway.config import GatewayConfig
from tunnel.api import PoolStatus

log = logging.getLogger("gateway.certificates")

#: A certificate with fewer days left than this is flagged (page, log warning).
WARN_DAYS: Final = 30
#: The CRL's nextUpdate is only 7 days ahead and re-signed daily (``pki-crl.timer``), so it is
#: always "under 30 days": it is flagged when fewer than this many days are left, which means
#: the timer has not run for four days or more.
CRL_WARN_DAYS: Final = 3
DAY_S: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class CertificateFact:
    """One expiry date: a certificate's notAfter, or the CRL's nextUpdate."""

    role: str  # "ca" | "server" | "tunnel" | "connector:<cn>" | "crl"
    subject: str  # the common name (the CRL: its issuer's), else the whole subject
    not_after: float  # unix time (for "crl": its next update)

    def days_left(self, now: float) -> float:
        """Days until ``not_after`` (negative once past it)."""
        return (self.not_after - now) / DAY_S

    @property
    def warn_days(self) -> int:
        """Fewer days left than this and the fact is flagged: ``WARN_DAYS``, the CRL its own."""
        return CRL_WARN_DAYS if self.role == "crl" else WARN_DAYS

    def expiring(self, now: float) -> bool:
        return self.days_left(now) < self.warn_days

    def as_json(self, now: float) -> dict[str, str | float | bool]:
        """The fact as the admin ``/readyz`` (and the status page) show it."""
        return {
            "role": self.role,
            "subject": self.subject,
            "not_after": self.not_after,
            "days_left": round(self.days_left(now), 2),
            "expiring": self.expiring(now),
        }


def _name(name: x509.Name) -> str:
    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if common:
        value = common[0].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return name.rfc4514_string()


def _read_certificate(data: bytes) -> tuple[str, float]:
    """The first certificate of a PEM file (a chain starts with the leaf): subject, notAfter."""
    cert = x509.load_pem_x509_certificates(data)[0]
    return _name(cert.subject), cert.not_valid_after_utc.timestamp()


def _read_crl(data: bytes) -> tuple[str, float] | None:
    """The CRL's issuer and nextUpdate; None when it names no nextUpdate (never stale)."""
    pem = b"-----BEGIN" in data
    crl = x509.load_pem_x509_crl(data) if pem else x509.load_der_x509_crl(data)
    next_update = crl.next_update_utc
    return None if next_update is None else (_name(crl.issuer), next_update.timestamp())


Stamp = tuple[int, int]  # mtime in ns, size


class _FileFacts:
    """What each file says, re-read only when its modification time or size changed."""

    def __init__(self) -> None:
        self._seen: dict[tuple[Path, bool], tuple[Stamp, tuple[str, float] | None]] = {}

    def read(self, path: Path, *, crl: bool = False) -> tuple[str, float] | None:
        """Subject (CRL: issuer) and expiry of ``path``; None when it cannot be read now."""
        try:
            stat = path.stat()
        except OSError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        key = (path, crl)
        cached = self._seen.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            data = path.read_bytes()
            fact = _read_crl(data) if crl else _read_certificate(data)
        except (OSError, ValueError, IndexError) as exc:
            log.warning("cannot read the expiry date of %s: %s", path, exc)
            fact = None
        self._seen[key] = (stamp, fact)
        return fact


_files = _FileFacts()


def certificate_facts(config: GatewayConfig, status: PoolStatus) -> tuple[CertificateFact, ...]:
    """The CA, the server and tunnel certificates, the CRL's next update, then each connector
    seen on a live tunnel (the earliest expiry when it holds several tunnels), by name."""
    files = (
        ("ca", config.tunnel.ca),
        ("server", config.server.cert),
        ("tunnel", config.tunnel.cert),
    )
    facts = [CertificateFact(role, *read) for role, path in files if (read := _files.read(path))]
    if config.tunnel.crl is not None and (crl := _files.read(config.tunnel.crl, crl=True)):
        facts.append(CertificateFact("crl", *crl))
    connectors: dict[str, float] = {}
    for tunnel in status.tunnels:
        if tunnel.client_cert_not_after is not None:
            earliest = connectors.get(tunnel.connector, tunnel.client_cert_not_after)
            connectors[tunnel.connector] = min(earliest, tunnel.client_cert_not_after)
    facts += [
        CertificateFact(f"connector:{name}", name, not_after)
        for name, not_after in sorted(connectors.items())
    ]
    return tuple(facts)
