"""The ``auto`` dialer: the ladder of carriers.

``auto`` tries ``tls``, then ``websocket`` over HTTPS, then over plain HTTP; it logs each
attempt's result in plain words, sticks to what worked, and tries the better carriers again at
most once every ``auto_retry_s`` (default :data:`RETRY_BETTER_S`): at the next dial, and, while a
tunnel is up on a worse carrier, in the background (:meth:`AutoDialer.better_available`, which the
connector awaits to move its tunnel).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from tunnel.carrier.websocket_client import parse_websocket_url, plain_http_url
from tunnel.config import ConnectorConfig
from tunnel.describe import describe
from tunnel.dialers.tls import dial_tls
from tunnel.dialers.websocket import dial_websocket
from tunnel.errors import DialError, TunnelError
from tunnel.security.secure_stream import SecureStream

# The logger keeps the name it had before the tunnel had folders (operators filter on it).
log = logging.getLogger("tunnel.carriers")

#: How often ``auto`` gives a better carrier another chance once a worse one works.
RETRY_BETTER_S = 300.0

TLS = "tls"
WS_HTTPS = "websocket via HTTPS"
WS_HTTP = "websocket via plain HTTP"


@dataclass(frozen=True, slots=True)
class Rung:
    """One carrier of the ladder: its name in logs and, for websocket, the URL to upgrade."""

    name: str
    url: str = ""


def ladder(cfg: ConnectorConfig) -> list[Rung]:
    """``tls``, then websocket over HTTPS, then over plain HTTP, as the config allows."""
    rungs = [Rung(TLS)]
    http_url = cfg.websocket_http_url
    if cfg.websocket_url:
        if parse_websocket_url(cfg.websocket_url).secure:
            rungs.append(Rung(WS_HTTPS, cfg.websocket_url))
            http_url = http_url or plain_http_url(cfg.websocket_url)
        else:
            http_url = http_url or cfg.websocket_url
    if http_url:
        rungs.append(Rung(WS_HTTP, http_url))
    return rungs


def attempt_order(count: int, preferred: int, retry_due: bool) -> list[int]:
    """Which rungs to try, in order: from the best when a retry is due, else from the one that
    worked last (the better ones then come last, as a last resort)."""
    start = 0 if retry_due else min(max(preferred, 0), count - 1)
    return list(range(start, count)) + list(range(start))


async def dial_rung(cfg: ConnectorConfig, rung: Rung) -> SecureStream:
    if rung.name == TLS:
        return await dial_tls(cfg)
    return await dial_websocket(cfg, rung.url)


class AutoDialer:
    """``transport = "auto"``: the ladder, remembering what worked."""

    def __init__(
        self, retry_better_s: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._retry_better_s = retry_better_s  # None: the config's auto_retry_s
        self._clock = clock
        self._preferred: dict[tuple[str, str], int] = {}
        self._last_better_try: dict[tuple[str, str], float] = {}
        self.last_used: str = ""

    def _retry_s(self, cfg: ConnectorConfig | None) -> float:
        if self._retry_better_s is not None:
            return self._retry_better_s
        return cfg.auto_retry_s if cfg is not None else RETRY_BETTER_S

    def _retry_due(self, key: tuple[str, str], cfg: ConnectorConfig | None = None) -> bool:
        if self._preferred.get(key, 0) == 0:
            return True
        now = self._clock()
        if now - self._last_better_try.get(key, now) >= self._retry_s(cfg):
            self._last_better_try[key] = now
            return True
        self._last_better_try.setdefault(key, now)
        return False

    async def __call__(self, cfg: ConnectorConfig) -> SecureStream:
        try:
            rungs = ladder(cfg)
        except ValueError as exc:
            raise DialError(str(exc)) from None
        key = (cfg.address, cfg.websocket_url)
        order = attempt_order(len(rungs), self._preferred.get(key, 0), self._retry_due(key, cfg))
        failures = []
        for index in order:
            rung = rungs[index]
            try:
                stream = await dial_rung(cfg, rung)
            except TunnelError as exc:
                log.warning("%s: %s", rung.name, describe(exc, "dial"))
                failures.append(f"{rung.name}: {describe(exc, 'dial')}")
                continue
            if self._preferred.get(key) != index:
                log.info("%s: works; the tunnel uses %s", rung.name, rung.name)
            self._preferred[key] = index
            self.last_used = rung.name
            return stream
        raise DialError("no carrier got through (" + "; ".join(failures) + ")")

    async def better_available(self, cfg: ConnectorConfig) -> str:
        """Return once a carrier better than the one in use (the last that worked) answers,
        probed at most every ``auto_retry_s``; the connector then dials it and drains its old
        tunnel. Never returns while the best carrier is in use."""
        rungs = ladder(cfg)
        key = (cfg.address, cfg.websocket_url)
        in_use = min(self._preferred.get(key, 0), len(rungs))
        while True:
            await asyncio.sleep(self._retry_s(cfg))
            known = self._preferred.get(key, 0)
            if known < in_use:  # another tunnel of this connector found it meanwhile
                return rungs[known].name
            for index in range(in_use):
                try:
                    probe = await dial_rung(cfg, rungs[index])
                except TunnelError as exc:
                    log.info("%s: still %s", rungs[index].name, describe(exc, "dial"))
                    continue
                await probe.aclose()
                log.info("%s works again; the tunnel will move to it", rungs[index].name)
                self._preferred[key] = index
                self._last_better_try[key] = self._clock()
                return rungs[index].name
