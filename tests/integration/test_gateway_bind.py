"""The gateway's sockets listen as soon as they are bound, before Hypercorn serves them."""

from __future__ import annotations

import socket

from gateway.server import bind_socket


def test_a_bound_socket_takes_connections_before_it_is_served() -> None:
    """``--ready-file`` names the ports right after binding; a client that connects at once
    (scripts, health checks, tests) waits in the backlog instead of being refused."""
    sock = bind_socket(("127.0.0.1", 0))
    try:
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2.0):
            pass  # accepted by the kernel: nothing has called accept() yet
    finally:
        sock.close()
