"""A small sans-IO HTTP/1.1 request parser for the bench's fast upstream.

``RequestParser().feed(bytes) -> list[event]``: a :class:`Head`, then :class:`Body` pieces, then
:class:`End`, repeated for keep-alive requests. Content-Length and chunked bodies (RFC 9112
sections 6 and 7.1); no trailers are kept. It exists because the bench upstream must cost far less
than what it measures, so it does no more than this.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

MAX_HEAD_BYTES = 65536


class ParseError(Exception):
    """The bytes are not an HTTP/1.1 request we understand."""


@dataclass(frozen=True, slots=True)
class Head:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""


@dataclass(frozen=True, slots=True)
class Body:
    data: bytes


@dataclass(frozen=True, slots=True)
class End:
    pass


Event = Head | Body | End


class _State(Enum):
    HEAD = auto()
    LENGTH = auto()
    CHUNK_SIZE = auto()
    CHUNK_DATA = auto()
    CHUNK_CRLF = auto()
    TRAILER = auto()


def parse_head(raw: bytes) -> Head:
    """Parse the request line and header fields (without the blank line)."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ParseError(f"bad request line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ParseError(f"bad header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    return Head(parts[0], parts[1], headers)


class RequestParser:
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = _State.HEAD
        self._remaining = 0

    def feed(self, data: bytes) -> list[Event]:
        self._buffer += data
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def _step(self, events: list[Event]) -> bool:
        """Consume what the buffer allows in the current state; False when it needs more."""
        if self._state is _State.HEAD:
            return self._read_head(events)
        if self._state in (_State.LENGTH, _State.CHUNK_DATA):
            return self._read_data(events)
        return self._read_line(events)

    def _read_head(self, events: list[Event]) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise ParseError("request head too large")
            return False
        head = parse_head(bytes(self._buffer[:end]))
        del self._buffer[: end + 4]
        events.append(head)
        if "chunked" in head.headers.get("transfer-encoding", "").lower():
            self._state = _State.CHUNK_SIZE
            return True
        try:
            self._remaining = int(head.headers.get("content-length", "0"))
        except ValueError:
            raise ParseError("bad content-length") from None
        if self._remaining == 0:
            events.append(End())
        else:
            self._state = _State.LENGTH
        return True

    def _read_data(self, events: list[Event]) -> bool:
        if not self._buffer:
            return False
        take = min(self._remaining, len(self._buffer))
        events.append(Body(bytes(self._buffer[:take])))
        del self._buffer[:take]
        self._remaining -= take
        if self._remaining == 0:
            if self._state is _State.LENGTH:
                events.append(End())
                self._state = _State.HEAD
            else:
                self._state = _State.CHUNK_CRLF
        return True

    def _read_line(self, events: list[Event]) -> bool:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            return False
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        if self._state is _State.CHUNK_CRLF:
            if line:
                raise ParseError("chunk data longer than its size")
            self._state = _State.CHUNK_SIZE
        elif self._state is _State.CHUNK_SIZE:
            try:
                self._remaining = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise ParseError(f"bad chunk size {line!r}") from None
            self._state = _State.CHUNK_DATA if self._remaining else _State.TRAILER
        elif not line:  # the blank line that ends the trailer section
            events.append(End())
            self._state = _State.HEAD
        return True
