"""A private squid (Debian's ``squid-openssl``) for tests, the demo and the bench, in three guises.

- ``default``: squid's stock policy: ``CONNECT`` only to ``ssl_ports`` (443 unless the test says
  which port stands for 443), plain HTTP to the Safe_ports.
- ``bump``: the same policy, and every ``CONNECT`` is TLS-intercepted (ssl-bump) and re-signed with
  a proxy CA ("Corp Proxy CA"), as a corporate inspecting proxy does; ``proxy_ca_path`` is that CA.
  Towards servers squid trusts ``upstream_ca`` when given (a gateway whose certificate the proxy
  accepts, like a Let's Encrypt one), else it does not verify them.
- ``http_only``: no ``CONNECT`` at all; plain HTTP forwarding only (absolute-form requests).

WebSocket upgrades over plain HTTP pass unless ``websocket_upgrade=False`` (squid 5 strips
``Upgrade`` unless ``http_upgrade_request_protocols`` allows it). Optional Basic proxy auth.
Squid cannot listen on port 0, so a free port is picked (and picked again if it was taken).
"""

from __future__ import annotations

import datetime
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.support.procs import (
    ManagedProcess,
    PrivateServer,
    ProcessFailedError,
    copy_logs,
    port_answers,
)

Guise = Literal["default", "bump", "http_only"]
GUISES: tuple[Guise, ...] = ("default", "bump", "http_only")
SQUID = "squid"
CERTGEN = "/usr/lib/squid/security_file_certgen"
NCSA_AUTH = "/usr/lib/squid/basic_ncsa_auth"
SAFE_PORTS = ("80", "21", "443", "70", "210", "1025-65535", "280", "488", "591", "777")


@dataclass(frozen=True)
class SquidOptions:
    guise: Guise = "default"
    ssl_ports: tuple[int, ...] = (443,)
    auth: tuple[str, str] | None = None  # (user, password) for Basic proxy auth
    upstream_ca: Path | None = None  # bump: the CA squid trusts for servers; None: no verification
    websocket_upgrade: bool = True
    ca_name: str = "Corp Proxy CA"
    extra_conf: tuple[str, ...] = ()  # more squid.conf lines, appended last (e.g. debug_options)

    def __post_init__(self) -> None:
        if self.guise not in GUISES:
            raise ValueError(f"unknown squid guise {self.guise!r}; expected one of {GUISES}")


# --------------------------------------------------------------------------- config (pure)


def render_conf(options: SquidOptions, port: int, work: Path, run_as: str | None) -> str:
    """The whole squid.conf for ``options``, listening on 127.0.0.1:``port``, files in ``work``."""
    lines = [_http_port_line(options, port, work), *_common_lines(work, run_as)]
    lines += [
        "acl SSL_ports port " + " ".join(str(p) for p in options.ssl_ports),
        "acl Safe_ports port " + " ".join(SAFE_PORTS),
        "acl CONNECT method CONNECT",
        "http_access deny !Safe_ports",
        "http_access deny CONNECT" if options.guise == "http_only" else "",
        "http_access deny CONNECT !SSL_ports",
    ]
    if options.auth is not None:
        lines += [
            f"auth_param basic program {NCSA_AUTH} {work / 'htpasswd'}",
            "auth_param basic realm proxy",
            "auth_param basic children 2 startup=1 idle=1",
            "acl authed proxy_auth REQUIRED",
            "http_access deny !authed",
        ]
    lines += ["http_access allow localhost", "http_access deny all"]
    if options.websocket_upgrade:
        # squid compares the token case-sensitively; clients send "websocket" (wsproto, browsers)
        lines.append("http_upgrade_request_protocols websocket allow all")
        lines.append("http_upgrade_request_protocols WebSocket allow all")
    if options.guise == "bump":
        lines += _bump_lines(options, work)
    lines += options.extra_conf
    return "\n".join(line for line in lines if line) + "\n"


def _http_port_line(options: SquidOptions, port: int, work: Path) -> str:
    line = f"http_port 127.0.0.1:{port}"
    if options.guise == "bump":
        line += (
            f" ssl-bump tls-cert={work / 'proxy-ca.crt'} tls-key={work / 'proxy-ca.key'}"
            " generate-host-certificates=on dynamic_cert_mem_cache_size=4MB"
        )
    return line


def _common_lines(work: Path, run_as: str | None) -> list[str]:
    return [
        f"pid_filename {work / 'squid.pid'}",
        f"cache_log {work / 'cache.log'}",
        f"access_log stdio:{work / 'access.log'}",
        f"coredump_dir {work}",
        f"cache_effective_user {run_as}" if run_as else "",
        "cache deny all",
        "cache_mem 8 MB",
        "visible_hostname squid-test",
        "shutdown_lifetime 0 seconds",
        "pinger_enable off",
        "netdb_filename none",
        "digest_generation off",
        "dns_nameservers 127.0.0.1",  # loopback only: tests name 127.0.0.1 or localhost
        "logfile_rotate 0",
    ]


def _bump_lines(options: SquidOptions, work: Path) -> list[str]:
    if options.upstream_ca is not None:
        # squid 5 matches only DNS names, never IP SANs: tests dial 127.0.0.1, so a name
        # mismatch alone is forgiven; a certificate from another CA still is not.
        outgoing = [
            f"tls_outgoing_options cafile={work / 'upstream-ca.crt'}",
            "acl name_mismatch ssl_error SQUID_X509_V_ERR_DOMAIN_MISMATCH",
            "sslproxy_cert_error allow name_mismatch",
            "sslproxy_cert_error deny all",
        ]
    else:
        outgoing = ["tls_outgoing_options flags=DONT_VERIFY_PEER", "sslproxy_cert_error allow all"]
    return [
        f"sslcrtd_program {CERTGEN} -s {work / 'ssl_db'} -M 4MB",
        "sslcrtd_children 3 startup=1 idle=1",
        "acl step1 at_step SslBump1",
        "ssl_bump peek step1",
        "ssl_bump bump all",
        *outgoing,
    ]


# --------------------------------------------------------------------------- files


def make_proxy_ca(cert_path: Path, key_path: Path, name: str = "Corp Proxy CA") -> None:
    """A CA like a corporate proxy's, RSA (squid's certificate generator expects RSA)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Corp"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)


def htpasswd_line(user: str, password: str) -> str:
    """``user:$1$...`` (MD5-crypt, which basic_ncsa_auth reads), made with ``openssl passwd``."""
    hashed = subprocess.run(
        ["openssl", "passwd", "-1", "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    return f"{user}:{hashed}\n"


def _squid_user() -> str | None:
    """Squid started as root drops to ``proxy``; as anyone else it stays that user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("proxy")
    except KeyError:
        return "nobody"
    return "proxy"


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, entry.pw_uid, entry.pw_gid)


# --------------------------------------------------------------------------- the process


@dataclass
class Squid(PrivateServer):
    """A private squid: ``start()``/``astart()``, then ``url``, ``port``, ``proxy_ca_path``.

    ``log_dir`` (e.g. a test's ``tmp_path``) receives a copy of squid's logs when it stops; its own
    files live in a fresh directory under the system temp dir (squid's user must reach it).
    """

    options: SquidOptions = field(default_factory=SquidOptions)
    log_dir: Path | None = None
    ready_timeout_s: float = 30.0
    # squid takes ~2 s to exit after SIGTERM even with shutdown_lifetime 0; its logs are unbuffered
    # and its helpers share its process group, so after a short grace it is killed outright.
    stop_timeout_s: float = 0.5

    def __post_init__(self) -> None:
        self.run_as = _squid_user()
        self.work = Path(tempfile.mkdtemp(prefix="squid-test-"))
        self.port = 0
        self.process: ManagedProcess | None = None
        self._prepare_files()

    # ---- public view

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no credentials)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url_with_auth(self) -> str:
        if self.options.auth is None:
            return self.url
        user, password = self.options.auth
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    @property
    def proxy_ca_path(self) -> Path:
        """The intercepting proxy's CA certificate (``bump`` only)."""
        if self.options.guise != "bump":
            raise AttributeError("only a 'bump' squid has a proxy CA")
        return self.work / "proxy-ca.crt"

    @property
    def access_log_path(self) -> Path:
        return self.work / "access.log"

    def access_log(self) -> str:
        return _read(self.access_log_path)

    def cache_log(self) -> str:
        return _read(self.work / "cache.log")

    # ---- lifecycle

    def _prepare_files(self) -> None:
        if self.options.guise == "bump":
            make_proxy_ca(
                self.work / "proxy-ca.crt", self.work / "proxy-ca.key", self.options.ca_name
            )
            if self.options.upstream_ca is not None:
                shutil.copyfile(self.options.upstream_ca, self.work / "upstream-ca.crt")
            subprocess.run(
                [CERTGEN, "-c", "-s", str(self.work / "ssl_db"), "-M", "4MB"],
                capture_output=True,
                check=True,
                timeout=30,
            )
        if self.options.auth is not None:
            (self.work / "htpasswd").write_text(htpasswd_line(*self.options.auth))
        if self.run_as is not None:
            _chown_tree(self.work, self.run_as)

    def _process_for(self, port: int) -> ManagedProcess:
        conf = self.work / "squid.conf"
        conf.write_text(render_conf(self.options, port, self.work, self.run_as))
        return ManagedProcess(
            [SQUID, "-N", "-f", str(conf)],
            log_path=self.work / "squid.out",
            cwd=self.work,
            ready=lambda: port_answers("127.0.0.1", port),
            ready_timeout_s=self.ready_timeout_s,
            stop_timeout_s=self.stop_timeout_s,
            name=f"squid-{self.options.guise}",
        )

    def _start_failed(self, error: ProcessFailedError) -> ProcessFailedError:
        return ProcessFailedError(f"squid did not start; cache.log:\n{self.cache_log()[-3000:]}")

    def _keep_logs(self) -> None:
        names = ("access.log", "cache.log", "squid.out", "squid.conf")
        copy_logs(self.work, self.log_dir, f"squid-{self.port}", names)

    def _cleanup(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
