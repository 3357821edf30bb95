"""Bearer parsing and API-key authentication (JWTs: test_gateway_jwt.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.auth.authenticator import BAD_KEY_MESSAGE, NO_KEY_MESSAGE, Authenticator, bearer_token
from gateway.auth.identity import LimitDefaults
from gateway.auth.keystore import KeyStore
from gateway.errors import AuthError

DEFAULTS = LimitDefaults(rpm=60, tpm=1000, concurrency=4)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[KeyStore, Authenticator]]:
    admin = KeyStore(tmp_path / "gw.db")
    auth = Authenticator(KeyStore(tmp_path / "gw.db"), None, DEFAULTS, recheck_s=0.0)
    yield admin, auth
    await auth.aclose()
    admin.close()


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("BEARER x.y.z", "x.y.z")],
)
def test_bearer_token(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic abc", "abc"])
def test_bearer_token_missing(header: str | None) -> None:
    with pytest.raises(AuthError) as info:
        bearer_token(header)
    assert info.value.message == NO_KEY_MESSAGE


async def test_key_authenticates_with_its_limits(setup: tuple[KeyStore, Authenticator]) -> None:
    admin, auth = setup
    secret = admin.create("alice", rpm=5, models=frozenset({"m1"}))
    who = await auth.authenticate(f"Bearer {secret}")
    assert (who.name, who.kind, who.rpm, who.tpm, who.concurrency) == ("alice", "key", 5, 1000, 4)
    assert who.models == frozenset({"m1"})
    assert who.may_use("m1")
    assert not who.may_use("m2")


async def test_wrong_key_refused_without_echo(setup: tuple[KeyStore, Authenticator]) -> None:
    admin, auth = setup
    secret = admin.create("alice")
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    for bad in (forged, "sk-gw-nope", "sk-other-123", "x.y.z"):
        with pytest.raises(AuthError) as info:
            await auth.authenticate(f"Bearer {bad}")
        assert info.value.message == BAD_KEY_MESSAGE
        assert bad not in info.value.message


async def test_revocation_seen_by_running_authenticator(
    setup: tuple[KeyStore, Authenticator],
) -> None:
    admin, auth = setup
    secret = admin.create("alice")
    assert (await auth.authenticate(f"Bearer {secret}")).name == "alice"  # now cached
    admin.revoke("alice")  # another connection, as `gateway keys revoke` would be
    with pytest.raises(AuthError):
        await auth.authenticate(f"Bearer {secret}")


async def test_revocation_seen_within_the_recheck_interval(tmp_path: Path) -> None:
    admin = KeyStore(tmp_path / "gw.db")
    auth = Authenticator(KeyStore(tmp_path / "gw.db"), None, DEFAULTS, recheck_s=0.05)
    try:
        secret = admin.create("alice")
        assert (await auth.authenticate(f"Bearer {secret}")).name == "alice"
        admin.revoke("alice")
        # served from the cache until the next data_version check, refused from then on
        refused_after = None
        started = time.monotonic()
        for _ in range(200):
            try:
                await auth.authenticate(f"Bearer {secret}")
            except AuthError:
                refused_after = time.monotonic() - started
                break
            await asyncio.sleep(0.005)
        assert refused_after is not None
        assert refused_after < 0.5
    finally:
        await auth.aclose()
        admin.close()


async def test_new_key_seen_after_a_cached_miss(setup: tuple[KeyStore, Authenticator]) -> None:
    admin, auth = setup
    secret = admin.create("alice", force=True)
    admin.revoke("alice")
    with pytest.raises(AuthError):
        await auth.authenticate(f"Bearer {secret}")
    fresh = admin.create("alice")
    assert (await auth.authenticate(f"Bearer {fresh}")).name == "alice"


async def test_expired_key_refused(setup: tuple[KeyStore, Authenticator]) -> None:
    admin, auth = setup
    today = datetime.now(UTC).date()
    expired = admin.create("old", expires=today)
    live = admin.create("new", expires=today + timedelta(days=1))
    with pytest.raises(AuthError, match="expired"):
        await auth.authenticate(f"Bearer {expired}")
    assert (await auth.authenticate(f"Bearer {live}")).name == "new"
