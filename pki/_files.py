"""Files in DIR: all-or-nothing writes and the small state file (index.json).

A change writes every new file under a temporary name first and renames them into place only
when all are written, so a failure leaves the old files untouched and no temporary behind.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pki.errors import PKIError

INDEX_FORMAT = 1


def describe_os_error(exc: OSError, path: Path) -> str:
    """One line naming the path and the cause of an OSError."""
    reason = exc.strerror or exc.__class__.__name__
    return f"cannot write {path}: {reason}"


class Staging:
    """Files written under temporary names, renamed into place by commit()."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._pending: list[tuple[Path, Path]] = []

    def add(self, name: str, data: bytes, mode: int) -> Path:
        """Write DATA to a temporary file that will become DIR/NAME; mode is set at creation."""
        final = self.directory / name
        tmp = self.directory / f".{name}.tmp-{secrets.token_hex(4)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except OSError as exc:
            raise PKIError(describe_os_error(exc, final)) from None
        self._pending.append((tmp, final))
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise PKIError(describe_os_error(exc, final)) from None
        return final

    def commit(self) -> None:
        """Rename every staged file into place (same directory, so each rename is atomic)."""
        try:
            for tmp, final in self._pending:
                os.replace(tmp, final)
        except OSError as exc:
            raise PKIError(describe_os_error(exc, final)) from None
        self._pending.clear()

    def discard(self) -> None:
        """Remove the temporary files not yet renamed."""
        for tmp, _ in self._pending:
            tmp.unlink(missing_ok=True)
        self._pending.clear()


@contextmanager
def staged(directory: Path) -> Iterator[Staging]:
    """Stage files in DIRECTORY; commit when the block succeeds, discard on any error."""
    staging = Staging(directory)
    try:
        yield staging
        staging.commit()
    finally:
        staging.discard()


@dataclass(frozen=True)
class Entry:
    """One issued certificate as index.json records it."""

    name: str
    kind: str
    serial: int
    not_after: dt.datetime
    revoked_at: dt.datetime | None = None

    def revoke(self, when: dt.datetime) -> Entry:
        """This entry marked revoked at WHEN."""
        return replace(self, revoked_at=when)


@dataclass(frozen=True)
class Index:
    """The state file: every certificate issued in DIR and the last CRL number used."""

    crl_number: int = 0
    entries: tuple[Entry, ...] = field(default_factory=tuple)

    def to_json(self) -> bytes:
        """Serialise, serial numbers as hex (JSON readers lose precision on 128-bit integers)."""
        doc = {
            "format": INDEX_FORMAT,
            "crl_number": self.crl_number,
            "certs": [_entry_to_dict(e) for e in self.entries],
        }
        return (json.dumps(doc, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, path: Path) -> Index:
        """Parse index.json, raising PKIError naming PATH when it is damaged."""
        try:
            doc = json.loads(data)
            if doc["format"] != INDEX_FORMAT:
                raise PKIError(f"{path}: unknown format {doc['format']!r}")
            entries = tuple(_entry_from_dict(item) for item in doc["certs"])
            return cls(crl_number=int(doc["crl_number"]), entries=entries)
        except (ValueError, KeyError, TypeError) as exc:
            raise PKIError(f"{path} is damaged: {exc}") from None


def _entry_to_dict(entry: Entry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "kind": entry.kind,
        "serial": format(entry.serial, "X"),
        "not_after": entry.not_after.isoformat(),
        "revoked_at": entry.revoked_at.isoformat() if entry.revoked_at else None,
    }


def _entry_from_dict(item: dict[str, Any]) -> Entry:
    revoked = item["revoked_at"]
    return Entry(
        name=str(item["name"]),
        kind=str(item["kind"]),
        serial=int(item["serial"], 16),
        not_after=dt.datetime.fromisoformat(item["not_after"]),
        revoked_at=dt.datetime.fromisoformat(revoked) if revoked else None,
    )


def read_bytes(path: Path, what: str) -> bytes:
    """Read PATH, raising PKIError that names WHAT is missing."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PKIError(f"{what} missing: {path} not found") from None
    except OSError as exc:
        raise PKIError(f"cannot read {path}: {exc.strerror}") from None
