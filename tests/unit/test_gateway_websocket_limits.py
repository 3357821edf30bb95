"""The WebSocket endpoint's message cap, without sockets: Hypercorn's buffer as we install it."""

from __future__ import annotations

import pytest
from hypercorn.config import Config as HypercornConfig
from hypercorn.protocol import ws_stream
from wsproto.events import BytesMessage
from wsproto.handshake import server_extensions_handshake

from gateway.websocket import (
    MAX_RECEIVE_MESSAGE_BYTES,
    CappedWebsocketBuffer,
    DeflateDeclined,
    harden_websockets,
)
from tunnel.carrier import websocket_client


def piece(size: int, finished: bool = False) -> BytesMessage:
    return BytesMessage(data=b"x" * size, message_finished=finished)


def test_the_connector_never_sends_more_than_the_gateway_takes() -> None:
    assert websocket_client.MAX_MESSAGE_BYTES <= MAX_RECEIVE_MESSAGE_BYTES


def test_a_message_at_the_cap_is_taken() -> None:
    buffer = CappedWebsocketBuffer(MAX_RECEIVE_MESSAGE_BYTES)
    buffer.extend(piece(MAX_RECEIVE_MESSAGE_BYTES - 1))
    buffer.extend(piece(1, finished=True))
    assert len(buffer.to_message()["bytes"]) == MAX_RECEIVE_MESSAGE_BYTES


def test_after_a_refusal_nothing_more_is_held() -> None:
    buffer = CappedWebsocketBuffer(MAX_RECEIVE_MESSAGE_BYTES)
    buffer.extend(piece(60_000))
    with pytest.raises(ws_stream.FrameTooLargeError):
        buffer.extend(piece(10_000))
    assert buffer.value is None
    for _ in range(3):  # what the peer keeps sending until the connection ends
        with pytest.raises(ws_stream.FrameTooLargeError):
            buffer.extend(piece(1))
        assert buffer.value is None


def test_harden_websockets_sets_the_cap_and_the_buffer() -> None:
    config = HypercornConfig()
    assert config.websocket_max_message_size == 16 * 1024 * 1024
    harden_websockets(config)
    assert config.websocket_max_message_size == MAX_RECEIVE_MESSAGE_BYTES
    assert ws_stream.WebsocketBuffer is CappedWebsocketBuffer
    assert ws_stream.PerMessageDeflate is DeflateDeclined  # type: ignore[attr-defined]


def test_compression_is_never_agreed() -> None:
    offers = ["permessage-deflate", "permessage-deflate; client_max_window_bits"]
    assert server_extensions_handshake(offers, [DeflateDeclined()]) is None
