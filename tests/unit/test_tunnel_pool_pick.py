"""Issue 3 item 7: the listener sends each new stream to the healthy tunnel serving the upstream
with the fewest active streams. `Pool.pick` on tunnel records with stand-in sessions (no sockets).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import cast

import pytest

from tunnel.errors import NoTunnelError
from tunnel.h2.session import Session
from tunnel.pool import Pool, Tunnel
from tunnel.security.secure_stream import PeerIdentity

UPSTREAM = "office-llm"


@dataclass
class FakeSession:
    """The part of `Session` the pool reads: stream count and whether a stream may open."""

    active_streams: int = 0
    alive: bool = True
    draining: bool = False
    full: bool = False  # the peer's SETTINGS_MAX_CONCURRENT_STREAMS reached
    stalled: str | None = None

    def can_open(self) -> bool:
        return self.alive and not self.draining and not self.full


def tunnel(
    tunnel_id: str, active: int = 0, upstreams: tuple[str, ...] = (UPSTREAM,)
) -> tuple[Tunnel, FakeSession]:
    record = Tunnel(
        tunnel_id=tunnel_id,
        peer=PeerIdentity(common_name=f"conn-{tunnel_id}", serial=1, cert_der=b""),
        carrier="tls",
        remote="127.0.0.1:1",
        started=0.0,
        upstreams=upstreams,
    )
    session = FakeSession(active_streams=active)
    record.session = cast(Session, session)
    return record, session


def pool_of(*tunnels: Tunnel) -> Pool:
    pool = Pool()
    for each in tunnels:
        pool.add(each)
    return pool


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_fewest_active_streams_wins(order: tuple[int, ...]) -> None:
    made = [tunnel("busy", 5)[0], tunnel("idle", 1)[0], tunnel("mid", 3)[0]]
    pool = pool_of(*(made[i] for i in order))
    assert pool.pick(UPSTREAM).tunnel_id == "idle"


def test_draining_tunnel_is_skipped_even_when_idlest() -> None:
    draining, _ = tunnel("draining", 0)
    draining.peer_draining()  # the connector sent GOAWAY
    busy, _ = tunnel("busy", 7)
    assert pool_of(draining, busy).pick(UPSTREAM) is busy


def test_session_that_cannot_open_is_skipped() -> None:
    dead, dead_session = tunnel("dead", 0)
    dead_session.alive = False
    full, full_session = tunnel("full", 1)
    full_session.full = True
    gone_away, gone_session = tunnel("goaway", 0)
    gone_session.draining = True  # the session itself is draining
    ok, _ = tunnel("ok", 9)
    assert pool_of(dead, full, gone_away, ok).pick(UPSTREAM) is ok


def test_tunnel_not_serving_the_upstream_is_skipped() -> None:
    other, _ = tunnel("other", 0, upstreams=("home-llm",))
    none, _ = tunnel("none", 0, upstreams=())
    serving, _ = tunnel("serving", 4, upstreams=("home-llm", UPSTREAM))
    pool = pool_of(other, none, serving)
    assert pool.pick(UPSTREAM) is serving
    assert pool.pick("home-llm") is other  # fewer streams


def test_no_usable_tunnel_raises_no_tunnel_error() -> None:
    draining, _ = tunnel("draining")
    draining.peer_draining()
    other, _ = tunnel("other", upstreams=("home-llm",))
    with pytest.raises(NoTunnelError):
        pool_of(draining, other).pick(UPSTREAM)
    with pytest.raises(NoTunnelError):
        Pool().pick(UPSTREAM)


def test_removed_tunnel_is_not_picked() -> None:
    first, _ = tunnel("first", 0)
    second, _ = tunnel("second", 5)
    pool = pool_of(first, second)
    pool.remove(first)
    assert pool.pick(UPSTREAM) is second


def test_concurrent_streams_spread_over_tied_tunnels() -> None:
    """Streams that stay open: each pick sees the last one counted, so 12 spread 4/4/4."""
    made = [tunnel(name) for name in ("a", "b", "c")]
    pool = pool_of(*(record for record, _ in made))
    sessions = {record.tunnel_id: session for record, session in made}
    picked: Counter[str] = Counter()
    for _ in range(12):
        chosen = pool.pick(UPSTREAM)
        picked[chosen.tunnel_id] += 1
        sessions[chosen.tunnel_id].active_streams += 1  # the stream opened on it stays open
    assert picked == Counter({"a": 4, "b": 4, "c": 4})


def test_load_evens_out_after_a_busy_tunnel_frees_up() -> None:
    a, a_session = tunnel("a", 6)
    b, b_session = tunnel("b", 2)
    pool = pool_of(a, b)
    for _ in range(4):  # b takes the new streams until it is as busy as a
        chosen = pool.pick(UPSTREAM)
        assert chosen is b
        b_session.active_streams += 1
    a_session.active_streams = 0  # a's long streams ended
    assert pool.pick(UPSTREAM) is a


def test_ties_between_idle_tunnels_are_spread() -> None:
    """Short requests that end before the next one starts: every pick is a tie at 0 streams;
    they should not all land on the same tunnel."""
    made = [tunnel(name)[0] for name in ("a", "b", "c")]
    pool = pool_of(*made)
    picked = Counter(pool.pick(UPSTREAM).tunnel_id for _ in range(30))
    assert len(picked) == 3, picked
    assert max(picked.values()) - min(picked.values()) <= 1, picked
