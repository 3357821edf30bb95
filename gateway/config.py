"""``gateway.toml``: one frozen dataclass per table, every key checked, unknown keys named.

A mistake raises :class:`gateway.errors.ConfigError` whose message starts with the key
(``server.listen: expected "host:port", got 'x'``). Relative paths are relative to the file.
The ``[tunnel]`` table is validated by :class:`tunnel.config.ListenerConfig`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from gateway.client_address import Network
from gateway.config_table import REQUIRED, TableReader, parse_listen
from gateway.errors import ConfigError
from tunnel.config import ListenerConfig
from tunnel.errors import ConfigError as TunnelConfigError

DEFAULT_WEBSOCKET_PATH: Final = "/.well-known/llm-tunnel"
# a 256k-token context is about 1 MB of text, 1-2 MB as JSON (escapes, tool schemas, history);
# 4 MiB leaves room for that and bounds what one request may cost to parse (docs/operations.md)
DEFAULT_MAX_BODY_BYTES: Final = 4 * 1024 * 1024
# a TLS handshake, a request head, and an idle kept-alive connection each get this long
DEFAULT_HEADER_TIMEOUT_S: Final = 15.0
DEFAULT_MAX_CONNECTIONS_PER_IP: Final = 64  # 0: no limit; trusted proxies are not counted
# asymmetric only: a JWKS is public, so an HMAC algorithm would accept tokens anyone can sign
JWT_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
STORAGE_SCHEMES: Final = ("memory://", "redis://", "rediss://", "redis+unix://")
MESSAGES_API_MODES: Final = ("native", "translate")  # [models.ALIAS] messages_api
SECTIONS: Final = ("server", "admin", "tunnel", "auth", "limits", "models", "log")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """``[server]``: the public HTTPS API."""

    listen: tuple[str, int]
    cert: Path
    key: Path
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    trusted_proxies: tuple[Network, ...] = ()
    sse_keepalive_s: float = 5.0
    upstream_timeout_s: float = 600.0
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """``[admin]``: ``/metrics``, ``/healthz``, ``/readyz``; ``listen = ""`` turns it off."""

    listen: tuple[str, int] | None = ("127.0.0.1", 9100)


@dataclass(frozen=True, slots=True)
class JwtIssuerConfig:
    """One ``[[auth.jwt]]`` issuer of OAuth2 / JWT access tokens."""

    issuer: str
    audience: str
    jwks_url: str | None = None
    jwks_file: Path | None = None
    jwks_ca: Path | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    identity_claim: str = "sub"
    models_claim: str | None = None
    leeway_s: float = 30.0


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """``[auth]``: the SQLite file of key hashes and usage ledger, and the JWT issuers."""

    keys_db: Path
    jwt: tuple[JwtIssuerConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """``[limits]``: defaults for identities without their own; 0 means no limit."""

    storage: str = "memory://"
    rpm: int = 60
    tpm: int = 100_000
    concurrency: int = 4


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """``[models.ALIAS]``: the upstream (connector-side name) and the model name it knows."""

    upstream: str
    model: str
    messages_api: str = "native"  # Anthropic's /v1/messages: "native" or "translate"


@dataclass(frozen=True, slots=True)
class LogConfig:
    """``[log]``: the access log (a file, or standard error when unset) and the level."""

    access_log: Path | None = None
    level: str = "info"
    log_prompts: bool = False


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    path: Path
    server: ServerConfig
    admin: AdminConfig
    auth: AuthConfig
    limits: LimitsConfig
    log: LogConfig
    tunnel: ListenerConfig  # ``[tunnel]``, read by the tunnel listener's own config
    models: Mapping[str, ModelRoute] = field(default_factory=dict)
    websocket_http_listen: tuple[str, int] | None = None  # ``tunnel.websocket_http_listen``

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def websocket_path(self) -> str:
        return self.tunnel.websocket_path


def load_config(path: Path) -> GatewayConfig:
    """Read and check ``gateway.toml``; raises :class:`ConfigError` naming the bad key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    return config_from_table(data, path.resolve())


def config_from_table(data: Mapping[str, Any], path: Path) -> GatewayConfig:
    top = TableReader(data, "", path.parent)
    for section in SECTIONS:
        top.raw(section, {})
    top.reject_unknown_keys()
    base = path.parent
    tunnel_table = TableReader(data.get("tunnel", {}), "tunnel", base).table
    return GatewayConfig(
        path=path,
        server=_server(TableReader(data.get("server", {}), "server", base)),
        admin=_admin(TableReader(data.get("admin", {}), "admin", base)),
        auth=_auth(TableReader(data.get("auth", {}), "auth", base)),
        limits=_limits(TableReader(data.get("limits", {}), "limits", base)),
        log=_log(TableReader(data.get("log", {}), "log", base)),
        models=_models(TableReader(data.get("models", {}), "models", base)),
        tunnel=(tunnel := _listener_config(tunnel_table, base)),
        websocket_http_listen=_websocket_http_listen(tunnel.websocket_http_listen),
    )


def _server(r: TableReader) -> ServerConfig:
    cfg = ServerConfig(
        listen=r.listen("listen", "0.0.0.0:8443"),
        cert=r.path("cert"),
        key=r.path("key"),
        max_body_bytes=r.integer("max_body_bytes", DEFAULT_MAX_BODY_BYTES, minimum=1024),
        trusted_proxies=r.networks("trusted_proxies"),
        sse_keepalive_s=r.number("sse_keepalive_s", 5.0, minimum=0.05),
        upstream_timeout_s=r.number("upstream_timeout_s", 600.0, minimum=0.1),
        header_timeout_s=r.number("header_timeout_s", DEFAULT_HEADER_TIMEOUT_S, minimum=0.5),
        max_connections_per_ip=r.integer(
            "max_connections_per_ip", DEFAULT_MAX_CONNECTIONS_PER_IP, minimum=0
        ),
    )
    r.reject_unknown_keys()
    return cfg


def _admin(r: TableReader) -> AdminConfig:
    listen = r.string("listen", "127.0.0.1:9100")
    cfg = AdminConfig(listen=r.listen("listen", listen) if listen else None)
    r.reject_unknown_keys()
    return cfg


def _auth(r: TableReader) -> AuthConfig:
    keys_db = r.path("keys_db", "gateway.db")
    issuers = r.raw("jwt", [])
    if not isinstance(issuers, list):
        raise r.fail("jwt", "expected [[auth.jwt]] tables")
    jwt = tuple(
        _jwt_issuer(TableReader(t, f"auth.jwt[{i}]", r.base_dir)) for i, t in enumerate(issuers)
    )
    r.reject_unknown_keys()
    return AuthConfig(keys_db=keys_db, jwt=jwt)


def _jwt_issuer(r: TableReader) -> JwtIssuerConfig:
    cfg = JwtIssuerConfig(
        issuer=_non_empty(r, "issuer"),
        audience=_non_empty(r, "audience"),
        jwks_url=r.optional_string("jwks_url"),
        jwks_file=r.optional_path("jwks_file"),
        jwks_ca=r.optional_path("jwks_ca"),
        algorithms=r.string_list("algorithms", ["RS256", "ES256"]),
        identity_claim=_non_empty(r, "identity_claim", "sub"),
        models_claim=r.optional_string("models_claim"),
        leeway_s=r.number("leeway_s", 30.0),
    )
    r.reject_unknown_keys()
    if (cfg.jwks_url is None) == (cfg.jwks_file is None):
        raise r.fail("jwks_url", "set exactly one of jwks_url and jwks_file")
    if cfg.jwks_url is not None and not cfg.jwks_url.startswith("https://"):
        raise r.fail("jwks_url", f"must be an https:// URL, got {cfg.jwks_url!r}")
    if not cfg.algorithms:
        raise r.fail("algorithms", "must list at least one algorithm")
    for alg in cfg.algorithms:
        if alg not in JWT_ALGORITHMS:
            raise r.fail("algorithms", f"unsupported algorithm {alg!r}")
    return cfg


def _limits(r: TableReader) -> LimitsConfig:
    cfg = LimitsConfig(
        storage=r.string("storage", "memory://"),
        rpm=r.integer("rpm", 60),
        tpm=r.integer("tpm", 100_000),
        concurrency=r.integer("concurrency", 4),
    )
    r.reject_unknown_keys()
    if not cfg.storage.startswith(STORAGE_SCHEMES):
        raise r.fail("storage", f'expected "memory://" or a "redis://" URL, got {cfg.storage!r}')
    return cfg


def _models(r: TableReader) -> dict[str, ModelRoute]:
    routes: dict[str, ModelRoute] = {}
    for alias in r.table:
        t = TableReader(r.sub_table(alias), r.name(alias), r.base_dir)
        routes[alias] = ModelRoute(
            upstream=_non_empty(t, "upstream"),
            model=_non_empty(t, "model", alias),
            messages_api=_messages_api(t),
        )
        t.reject_unknown_keys()
    return routes


def _messages_api(t: TableReader) -> str:
    """``messages_api``: "native" (the default) or "translate" (see docs/configuration.md)."""
    mode = t.string("messages_api", "native")
    if mode not in MESSAGES_API_MODES:
        raise t.fail("messages_api", f'expected "native" or "translate", got {mode!r}')
    return mode


def _log(r: TableReader) -> LogConfig:
    target = r.string("access_log", "")
    cfg = LogConfig(
        access_log=None if target in ("", "-", "stderr") else r.resolved("access_log", target),
        level=r.string("level", "info").lower(),
        log_prompts=r.boolean("log_prompts", False),
    )
    r.reject_unknown_keys()
    if cfg.level not in LOG_LEVELS:
        raise r.fail("level", f"expected one of {', '.join(LOG_LEVELS)}, got {cfg.level!r}")
    return cfg


def _non_empty(r: TableReader, key: str, default: object = REQUIRED) -> str:
    value = r.string(key, default)
    if not value:
        raise r.fail(key, "must not be empty")
    return value


def _listener_config(table: Mapping[str, Any], base_dir: Path) -> ListenerConfig:
    """``[tunnel]`` as the listener reads it; its mistakes are the gateway's config errors."""
    try:
        return ListenerConfig.from_table(table, base_dir)
    except TunnelConfigError as exc:
        raise ConfigError(str(exc)) from None


def _websocket_http_listen(value: str) -> tuple[str, int] | None:
    """The plain-HTTP WebSocket listener's address (checked by the listener's config)."""
    if not value:
        return None
    try:
        return parse_listen(value)
    except ValueError as exc:
        raise ConfigError(f"tunnel.websocket_http_listen: {exc}") from None


def check_files(cfg: GatewayConfig) -> None:
    """Files the config names must exist (``gateway check`` and ``serve`` run this)."""
    files: list[tuple[str, Path | None]] = [
        ("server.cert", cfg.server.cert),
        ("server.key", cfg.server.key),
    ]
    for i, issuer in enumerate(cfg.auth.jwt):
        files += [
            (f"auth.jwt[{i}].jwks_file", issuer.jwks_file),
            (f"auth.jwt[{i}].jwks_ca", issuer.jwks_ca),
        ]
    for key, path in files:
        if path is not None and not path.is_file():
            raise ConfigError(f"{key}: file not found: {path}")
    _check_keys_db(cfg.auth.keys_db)


def _check_keys_db(path: Path) -> None:
    """``keys_db``'s folder is created on first use (``serve`` and ``keys`` alike), so only a
    path that can never become a folder is refused: a file where a folder is needed."""
    if path.is_dir():
        raise ConfigError(f"auth.keys_db: is a folder, expected a file path: {path}")
    for folder in path.parents:
        if folder.exists():
            if not folder.is_dir():
                raise ConfigError(f"auth.keys_db: not a folder: {folder}")
            return
