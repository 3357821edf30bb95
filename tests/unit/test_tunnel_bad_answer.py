"""Issue 11 item 7b: a connector's answer with a ``:status`` that is no number is a tunnel
failure (the gateway answers 502 in OpenAI's shape) and its stream is reset (no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.test_tunnel_session import pair
from tunnel.errors import BadAnswerError, TunnelError
from tunnel.h2.session import Session, Stream
from tunnel.pool import Pool, Tunnel
from tunnel.security.secure_stream import PeerIdentity


def pool_over(session: Session) -> Pool:
    record = Tunnel(
        tunnel_id="office-1#1",
        peer=PeerIdentity(common_name="office-1", serial=1, cert_der=b""),
        carrier="tls",
        remote="127.0.0.1:1",
        started=0.0,
        upstreams=("up",),
    )
    record.session = session
    pool = Pool()
    pool.add(record)
    return pool


@pytest.mark.parametrize("status", ["abc", "", "2OO", "99999"])
async def test_a_status_that_is_no_number_is_a_tunnel_error_and_resets_the_stream(
    status: str,
) -> None:
    reset = asyncio.Event()

    async def bad_status(stream: Stream) -> None:
        if dict(stream.headers or [])[":path"] == "/v1/fine":
            await stream.send_headers([(":status", "200")], end_stream=True)
            return
        await stream.send_headers([(":status", status)])
        try:
            await asyncio.sleep(5)  # a body that would follow
        except asyncio.CancelledError:
            reset.set()  # the gateway reset the stream: the handler was cancelled
            raise

    async with pair(bad_status) as (client, _server):
        pool = pool_over(client)
        with pytest.raises(TunnelError, match="status") as caught:
            await pool.request("up", "GET", "/v1/models", [], b"")
        assert isinstance(caught.value, BadAnswerError)
        await asyncio.wait_for(reset.wait(), 2.0)
        assert client.active_streams == 0
        fine = await pool.request("up", "GET", "/v1/fine", [], b"")  # the tunnel goes on
        assert fine.status == 200
