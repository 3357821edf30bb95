"""The connector's way to an upstream: each stream's request relayed over HTTP, the answer sent
back on the stream as it arrives (SSE chunks one by one), the upstream request closed when the
gateway resets the stream (so the GPU stops generating).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping

import aiohttp
from h2.errors import ErrorCodes
from yarl import URL

from tunnel.config import UpstreamConfig
from tunnel.errors import StreamResetError
from tunnel.h2.hello import respond
from tunnel.h2.stream import Stream
from tunnel.headers import response_headers, upstream_request_headers

# The connector's one logger, as before the tunnel had folders (operators filter on it).
log = logging.getLogger("tunnel.connector")

#: aiohttp's buffer per upstream response (it pauses reading at twice this): bigger pieces mean
#: fewer DATA frames for bulk answers; SSE chunks still go one by one as they arrive.
READ_BUFSIZE = 256 * 1024


def openai_error(message: str, error_type: str, code: str) -> bytes:
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return json.dumps(body).encode()


async def _request_body(stream: Stream) -> AsyncIterator[bytes]:
    while chunk := await stream.read():
        yield chunk


class UpstreamRelay:
    """Relays one stream's request to its upstream, and the upstream's answer back on the stream,
    over a shared aiohttp session."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._http: aiohttp.ClientSession | None = None
        self._timeouts: dict[str, aiohttp.ClientTimeout] = {}

    async def __aenter__(self) -> UpstreamRelay:
        connector = aiohttp.TCPConnector(limit=0, enable_cleanup_closed=False)
        self._http = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None),
            cookie_jar=aiohttp.DummyCookieJar(),  # never carry one client's cookies to another
            read_bufsize=READ_BUFSIZE,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._http is not None:
            await self._http.close()

    async def forward(self, stream: Stream, up: UpstreamConfig, method: str, path: str) -> None:
        assert self._http is not None
        headers = [(n, v) for n, v in stream.headers or [] if not n.startswith(":")]
        timeout = self._timeouts.get(up.name)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(
                total=None, connect=up.connect_timeout_s, sock_read=up.timeout_s
            )
            self._timeouts[up.name] = timeout
        complete = stream.take_complete_body()  # small bodies: sent with a Content-Length
        body = _request_body(stream) if complete is None else complete or None
        try:
            resp = await self._http.request(
                method,
                URL(up.url + path, encoded=True),
                headers=upstream_request_headers(headers, up.credential(self._environ)),
                data=body,
                timeout=timeout,
                allow_redirects=False,
            )
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            message = f"upstream {up.name} unreachable: {exc or type(exc).__name__}"
            log.warning("%s %s: %s", method, path, message)
            await respond(stream, 502, openai_error(message, "server_error", "upstream_error"))
            return
        await self._relay(stream, resp, up.name)

    async def _relay(self, stream: Stream, resp: aiohttp.ClientResponse, name: str) -> None:
        try:
            head = [(":status", str(resp.status)), *response_headers(resp.headers.items())]
            await stream.send_headers(head)
            content = resp.content
            async for chunk in content.iter_any():
                last = content.at_eof()  # a Content-Length body: END_STREAM on its last DATA
                if not stream.send_now(chunk, end_stream=last):
                    await stream.send_data(chunk, end_stream=last)
                if last:
                    return
            await stream.end()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("upstream %s broke off its answer: %s", name, exc or type(exc).__name__)
            stream.reset(ErrorCodes.INTERNAL_ERROR)
        except StreamResetError:
            pass  # the gateway went away; close the upstream request below
        finally:
            if resp.content.at_eof():
                resp.release()
            else:
                resp.close()  # the upstream sees its request closed: generation stops
