"""The per-address connection count (sans-IO) and its installation in Hypercorn."""

from __future__ import annotations

import importlib
import ipaddress

from gateway.limits.connections import AddressLimit, LimitedTCPServer, install


def test_an_address_holds_at_most_the_limit_and_gets_its_place_back() -> None:
    limit = AddressLimit(2)
    assert limit.acquire("203.0.113.9")
    assert limit.acquire("203.0.113.9")
    assert not limit.acquire("203.0.113.9")
    assert limit.acquire("198.51.100.1")  # another address counts apart
    limit.release("203.0.113.9")
    assert limit.acquire("203.0.113.9")
    for _ in range(2):
        limit.release("203.0.113.9")
    limit.release("198.51.100.1")
    assert limit.open == {}  # nothing kept for addresses that left
    assert limit.refused == 1


def test_zero_is_no_limit_and_trusted_proxies_are_not_counted() -> None:
    unlimited = AddressLimit(0)
    assert all(unlimited.acquire("203.0.113.9") for _ in range(1000))
    assert unlimited.open == {}
    front = AddressLimit(1, (ipaddress.ip_network("10.0.0.0/8"),))
    assert all(front.acquire("10.1.2.3") for _ in range(100))
    assert front.acquire("203.0.113.9")
    assert not front.acquire("203.0.113.9")


def test_install_swaps_hypercorns_connection_class_once() -> None:
    install()
    install()
    assert importlib.import_module("hypercorn.asyncio.run").TCPServer is LimitedTCPServer
