"""Configuration of both tunnel roles: frozen dataclasses, checked at load, errors naming the key.

``ConnectorConfig.load(path)`` reads connector.toml; ``ListenerConfig.from_table(table, base_dir)``
reads the ``[tunnel]`` table of gateway.toml. Unknown keys are refused; relative paths are taken
relative to the config file.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tunnel.errors import ConfigError

TRANSPORTS = ("tls", "websocket", "auto")
#: What Windows editors (Notepad) put before the first byte of a UTF-8 file; ``tomllib`` refuses it.
UTF8_BOM = b"\xef\xbb\xbf"


def split_host_port(value: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[::1]:port"`` -> (host, port); raises ValueError."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError("must be HOST:PORT")
    port = int(port_text)
    if port > 65535:
        raise ValueError("port must be 0..65535")
    return host.strip("[]"), port


class _Reader:
    """Takes typed values out of one TOML table, naming each key in its errors."""

    def __init__(self, table: Mapping[str, Any], prefix: str, where: str, base_dir: Path) -> None:
        self._table = dict(table)
        self._prefix = prefix
        self._where = where
        self._base_dir = base_dir
        self._used: set[str] = set()

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self._where}{self._prefix}{key}: {message}")

    def _get(self, key: str, default: Any) -> Any:
        self._used.add(key)
        return self._table.get(key, default)

    def has(self, key: str) -> bool:
        return key in self._table

    def string(self, key: str, default: str | None = None) -> str:
        value = self._get(key, default)
        if value is None:
            raise self.fail(key, "is required")
        if not isinstance(value, str):
            raise self.fail(key, "must be a string")
        return value

    def path(self, key: str, *, required: bool = True) -> Path | None:
        value = self.string(key, None if required else "")
        if not value:
            if required:
                raise self.fail(key, "must not be empty")
            return None
        try:
            path = Path(value).expanduser()
        except RuntimeError:  # "~name" of a user this system does not know
            raise self.fail(key, f"{value!r} names the home of an unknown user") from None
        return path if path.is_absolute() else self._base_dir / path

    def req_path(self, key: str) -> Path:
        path = self.path(key)
        assert path is not None
        return path

    def positive(self, key: str, default: float) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.fail(key, "must be a positive number")
        if not math.isfinite(value):
            raise self.fail(key, "must be a finite number")
        return float(value)

    def count(self, key: str, default: int, minimum: int = 1) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"must be a whole number >= {minimum}")
        return value

    def address(self, key: str, default: str | None = None) -> tuple[str, int]:
        text = self.string(key, default)
        try:
            return split_host_port(text)
        except ValueError as exc:
            raise self.fail(key, f"{exc} (got {text!r})") from None

    def names(self, key: str) -> tuple[str, ...]:
        value = self._get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, "must be a list of names")
        return tuple(value)

    def url(self, key: str, schemes: tuple[str, ...]) -> str:
        """An optional URL (``""`` when absent) whose scheme is one of ``schemes``, with a host."""
        text = self.string(key, "")
        if not text:
            return ""
        parts = urlsplit(text)
        if parts.scheme not in schemes:
            allowed = " or ".join(f"{scheme}://" for scheme in schemes)
            raise self.fail(key, f"must start with {allowed} (got {text!r})")
        if not parts.hostname:
            raise self.fail(key, f"has no host (got {text!r})")
        return text

    def path_or_false(self, key: str, example: str) -> Path | None:
        """A required path, or ``false`` to turn the feature off on purpose (``None``)."""
        if not self.has(key):
            off = f"{key} = false turns it off"
            raise self.fail(key, f'is required (e.g. {key} = "{example}"; {off})')
        value = self._get(key, None)
        if value is False:
            return None
        if not isinstance(value, str):
            raise self.fail(key, "must be a path, or false")
        return self.req_path(key)

    def table(self, key: str) -> Mapping[str, Any]:
        value = self._get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self._table) - self._used)
        if unknown:
            raise self.fail(unknown[0], "unknown key")


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """One named upstream the connector may forward to."""

    name: str
    url: str  # base URL, e.g. http://172.21.113.31:4000 (no trailing slash)
    api_key_env: str = ""
    api_key: str = ""
    timeout_s: float = 600.0  # longest silence while reading the upstream's answer
    connect_timeout_s: float = 10.0

    def credential(self, environ: Mapping[str, str]) -> str:
        """The upstream's own key: the config's ``api_key``, else the named env variable."""
        if self.api_key:
            return self.api_key
        if self.api_key_env:
            return environ.get(self.api_key_env, "")
        return ""


@dataclass(frozen=True, slots=True)
class ConnectorConfig:
    """connector.toml."""

    host: str
    port: int
    server_name: str
    ca: Path
    cert: Path
    key: Path
    upstreams: Mapping[str, UpstreamConfig]
    proxy: str = ""
    connections: int = 1
    transport: str = "auto"
    websocket_url: str = ""
    websocket_http_url: str = (
        ""  # the plain-HTTP rung of "auto" when it is not websocket_url's twin
    )
    proxy_ca: Path | None = None
    ping_interval_s: float = 15.0
    ping_timeout_s: float = 10.0
    drain_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    max_concurrent_streams: int = 1000
    healthy_reset_s: float = 60.0
    reconnect_base_s: float = 0.5
    reconnect_max_s: float = 30.0
    auto_retry_s: float = 300.0  # "auto": how often a better carrier gets another chance
    source: Path = field(default=Path("connector.toml"), compare=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def load(cls, path: Path) -> ConnectorConfig:
        where = f"{path.name}: "
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{where}cannot read: {exc.strerror or exc}") from None
        try:
            data = tomllib.loads(raw.removeprefix(UTF8_BOM).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{where}not valid UTF-8: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}not valid TOML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"{where}not valid TOML: nested too deeply") from None
        return cls.from_dict(data, path.resolve().parent, where=where, source=path)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], base_dir: Path, *, where: str = "", source: Path | None = None
    ) -> ConnectorConfig:
        top = _Reader(data, "", where, base_dir)
        gateway = top.table("gateway")
        upstream_tables = top.table("upstreams")
        if not top.has("gateway"):
            raise top.fail("gateway", "is required")
        top.finish()
        upstreams = {n: _upstream(n, t, where, base_dir) for n, t in upstream_tables.items()}
        if not upstreams:
            raise top.fail("upstreams", "at least one [upstreams.NAME] is required")
        return _connector_from(_Reader(gateway, "gateway.", where, base_dir), upstreams, source)


def _upstream(name: str, table: Any, where: str, base_dir: Path) -> UpstreamConfig:
    r = _Reader({}, f"upstreams.{name}.", where, base_dir)
    if not isinstance(table, dict):
        raise r.fail("", "must be a table")
    r = _Reader(table, f"upstreams.{name}.", where, base_dir)
    url = r.string("url").rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise r.fail("url", f"must start with http:// or https:// (got {url!r})")
    up = UpstreamConfig(
        name=name,
        url=url,
        api_key_env=r.string("api_key_env", ""),
        api_key=r.string("api_key", ""),
        timeout_s=r.positive("timeout_s", 600.0),
        connect_timeout_s=r.positive("connect_timeout_s", 10.0),
    )
    r.finish()
    return up


def _connector_from(
    r: _Reader, upstreams: dict[str, UpstreamConfig], source: Path | None
) -> ConnectorConfig:
    host, port = r.address("address")
    transport = r.string("transport", "auto")
    if transport not in TRANSPORTS:
        raise r.fail("transport", f"must be one of {', '.join(TRANSPORTS)} (got {transport!r})")
    cfg = ConnectorConfig(
        host=host,
        port=port,
        server_name=r.string("server_name", host) or host,
        ca=r.req_path("ca"),
        cert=r.req_path("cert"),
        key=r.req_path("key"),
        upstreams=upstreams,
        proxy=r.string("proxy", ""),
        connections=r.count("connections", 1),
        transport=transport,
        websocket_url=r.url("websocket_url", ("https", "http", "wss", "ws")),
        websocket_http_url=r.url("websocket_http_url", ("http", "ws")),
        proxy_ca=r.path("proxy_ca", required=False),
        ping_interval_s=r.positive("ping_interval_s", 15.0),
        ping_timeout_s=r.positive("ping_timeout_s", 10.0),
        drain_timeout_s=r.positive("drain_timeout_s", 10.0),
        connect_timeout_s=r.positive("connect_timeout_s", 10.0),
        max_concurrent_streams=r.count("max_concurrent_streams", 1000),
        healthy_reset_s=r.positive("healthy_reset_s", 60.0),
        reconnect_base_s=r.positive("reconnect_base_s", 0.5),
        reconnect_max_s=r.positive("reconnect_max_s", 30.0),
        auto_retry_s=r.positive("auto_retry_s", 300.0),
        source=source or Path("connector.toml"),
    )
    r.finish()
    return cfg


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """gateway.toml's ``[tunnel]`` table."""

    host: str
    port: int
    cert: Path
    key: Path
    ca: Path
    crl: Path | None  # None: ``crl = false``, revocation turned off on purpose
    allowed_connectors: tuple[str, ...]
    ping_interval_s: float = 15.0
    ping_timeout_s: float = 10.0
    websocket_path: str = "/.well-known/llm-tunnel"
    websocket_http_listen: str = ""
    drain_timeout_s: float = 10.0
    handshake_timeout_s: float = 10.0
    crl_poll_s: float = 1.0

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_table(cls, table: Mapping[str, Any], base_dir: Path) -> ListenerConfig:
        r = _Reader(table, "tunnel.", "", base_dir)
        host, port = r.address("listen", "0.0.0.0:9443")
        ws_path = r.string("websocket_path", "/.well-known/llm-tunnel")
        if not ws_path.startswith("/"):
            raise r.fail("websocket_path", "must start with /")
        ws_listen = r.string("websocket_http_listen", "")
        if ws_listen:
            try:
                split_host_port(ws_listen)
            except ValueError as exc:
                raise r.fail("websocket_http_listen", str(exc)) from None
        cfg = cls(
            host=host,
            port=port,
            cert=r.req_path("cert"),
            key=r.req_path("key"),
            ca=r.req_path("ca"),
            crl=r.path_or_false("crl", "pki/crl.pem"),
            allowed_connectors=r.names("allowed_connectors"),
            ping_interval_s=r.positive("ping_interval_s", 15.0),
            ping_timeout_s=r.positive("ping_timeout_s", 10.0),
            websocket_path=ws_path,
            websocket_http_listen=ws_listen,
            drain_timeout_s=r.positive("drain_timeout_s", 10.0),
            handshake_timeout_s=r.positive("handshake_timeout_s", 10.0),
            crl_poll_s=r.positive("crl_poll_s", 1.0),
        )
        r.finish()
        return cfg
