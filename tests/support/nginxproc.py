"""A private nginx terminating TLS in front of an HTTPS upstream (the gateway), WebSocket too.

This is what a user puts in front of the gateway (or what Cloudflare Tunnel does): clients and the
connector's ``websocket`` carrier speak TLS to nginx, and nginx speaks TLS again to the gateway.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import ManagedProcess, PrivateServer, copy_logs, port_answers

NGINX = "nginx"


@dataclass(frozen=True)
class NginxOptions:
    cert: Path  # the certificate nginx shows to clients
    key: Path
    upstream: str  # e.g. "https://127.0.0.1:8443"
    upstream_ca: Path | None = None  # verify the upstream against this CA; None: no verification
    upstream_name: str = "localhost"  # SNI and the name checked in the upstream's certificate
    websocket_path: str = "/.well-known/llm-tunnel"
    server_name: str = "localhost"


def _proxy_common(options: NginxOptions) -> list[str]:
    lines = [
        f"proxy_pass {options.upstream};",
        "proxy_http_version 1.1;",
        "proxy_set_header Host $http_host;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_ssl_server_name on;",
        f"proxy_ssl_name {options.upstream_name};",
        "proxy_read_timeout 3600s;",
        "proxy_send_timeout 3600s;",
    ]
    if options.upstream_ca is not None:
        lines += [
            "proxy_ssl_verify on;",
            f"proxy_ssl_trusted_certificate {options.upstream_ca};",
        ]
    else:
        lines.append("proxy_ssl_verify off;")
    return lines


def render_conf(options: NginxOptions, port: int, work: Path) -> str:
    """nginx.conf: TLS on 127.0.0.1:``port``; API streamed unbuffered; WebSocket upgraded."""
    common = "\n            ".join(_proxy_common(options))
    temp = "\n    ".join(
        f"{kind}_temp_path {work / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""worker_processes 1;
pid {work / "nginx.pid"};
error_log {work / "error.log"} info;
events {{ worker_connections 1024; }}
http {{
    access_log {work / "access.log"};
    {temp}
    map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        server_name {options.server_name};
        ssl_certificate {options.cert};
        ssl_certificate_key {options.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location {options.websocket_path} {{
            {common}
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }}
        location / {{
            {common}
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"""


@dataclass
class Nginx(PrivateServer):
    """``start()``/``astart()``, then ``url`` (``https://127.0.0.1:PORT``); ``stop()``.

    Its files live in a fresh directory under the system temp dir (nginx's workers, which may run
    as another user, must reach their temp paths); ``log_dir`` receives its logs when it stops.
    """

    options: NginxOptions
    log_dir: Path | None = None
    ready_timeout_s: float = 15.0

    def __post_init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="nginx-test-"))
        os.chmod(self.work, 0o755)  # workers (user nobody) traverse it; no secrets here
        self.port = 0
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def access_log(self) -> str:
        path = self.work / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _process_for(self, port: int) -> ManagedProcess:
        conf = self.work / "nginx.conf"
        conf.write_text(render_conf(self.options, port, self.work))
        argv = [NGINX, "-p", str(self.work), "-c", str(conf), "-e", str(self.work / "error.log"),
                "-g", "daemon off;"]  # fmt: skip
        return ManagedProcess(
            argv,
            log_path=self.work / "nginx.out",
            cwd=self.work,
            ready=lambda: port_answers("127.0.0.1", port),
            ready_timeout_s=self.ready_timeout_s,
            stop_timeout_s=5.0,
            name="nginx",
        )

    def _keep_logs(self) -> None:
        names = ("access.log", "error.log", "nginx.out", "nginx.conf")
        copy_logs(self.work, self.log_dir, f"nginx-{self.port}", names)

    def _cleanup(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
