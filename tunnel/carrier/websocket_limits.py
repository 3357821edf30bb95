"""The gateway's end of the ``websocket`` carrier, whatever serves the WebSocket: its limits.

The WebSocket (over the public HTTPS port, a plain-HTTP listener, or a TLS-terminating front such
as nginx or Cloudflare Tunnel) proves nothing: the connector is admitted only by the mutual TLS
run inside it (:func:`tunnel.listener.serve_websocket`). The web server's side (the Quart view,
Hypercorn's limits) is the gateway's: :mod:`gateway.websocket`, which applies these numbers.
"""

from __future__ import annotations

#: Largest binary message we send (the connector's wsproto takes any size; proxies may not).
MAX_MESSAGE_BYTES = 64 * 1024
#: Largest message we take, before and after admission: the connector never sends more
#: (``tunnel.carrier.websocket_client.MAX_MESSAGE_BYTES``) and a TLS ClientHello flight fits
#: many times over. The server must apply it (Hypercorn's ``websocket_max_message_size``, 16 MiB
#: by default): Hypercorn holds a whole message before the app sees any of it, and closes with
#: 1009 above it.
MAX_RECEIVE_MESSAGE_BYTES = 64 * 1024
#: RFC 6455 section 7.4.1: 1003 "cannot accept this type of data", 1009 "message too big".
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_MESSAGE_TOO_BIG = 1009
