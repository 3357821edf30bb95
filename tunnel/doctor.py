"""``connector doctor -c FILE``: proxy -> TLS -> gateway -> upstream, one step at a time.

Each step prints one line with a plain verdict and, when it fails, what to do. The carrier
ladder of ``auto`` runs too, and a last sentence says which carrier works and why the others do
not. Exit code 0 only when every step that matters for the configured transport passed.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tunnel.carrier.proxy import open_tcp, select_proxy
from tunnel.config import ConnectorConfig, UpstreamConfig
from tunnel.dialers.auto import TLS, WS_HTTP, WS_HTTPS, Rung, dial_rung, ladder
from tunnel.errors import InterceptedError, ProxyRefusedError, TunnelError
from tunnel.h2.hello import HELLO_PATH, hello_body, respond
from tunnel.h2.session import Session, SessionSettings
from tunnel.h2.stream import Stream
from tunnel.security.certificates import issued_by
from tunnel.security.secure_stream import SecureStream

OK, FAIL, SOFT = "ok", "FAIL", "no"  # SOFT: did not work, but another way does
EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True, slots=True)
class Step:
    """One line of the report."""

    name: str
    status: str  # OK, FAIL or SOFT (a failure the configured transport can live with)
    verdict: str
    todo: str = ""

    def lines(self) -> list[str]:
        head = f"[{self.status:>4}] {self.name}: {self.verdict}"
        return [head] if not self.todo else [head, f"       what to do: {self.todo}"]


@dataclass(frozen=True, slots=True)
class RungResult:
    """What one carrier of the ladder did."""

    name: str
    works: bool
    error: TunnelError | None = None


@dataclass(slots=True)
class Report:
    steps: list[Step] = field(default_factory=list)
    rungs: list[RungResult] = field(default_factory=list)

    def add(self, step: Step, out: TextIO) -> Step:
        self.steps.append(step)
        for line in step.lines():
            print(line, file=out, flush=True)
        return step

    @property
    def passed(self) -> bool:
        return all(s.status != FAIL for s in self.steps)


# ------------------------------------------------------------------ verdict (pure)


def _carrier_words(name: str) -> str:
    return {TLS: "`tls`", WS_HTTPS: "`websocket` via HTTPS", WS_HTTP: "`websocket` via plain HTTP"}[
        name
    ]


def verdict(rungs: Sequence[RungResult], cfg: ConnectorConfig) -> str:
    """The last sentence: what is wrong with the network, what works, how to get ``tls``."""
    tls = next((r for r in rungs if r.name == TLS), None)
    working = next((r for r in rungs if r.works), None)
    problem = ""
    if tls is not None and isinstance(tls.error, InterceptedError):
        problem = (
            f"your proxy intercepts TLS (it showed a certificate issued by {tls.error.issuer!r})"
        )
    elif tls is not None and isinstance(tls.error, ProxyRefusedError):
        problem = (
            f"your proxy refuses CONNECT to {cfg.address} (it answered {tls.error.status_line!r})"
        )
    elif tls is not None and tls.error is not None:
        problem = f"`tls` does not get through ({tls.error})"
    if working is None:
        return (problem + "; " if problem else "") + "no carrier gets through; see the steps above"
    works = f"the tunnel works over {_carrier_words(working.name)}"
    if working.name == TLS:
        return works
    if isinstance(tls and tls.error, InterceptedError):
        fix = f"to use `tls`, ask for {cfg.server_name} to be exempted from inspection"
    elif isinstance(tls and tls.error, ProxyRefusedError):
        fix = f"to use `tls`, ask for CONNECT to {cfg.address} to be allowed"
    else:
        fix = ""
    return "; ".join(p for p in (problem, works, fix) if p)


# ------------------------------------------------------------------ steps (I/O)


def check_certificate(cfg: ConnectorConfig, now: datetime.datetime) -> Step:
    """Certificate and key match, dates, issuer = the deployment CA."""
    name = "certificate"
    try:
        cert = x509.load_pem_x509_certificate(cfg.cert.read_bytes())
        key = serialization.load_pem_private_key(cfg.key.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        return Step(name, FAIL, f"cannot read {cfg.cert} / {cfg.key}: {exc}", "check cert and key")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, public) != cert.public_key().public_bytes(der, public):
        return Step(
            name,
            FAIL,
            f"{cfg.key.name} is not the key of {cfg.cert.name}",
            "use the .key file issued together with the .crt (pki issue client NAME)",
        )
    if now < cert.not_valid_before_utc or now > cert.not_valid_after_utc:
        until = cert.not_valid_after_utc.date()
        return Step(
            name,
            FAIL,
            f"{cfg.cert.name} is not valid now (valid until {until})",
            "issue a new one with `pki issue client NAME --force`",
        )
    if not issued_by(cert.public_bytes(serialization.Encoding.DER), cfg.ca):
        return Step(
            name,
            FAIL,
            f"{cfg.cert.name} was not issued by {cfg.ca.name}",
            "use the certificate and ca.crt from the same `pki` directory",
        )
    days = (cert.not_valid_after_utc - now).days
    cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    who = str(cn[0].value) if cn else "?"
    todo = "renew it soon (pki issue client NAME --force)" if days < EXPIRY_WARNING_DAYS else ""
    return Step(name, OK, f"{who!r}, key matches, issued by the CA, valid {days} more days", todo)


async def check_proxy(cfg: ConnectorConfig) -> Step:
    """Proxy reachable and CONNECT to the tunnel port allowed (quoting the proxy's answer)."""
    try:
        proxy = select_proxy(cfg.proxy, cfg.host, os.environ)
    except ValueError as exc:
        return Step("proxy", FAIL, str(exc), "fix gateway.proxy (http://user:pass@host:port)")
    if proxy is None:
        return Step("proxy", OK, "none configured; connecting directly")
    try:
        _, writer = await open_tcp(cfg.host, cfg.port, proxy, cfg.connect_timeout_s)
    except ProxyRefusedError as exc:
        todo = (
            f"the proxy does not allow CONNECT to port {cfg.port} (squid's default allows "
            "443 only): serve the tunnel on 443, ask for the port to be allowed, or use "
            'transport = "websocket"'
        )
        status = FAIL if cfg.transport == "tls" else SOFT  # websocket may need no CONNECT
        return Step("proxy", status, f"{proxy.address} refused CONNECT: {exc.status_line}", todo)
    except TunnelError as exc:
        return Step("proxy", FAIL, str(exc), "check gateway.proxy / HTTPS_PROXY and the network")
    writer.close()
    return Step("proxy", OK, f"{proxy.address} reachable; CONNECT {cfg.address} allowed")


def rung_step(
    rung: Rung, secure: SecureStream | None, error: TunnelError | None, cfg: ConnectorConfig
) -> Step:
    """The line for one carrier of the ladder."""
    if secure is not None:
        peer = secure.peer.common_name
        return Step(
            rung.name, OK, f"mutual TLS up with the gateway {peer!r} ({secure.description})"
        )
    if isinstance(error, InterceptedError):
        verdict_text = (
            f"a proxy intercepts TLS: it showed a certificate for {error.subject!r} "
            f"issued by {error.issuer!r}, not by the deployment CA"
        )
        todo = f"ask for {cfg.server_name} to be exempted from inspection, or use websocket"
        return Step(rung.name, FAIL, verdict_text, todo)
    if isinstance(error, ProxyRefusedError):
        return Step(
            rung.name,
            FAIL,
            f"the proxy refused: {error.status_line}",
            "this carrier is not allowed by the proxy; try another",
        )
    return Step(rung.name, FAIL, str(error), "see the message; check the gateway's address")


async def probe_rung(
    cfg: ConnectorConfig, rung: Rung
) -> tuple[SecureStream | None, TunnelError | None]:
    try:
        return await dial_rung(cfg, rung), None
    except TunnelError as exc:
        return None, exc


async def check_admitted(cfg: ConnectorConfig, secure: SecureStream, carrier: str) -> Step:
    """A real hello exchange: the gateway admits the tunnel by asking for our announcement."""
    admitted = asyncio.Event()

    async def handle(stream: Stream) -> None:
        if dict(stream.headers or []).get(":path") == HELLO_PATH:
            await respond(stream, 200, hello_body(cfg.upstreams))
            admitted.set()

    settings = SessionSettings(
        ping_interval_s=cfg.ping_interval_s, ping_timeout_s=cfg.ping_timeout_s
    )
    session = Session(secure, client_side=False, settings=settings, on_request=handle)
    runner = asyncio.create_task(session.run())
    waiter = asyncio.create_task(admitted.wait())
    await asyncio.wait(
        {runner, waiter}, timeout=cfg.connect_timeout_s + 5, return_when=asyncio.FIRST_COMPLETED
    )
    waiter.cancel()
    if admitted.is_set():
        await session.drain(2.0, "doctor done")
        await runner
        return Step("tunnel", OK, f"the gateway admitted this connector over {carrier}")
    if not runner.done():
        session.abort("no hello from the gateway")
    reason = await runner
    return Step("tunnel", FAIL, f"not admitted: {reason}", admission_hint(reason))


def admission_hint(reason: str) -> str:
    """What to do about the gateway's refusal, by its reason."""
    if "the CRL is stale" in reason:
        return "the gateway's CRL has expired: ask its owner to run `pki crl` (re-signs crl.pem)"
    if "is revoked" in reason:
        return "this certificate was revoked: ask the gateway's owner for a new one"
    return "ask the gateway's owner to allow this connector's name and check the CRL"


async def check_upstream(up: UpstreamConfig) -> Step:
    """GET /v1/models straight to the upstream, from the office side."""
    name = f"upstream {up.name}"
    headers = {}
    key = up.credential(os.environ)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    timeout = aiohttp.ClientTimeout(total=up.connect_timeout_s + 10, connect=up.connect_timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(f"{up.url}/v1/models", headers=headers) as resp,
        ):
            body = await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Step(
            name,
            FAIL,
            f"{up.url} unreachable: {exc or type(exc).__name__}",
            f"check upstreams.{up.name}.url and that the LLM server runs",
        )
    if resp.status != 200:
        todo = f"check the upstream's key (upstreams.{up.name}.api_key_env)"
        return Step(name, FAIL, f"GET {up.url}/v1/models answered {resp.status}", todo)
    try:
        count = len(json.loads(body).get("data", []))
    except (ValueError, AttributeError):
        count = 0
    return Step(name, OK, f"GET {up.url}/v1/models answered 200 ({count} models)")


# ------------------------------------------------------------------ the run


def _matters(rung: str, transport: str) -> bool:
    return transport == "auto" or (transport == "tls") == (rung == TLS)


async def _ladder(
    cfg: ConnectorConfig, report: Report, out: TextIO
) -> tuple[SecureStream | None, str]:
    best: SecureStream | None = None
    best_name = ""
    for rung in ladder(cfg):
        secure, error = await probe_rung(cfg, rung)
        report.rungs.append(RungResult(rung.name, secure is not None, error))
        step = rung_step(rung, secure, error, cfg)
        if step.status == FAIL and (
            cfg.transport == "auto" or not _matters(rung.name, cfg.transport)
        ):
            step = Step(step.name, SOFT, step.verdict, step.todo)
        report.add(step, out)
        if secure is not None and best is None and _matters(rung.name, cfg.transport):
            best, best_name = secure, rung.name
        elif secure is not None:
            await secure.aclose()
    return best, best_name


async def run_doctor(
    cfg: ConnectorConfig, out: TextIO, now: Callable[[], datetime.datetime] | None = None
) -> Report:
    report = Report()
    clock = now or (lambda: datetime.datetime.now(datetime.UTC))
    report.add(Step("config", OK, f"{cfg.source} loads (transport {cfg.transport})"), out)
    report.add(check_certificate(cfg, clock()), out)
    report.add(await check_proxy(cfg), out)
    secure, carrier = await _ladder(cfg, report, out)
    if secure is not None:
        report.add(await check_admitted(cfg, secure, _carrier_words(carrier)), out)
    else:
        report.add(
            Step(
                "tunnel",
                FAIL,
                "not tried: no carrier got through",
                "fix the first failed step above",
            ),
            out,
        )
    for up in cfg.upstreams.values():
        report.add(await check_upstream(up), out)
    print(f"verdict: {verdict(report.rungs, cfg)}", file=out, flush=True)
    return report


def main_doctor(config_path: Path, out: TextIO | None = None) -> int:
    """``connector doctor``: 0 when every step passed, 1 otherwise, 2 when the config is bad."""
    stream = out or sys.stdout
    try:
        cfg = ConnectorConfig.load(config_path)
    except TunnelError as exc:
        print(f"[FAIL] config: {exc}", file=stream)
        print("       what to do: fix the key named above", file=stream)
        return 2
    report = asyncio.run(run_doctor(cfg, stream))
    return 0 if report.passed else 1
