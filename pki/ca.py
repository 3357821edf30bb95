"""The CA: a directory holding ca.crt, ca.key, crl.pem, index.json and the issued NAME.crt/.key.

Library first: the CLI (pki/cli.py) only parses flags and prints; everything else lives here.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import fcntl
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pki import _build
from pki._files import Entry, Index, Staging, describe_os_error, read_bytes, staged
from pki.errors import PKIError

Kind = Literal["server", "client"]
Status = Literal["valid", "expiring", "expired", "revoked"]

CA_DAYS = 3650
LEAF_DAYS = 397
CRL_DAYS = 7
MAX_DAYS = _build.MAX_DAYS
EXPIRING_WITHIN = dt.timedelta(days=30)
CA_CERT, CA_KEY, CRL, INDEX, LOCK = "ca.crt", "ca.key", "crl.pem", "index.json", ".lock"
_PRIVATE, _PUBLIC = 0o600, 0o644


@dataclass(frozen=True)
class Issued:
    """A certificate just issued, and where its files are."""

    name: str
    kind: Kind
    cert_path: Path
    key_path: Path
    serial: int
    not_after: dt.datetime


@dataclass(frozen=True)
class CertRecord:
    """One issued certificate as `pki list` shows it."""

    name: str
    kind: str
    serial: int
    not_after: dt.datetime
    status: Status
    revoked_at: dt.datetime | None = None


def utcnow() -> dt.datetime:
    """Now, in UTC, to the second (X.509 times carry no fractions)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def status_of(entry: Entry, now: dt.datetime) -> Status:
    """valid / expiring (within 30 days) / expired / revoked, as of NOW."""
    if entry.revoked_at is not None:
        return "revoked"
    if entry.not_after <= now:
        return "expired"
    if entry.not_after - now <= EXPIRING_WITHIN:
        return "expiring"
    return "valid"


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class CA:
    """A certificate authority kept in one directory. Make one with CA.init or CA.load."""

    def __init__(
        self, directory: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
    ) -> None:
        self.directory = directory
        self.cert = cert
        self._key = key

    # -- paths and facts -------------------------------------------------------------------

    @property
    def cert_path(self) -> Path:
        """DIR/ca.crt: what servers and clients load as their trust anchor."""
        return self.directory / CA_CERT

    @property
    def crl_path(self) -> Path:
        """DIR/crl.pem: the current revocation list."""
        return self.directory / CRL

    @property
    def name(self) -> str:
        """The CA's common name."""
        attrs = self.cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else self.cert.subject.rfc4514_string()

    # -- creating and opening --------------------------------------------------------------

    @classmethod
    def init(
        cls,
        directory: Path,
        name: str = "Home LLM CA",
        days: int = CA_DAYS,
        now: dt.datetime | None = None,
    ) -> CA:
        """Create a new CA in DIRECTORY; refuses (changing nothing) if one is already there."""
        directory = Path(directory)
        _build.check_days(days)
        if not name.strip():
            raise PKIError("bad --name: the CA name must not be empty")
        existing = [n for n in (CA_CERT, CA_KEY, INDEX) if (directory / n).exists()]
        if existing:
            raise PKIError(f"{directory} already holds a CA ({existing[0]}); refusing to overwrite")
        now = now or utcnow()
        key = _build.new_key()
        cert = _build.build_ca_cert(key, name, now, days)
        created = _make_dir(directory)
        ca = cls(directory, cert, key)
        try:
            with staged(directory) as staging:
                staging.add(CA_KEY, _key_pem(key), _PRIVATE)
                staging.add(CA_CERT, _pem(cert), _PUBLIC)
                ca._stage_crl(staging, Index(), CRL_DAYS, now)
        except PKIError:
            if created:
                _remove_empty_dir(directory)
            raise
        return ca

    @classmethod
    def load(cls, directory: Path) -> CA:
        """Open the CA in DIRECTORY, raising PKIError if it is missing or damaged."""
        directory = Path(directory)
        if not (directory / CA_CERT).exists():
            raise PKIError(f"no CA in {directory} ({CA_CERT} not found); run `pki init` first")
        cert_pem = read_bytes(directory / CA_CERT, "CA certificate")
        key_pem = read_bytes(directory / CA_KEY, "CA key")
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise PKIError(f"cannot read the CA in {directory}: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            raise PKIError(f"{directory / CA_KEY} does not match {directory / CA_CERT}")
        ca = cls(directory, cert, key)
        ca._read_index()  # fail now, not at the first command, if the state file is damaged
        return ca

    # -- issuing ---------------------------------------------------------------------------

    def issue_server(
        self,
        name: str,
        *,
        dns: Iterable[str] = (),
        ips: Iterable[str] = (),
        days: int = LEAF_DAYS,
        force: bool = False,
        not_before: dt.datetime | None = None,
    ) -> Issued:
        """Issue NAME.crt/NAME.key for a TLS server (serverAuth) valid for the DNS names and IPs."""
        hosts = tuple(_build.check_dns(h) for h in dns)
        addresses = _build.parse_ips(ips)
        if not hosts and not addresses:
            raise PKIError("a server certificate needs at least one --dns or --ip")
        spec = self._spec(name, "server", days=days, not_before=not_before)
        return self._issue(replace(spec, dns=hosts, ips=addresses), force=force)

    def issue_client(
        self,
        name: str,
        *,
        days: int = LEAF_DAYS,
        force: bool = False,
        not_before: dt.datetime | None = None,
    ) -> Issued:
        """Issue NAME.crt/NAME.key for a TLS client (clientAuth); the identity is CN=NAME."""
        spec = self._spec(name, "client", days=days, not_before=not_before)
        return self._issue(spec, force=force)

    def _spec(
        self, name: str, kind: Kind, *, days: int, not_before: dt.datetime | None
    ) -> _build.LeafSpec:
        """Validate NAME and DAYS and work out the validity window (inside the CA's own)."""
        _build.check_name(name)
        _build.check_days(days)
        now = utcnow()
        if not_before is not None and not_before.tzinfo is None:
            not_before = not_before.replace(tzinfo=dt.UTC)  # naive times are taken as UTC
        start = not_before or now
        not_after = _build.add_days(start, days)
        ca_end = self.cert.not_valid_after_utc
        if not_after > ca_end:
            raise PKIError(f"--days {days} would outlive the CA (it ends {ca_end:%Y-%m-%d})")
        begin = not_before or now - _build.CLOCK_SKEW
        return _build.LeafSpec(name=name, kind=kind, not_before=begin, not_after=not_after)

    def _issue(self, spec: _build.LeafSpec, *, force: bool) -> Issued:
        name = spec.name
        with self._locked() as index:
            if not force:
                self._refuse_live(name, index, utcnow())
            key = _build.new_key()
            cert = _build.build_leaf_cert(spec, key.public_key(), self.cert, self._key)
            entry = Entry(name, spec.kind, cert.serial_number, cert.not_valid_after_utc)
            with staged(self.directory) as staging:
                key_path = staging.add(f"{name}.key", _key_pem(key), _PRIVATE)
                cert_path = staging.add(f"{name}.crt", _pem(cert), _PUBLIC)
                new_index = Index(index.crl_number, (*index.entries, entry))
                staging.add(INDEX, new_index.to_json(), _PUBLIC)
        kind: Kind = "server" if spec.kind == "server" else "client"
        return Issued(name, kind, cert_path, key_path, entry.serial, entry.not_after)

    def _refuse_live(self, name: str, index: Index, now: dt.datetime) -> None:
        for entry in index.entries:
            if entry.name == name and status_of(entry, now) in ("valid", "expiring"):
                raise PKIError(
                    f"{name} already has a live certificate (serial {entry.serial:X}, until "
                    f"{entry.not_after:%Y-%m-%d}); revoke it first or pass --force"
                )
        known = any(entry.name == name for entry in index.entries)
        if not known and (self.directory / f"{name}.crt").exists():
            raise PKIError(
                f"{self.directory / name}.crt exists but was not issued here; pass --force"
            )

    # -- revoking --------------------------------------------------------------------------

    def revoke(self, name: str, now: dt.datetime | None = None) -> builtins.list[int]:
        """Revoke every live certificate of NAME and rewrite crl.pem; returns their serials."""
        now = now or utcnow()
        with self._locked() as index:
            mine = [e for e in index.entries if e.name == name]
            if not mine:
                raise PKIError(
                    f"unknown name {name!r}: nothing issued under that name in {self.directory}"
                )
            if all(e.revoked_at is not None for e in mine):
                raise PKIError(f"{name} is already revoked")
            entries = tuple(
                e.revoke(now) if e.name == name and e.revoked_at is None else e
                for e in index.entries
            )
            serials = [e.serial for e in mine if e.revoked_at is None]
            with staged(self.directory) as staging:
                self._stage_crl(staging, Index(index.crl_number, entries), CRL_DAYS, now)
        return serials

    def crl(self, days: int = CRL_DAYS, now: dt.datetime | None = None) -> Path:
        """Re-sign crl.pem with a fresh lastUpdate/nextUpdate (run daily from a timer)."""
        _build.check_days(days)
        now = now or utcnow()
        with self._locked() as index, staged(self.directory) as staging:
            self._stage_crl(staging, index, days, now)
        return self.crl_path

    def _stage_crl(self, staging: Staging, index: Index, days: int, now: dt.datetime) -> None:
        """Stage crl.pem (next CRL number) and the index.json recording that number."""
        number = index.crl_number + 1
        revoked = [(e.serial, e.revoked_at) for e in index.entries if e.revoked_at]
        crl = _build.build_crl(self.cert, self._key, revoked, number=number, now=now, days=days)
        staging.add(CRL, crl.public_bytes(serialization.Encoding.PEM), _PUBLIC)
        staging.add(INDEX, Index(number, index.entries).to_json(), _PUBLIC)

    # -- listing ---------------------------------------------------------------------------

    def list(self, now: dt.datetime | None = None) -> builtins.list[CertRecord]:
        """Every certificate issued here, by name then expiry, with its status as of NOW."""
        now = now or utcnow()
        entries = sorted(self._read_index().entries, key=lambda e: (e.name, e.not_after))
        return [
            CertRecord(e.name, e.kind, e.serial, e.not_after, status_of(e, now), e.revoked_at)
            for e in entries
        ]

    # -- state -----------------------------------------------------------------------------

    def _read_index(self) -> Index:
        path = self.directory / INDEX
        return Index.from_json(read_bytes(path, "state file"), path)

    @contextmanager
    def _locked(self) -> Iterator[Index]:
        """Hold DIR/.lock (so a timer's `pki crl` and a `pki revoke` never interleave)."""
        path = self.directory / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, _PRIVATE)
        except OSError as exc:
            raise PKIError(describe_os_error(exc, path)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self._read_index()
        finally:
            os.close(fd)


def _make_dir(directory: Path) -> bool:
    """Create DIRECTORY (0700: it holds private keys); True if it did not exist before."""
    if directory.is_dir():
        return False
    try:
        directory.mkdir(mode=0o700, parents=True)
    except OSError as exc:
        raise PKIError(describe_os_error(exc, directory)) from None
    return True


def _remove_empty_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not empty or already gone: leave it
        directory.rmdir()
