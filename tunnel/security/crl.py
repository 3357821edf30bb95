"""The deployment CRL: loaded from crl.pem, re-read when the file changes, checked by serial.

A CRL past its nextUpdate fails closed: every connector is refused (with the reason) until the
file is re-signed (``pki crl``), which the running gateway picks up on its next poll.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from tunnel.errors import ConfigError

log = logging.getLogger("tunnel.listener")

Clock = Callable[[], dt.datetime]


class CrlError(ConfigError):
    """The CRL file cannot be used (unreadable, not a CRL, not signed by the deployment CA)."""


@dataclass(frozen=True, slots=True)
class Crl:
    """What the listener needs from a CRL: the revoked serials and until when it is current."""

    revoked: frozenset[int]
    next_update: dt.datetime | None  # None: the CRL names no nextUpdate (never stale)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def load_crl(crl_path: Path, ca_path: Path) -> Crl:
    """A CRL that the deployment CA signed."""
    try:
        data = crl_path.read_bytes()
        pem = b"-----BEGIN" in data
        crl = x509.load_pem_x509_crl(data) if pem else x509.load_der_x509_crl(data)
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CrlError(f"cannot read CRL {crl_path}: {exc}") from None
    if crl.issuer != ca.subject or not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        raise CrlError(f"CRL {crl_path} is not signed by the deployment CA")
    return Crl(frozenset(entry.serial_number for entry in crl), crl.next_update_utc)


def load_revoked(crl_path: Path, ca_path: Path) -> frozenset[int]:
    """Serial numbers revoked by a CRL that the deployment CA signed."""
    return load_crl(crl_path, ca_path).revoked


def _when(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


class CrlWatcher:
    """Holds the revoked serials; ``poll()`` re-reads the file when its mtime or size changed.

    ``crl_path=None`` is ``crl = false``: nothing is revoked, and the log says so at start.
    A CRL that cannot be read or is not signed by the CA keeps the previous list (and says so).
    """

    def __init__(self, crl_path: Path | None, ca_path: Path, clock: Clock = utcnow) -> None:
        self._crl_path = crl_path
        self._ca_path = ca_path
        self._clock = clock
        self._stamp: tuple[int, int] | None = None
        self._crl = Crl(frozenset(), None)
        self._said_stale = False
        if crl_path is None:
            log.warning(
                "[tunnel] crl = false: certificate revocation is OFF; "
                "a revoked connector certificate is still admitted"
            )
            return
        self._stamp = self._stat()
        self._crl = load_crl(crl_path, ca_path)
        self._say_if_stale()

    @property
    def revoked(self) -> frozenset[int]:
        return self._crl.revoked

    def _stat(self) -> tuple[int, int] | None:
        assert self._crl_path is not None
        try:
            st = self._crl_path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def is_revoked(self, serial: int) -> bool:
        return serial in self._crl.revoked

    def is_stale(self) -> bool:
        next_update = self._crl.next_update
        return next_update is not None and self._clock() > next_update

    def refusal(self, serial: int) -> str | None:
        """Why a connector with this certificate serial is refused; ``None`` when it is not."""
        if self.is_stale():
            assert self._crl.next_update is not None
            return (
                f"the CRL is stale (its nextUpdate {_when(self._crl.next_update)} has passed); "
                "run `pki crl` on the gateway to re-sign it"
            )
        if self.is_revoked(serial):
            return f"certificate serial {serial:x} is revoked"
        return None

    def _say_if_stale(self) -> None:
        """One warning when the CRL goes stale (at load or later), one line when it is not."""
        stale = self.is_stale()
        if stale and not self._said_stale:
            assert self._crl_path is not None
            assert self._crl.next_update is not None
            log.warning(
                "CRL %s is stale: its nextUpdate %s has passed; every connector is refused "
                "until it is re-signed: run `pki crl --dir %s` (deploy/systemd's pki-crl timer "
                "does it daily) or `pki revoke NAME`",
                self._crl_path,
                _when(self._crl.next_update),
                self._crl_path.parent,
            )
        elif not stale and self._said_stale:
            log.info("CRL %s is current again: connectors are admitted", self._crl_path)
        self._said_stale = stale

    def poll(self) -> bool:
        """Re-read the CRL if the file changed; True when the revoked set changed."""
        if self._crl_path is None:
            return False
        stamp = self._stat()
        if stamp == self._stamp:
            self._say_if_stale()
            return False
        self._stamp = stamp
        try:
            crl = load_crl(self._crl_path, self._ca_path)
        except CrlError as exc:
            log.warning("%s; keeping the previous list of %d revoked", exc, len(self.revoked))
            return False
        changed = crl.revoked != self._crl.revoked
        self._crl = crl
        if changed:
            log.info("CRL reloaded: %d certificate(s) revoked", len(crl.revoked))
        self._say_if_stale()
        return changed
