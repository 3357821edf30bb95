"""The API key store: generation, hashing, lookup, expiry, revocation, the revision counter."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from gateway.auth.keystore import (
    KEY_PREFIX,
    KeyRecord,
    KeyStore,
    generate_key,
    hash_key,
    hashes_match,
    key_id_of,
    looks_like_key,
)
from gateway.errors import KeyStoreError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KeyStore]:
    s = KeyStore(tmp_path / "gw.db")
    yield s
    s.close()


def test_generated_key_shape_and_hash() -> None:
    new = generate_key()
    assert new.secret.startswith(KEY_PREFIX)
    assert len(new.secret) == len(KEY_PREFIX) + 43
    assert looks_like_key(new.secret)
    assert new.key_hash == hashlib.sha256(new.secret.encode()).hexdigest()
    assert new.key_id == new.secret[6:18]
    assert generate_key().secret != new.secret


def test_hash_comparison() -> None:
    secret = generate_key().secret
    assert hashes_match(secret, hash_key(secret))
    assert not hashes_match(secret, hash_key(secret + "x"))


def test_only_the_hash_is_stored(store: KeyStore, tmp_path: Path) -> None:
    secret = store.create("alice")
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("gw.db"))
    assert secret.encode() not in raw
    assert hash_key(secret).encode() in raw
    assert stat.S_IMODE((tmp_path / "gw.db").stat().st_mode) == 0o600


def test_lookup_returns_record_with_limits(store: KeyStore) -> None:
    secret = store.create(
        "alice", rpm=5, tpm=900, concurrency=2, models=frozenset({"a", "b"}),
        expires=date(2099, 1, 1),
    )  # fmt: skip
    record = store.lookup(secret)
    assert record is not None
    assert (record.name, record.rpm, record.tpm, record.concurrency) == ("alice", 5, 900, 2)
    assert record.models == frozenset({"a", "b"})
    assert record.expires == date(2099, 1, 1)
    assert record.revoked is None


def test_lookup_unknown_and_malformed(store: KeyStore) -> None:
    secret = store.create("alice")
    assert store.lookup(generate_key().secret) is None
    assert store.lookup(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None  # same key_id
    assert key_id_of(secret[:-1] + "Z") == key_id_of(secret)
    assert store.lookup("sk-gw-short") is None
    assert store.lookup("") is None


def test_duplicate_name_refused_unless_forced(store: KeyStore) -> None:
    first = store.create("alice")
    with pytest.raises(KeyStoreError, match="already exists"):
        store.create("alice")
    second = store.create("alice", force=True)
    old, new = store.lookup(first), store.lookup(second)
    assert old is not None
    assert old.revoked is not None
    assert new is not None
    assert new.revoked is None


def test_name_free_again_after_revoke(store: KeyStore) -> None:
    store.create("alice")
    store.revoke("alice")
    store.create("alice")
    assert [r.revoked is None for r in store.list()] == [False, True]


def test_revoke_unknown(store: KeyStore) -> None:
    with pytest.raises(KeyStoreError, match="no live key"):
        store.revoke("nobody")


def test_expiry_boundary() -> None:
    store_day = date(2030, 5, 1)
    record = KeyRecord("a", datetime.now(UTC), store_day, None, None, None, None, None)
    assert not record.is_expired(store_day - timedelta(days=1))
    assert record.is_expired(store_day)


def test_data_version_moves_on_another_connections_commit(tmp_path: Path) -> None:
    reader, writer = KeyStore(tmp_path / "gw.db"), KeyStore(tmp_path / "gw.db")
    try:
        before = reader.data_version()
        assert reader.data_version() == before
        writer.create("bob")
        assert reader.data_version() != before
    finally:
        reader.close()
        writer.close()


def test_list_never_shows_secrets(store: KeyStore) -> None:
    secret = store.create("alice")
    assert secret not in repr(store.list())
