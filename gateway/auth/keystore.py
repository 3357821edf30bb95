"""API keys: generation, hashing and the SQLite store (``[auth] keys_db``).

Keys are 256-bit random tokens, so a single SHA-256 is the right storage hash: a slow password
hash adds nothing against brute force of a 2^256 space and would cost every request. A short
prefix of the key (``key_id``) finds the row; the hashes are then compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from gateway.errors import KeyStoreError

KEY_PREFIX = "sk-gw-"
_KEY_ID_CHARS = 12  # chars after the prefix used as the lookup index (72 bits, not secret)
_SECRET_CHARS = 43  # len(secrets.token_urlsafe(32))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    key_id TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL,
    created TEXT NOT NULL,
    expires TEXT,
    rpm INTEGER,
    tpm INTEGER,
    concurrency INTEGER,
    models TEXT,
    revoked TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_live_name ON api_keys(name) WHERE revoked IS NULL;
"""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What the store knows about a key: everything but the secret."""

    name: str
    created: datetime
    expires: date | None
    rpm: int | None
    tpm: int | None
    concurrency: int | None
    models: frozenset[str] | None
    revoked: datetime | None

    def is_expired(self, today: date) -> bool:
        """A key stops working at 00:00 UTC on its ``expires`` date."""
        return self.expires is not None and today >= self.expires


@dataclass(frozen=True, slots=True)
class NewKey:
    secret: str
    key_id: str
    key_hash: str


def generate_key() -> NewKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(secret=secret, key_id=key_id_of(secret), key_hash=hash_key(secret))


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def key_id_of(secret: str) -> str:
    return secret[len(KEY_PREFIX) : len(KEY_PREFIX) + _KEY_ID_CHARS]


def looks_like_key(secret: str) -> bool:
    return secret.startswith(KEY_PREFIX) and len(secret) == len(KEY_PREFIX) + _SECRET_CHARS


def hashes_match(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(secret).encode("ascii"), stored_hash.encode("ascii"))


def connect(path: Path) -> sqlite3.Connection:
    """Open the keys database in WAL mode (readers never wait for the CLI's writes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.touch(mode=0o600)  # hashes and usage only, but nobody else's business
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.executescript(_SCHEMA)
    return conn


def _row_to_record(row: sqlite3.Row | tuple[object, ...]) -> KeyRecord:
    name, created, expires, rpm, tpm, concurrency, models, revoked = row
    return KeyRecord(
        name=str(name),
        created=datetime.fromisoformat(str(created)),
        expires=date.fromisoformat(str(expires)) if expires else None,
        rpm=int(str(rpm)) if rpm is not None else None,
        tpm=int(str(tpm)) if tpm is not None else None,
        concurrency=int(str(concurrency)) if concurrency is not None else None,
        models=frozenset(str(models).split(",")) if models else None,
        revoked=datetime.fromisoformat(str(revoked)) if revoked else None,
    )


_RECORD_COLUMNS = "name, created, expires, rpm, tpm, concurrency, models, revoked"


class KeyStore:
    """The key table. Every method is one short SQLite statement (safe on the event loop)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = connect(path)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def create(
        self,
        name: str,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        concurrency: int | None = None,
        models: frozenset[str] | None = None,
        expires: date | None = None,
        force: bool = False,
    ) -> str:
        """Store a new key for ``name`` and return its secret (the only time it exists)."""
        new = generate_key()
        now = datetime.now(UTC).isoformat(timespec="seconds")
        models_text = ",".join(sorted(models)) if models else None
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if force:
                    self._revoke_locked(name, now)
                self._conn.execute(
                    "INSERT INTO api_keys (name, key_id, key_hash, created, expires, rpm, tpm,"
                    " concurrency, models) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        new.key_id,
                        new.key_hash,
                        now,
                        expires.isoformat() if expires else None,
                        rpm,
                        tpm,
                        concurrency,
                        models_text,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                self._conn.execute("ROLLBACK")
                raise KeyStoreError(f"a key named {name!r} already exists (use --force)") from exc
            self._conn.execute("COMMIT")
        return new.secret

    def revoke(self, name: str) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._lock:
            if self._revoke_locked(name, now) == 0:
                raise KeyStoreError(f"no live key named {name!r}")

    def _revoke_locked(self, name: str, now: str) -> int:
        cur = self._conn.execute(
            "UPDATE api_keys SET revoked = ? WHERE name = ? AND revoked IS NULL", (now, name)
        )
        return cur.rowcount

    def list(self, *, include_revoked: bool = True) -> list[KeyRecord]:
        where = "" if include_revoked else " WHERE revoked IS NULL"
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM api_keys{where} ORDER BY name, id"  # noqa: S608
            ).fetchall()
        return [_row_to_record(row) for row in rows]

    def lookup(self, secret: str) -> KeyRecord | None:
        """The live record for ``secret``, or None. Revoked rows are returned (callers refuse)."""
        if not looks_like_key(secret):
            return None
        with self._lock:
            rows = self._conn.execute(
                f"SELECT key_hash, {_RECORD_COLUMNS} FROM api_keys WHERE key_id = ?",  # noqa: S608
                (key_id_of(secret),),
            ).fetchall()
        for row in rows:
            if hashes_match(secret, str(row[0])):
                return _row_to_record(row[1:])
        return None

    def data_version(self) -> int:
        """SQLite's counter that moves whenever ANOTHER connection commits to the file."""
        with self._lock:
            row = self._conn.execute("PRAGMA data_version").fetchone()
        return int(row[0])
