"""The deployment CRL: loaded from crl.pem, re-read when the file changes, checked by serial."""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography import x509

from tunnel.errors import ConfigError

log = logging.getLogger("tunnel.listener")


class CrlError(ConfigError):
    """The CRL file cannot be used (unreadable, not a CRL, not signed by the deployment CA)."""


def load_revoked(crl_path: Path, ca_path: Path) -> frozenset[int]:
    """Serial numbers revoked by a CRL that the deployment CA signed."""
    try:
        data = crl_path.read_bytes()
        pem = b"-----BEGIN" in data
        crl = x509.load_pem_x509_crl(data) if pem else x509.load_der_x509_crl(data)
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CrlError(f"cannot read CRL {crl_path}: {exc}") from None
    if crl.issuer != ca.subject or not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        raise CrlError(f"CRL {crl_path} is not signed by the deployment CA")
    return frozenset(entry.serial_number for entry in crl)


class CrlWatcher:
    """Holds the revoked serials; ``poll()`` re-reads the file when its mtime or size changed.

    A CRL that cannot be read or is not signed by the CA keeps the previous list (and says so).
    """

    def __init__(self, crl_path: Path | None, ca_path: Path) -> None:
        self._crl_path = crl_path
        self._ca_path = ca_path
        self._stamp: tuple[int, int] | None = None
        self.revoked: frozenset[int] = frozenset()
        if crl_path is not None:
            self._stamp = self._stat()
            self.revoked = load_revoked(crl_path, ca_path)

    def _stat(self) -> tuple[int, int] | None:
        assert self._crl_path is not None
        try:
            st = self._crl_path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def is_revoked(self, serial: int) -> bool:
        return serial in self.revoked

    def poll(self) -> bool:
        """Re-read the CRL if the file changed; True when the revoked set changed."""
        if self._crl_path is None:
            return False
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            revoked = load_revoked(self._crl_path, self._ca_path)
        except CrlError as exc:
            log.warning("%s; keeping the previous list of %d revoked", exc, len(self.revoked))
            return False
        changed = revoked != self.revoked
        self.revoked = revoked
        if changed:
            log.info("CRL reloaded: %d certificate(s) revoked", len(revoked))
        return changed
