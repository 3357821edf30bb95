"""Who may open the status page: anyone on a loopback admin listener (``[admin] auth = "auto"``),
else an admin credential: an API key named in ``[admin] keys``, or a JWT whose issuer's
``admin_claim`` is true in it.

The credential comes as ``Authorization: Bearer ...`` (``gateway status``, curl) or as HTTP
Basic with the key or token as the password (a browser asks for it: the 401 carries
``WWW-Authenticate: Basic``). The decision to ask is taken from the configured bind address, so
tests exercise the non-loopback case with ``auth = "required"`` on 127.0.0.1 (the same path).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Collection
from typing import Final, Protocol

from gateway.auth.identity import Identity
from gateway.errors import ApiError, AuthError, PermissionDeniedError

REALM: Final = 'Basic realm="llm-gateway admin", charset="UTF-8"'
NO_CREDENTIAL: Final = (
    "The status page needs an admin credential: an API key listed in [admin] keys, or a JWT "
    "with its issuer's admin_claim (Authorization: Bearer, or Basic with it as the password)."
)
NOT_ADMIN: Final = "This credential is valid but not an admin credential ([admin] keys)."


class AuthenticatorLike(Protocol):
    async def authenticate(self, authorization: str | None) -> Identity: ...


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; a name or a wildcard is not loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def credential_required(mode: str, listen_host: str) -> bool:
    """``[admin] auth``: "required" always; "auto" unless the admin listener is loopback."""
    return mode == "required" or not is_loopback(listen_host)


def bearer_from(authorization: str | None) -> str | None:
    """``Authorization`` as ``Bearer X`` for the authenticator: Basic's password becomes the
    bearer token (the user name is ignored); None when there is nothing usable."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return authorization
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, sep, password = decoded.partition(":")
    return f"Bearer {password}" if sep and password else None


def is_admin(identity: Identity, admin_keys: Collection[str]) -> bool:
    if identity.kind == "key":
        return identity.name in admin_keys
    return identity.admin


class AdminGuard:
    """Checks one request's ``Authorization`` header; open when no credential is required."""

    def __init__(
        self, auth: AuthenticatorLike, admin_keys: Collection[str], *, required: bool
    ) -> None:
        self._auth = auth
        self._admin_keys = frozenset(admin_keys)
        self.required = required

    async def allows(self, authorization: str | None) -> bool:
        """Whether this request may see what the guard protects (no exception)."""
        try:
            await self.check(authorization)
        except ApiError:
            return False
        return True

    async def check(self, authorization: str | None) -> None:
        """Raises :class:`AuthError` (401) or :class:`PermissionDeniedError` (403)."""
        if not self.required:
            return
        bearer = bearer_from(authorization)
        if bearer is None:
            raise AuthError(NO_CREDENTIAL)
        identity = await self._auth.authenticate(bearer)
        if not is_admin(identity, self._admin_keys):
            raise PermissionDeniedError(NOT_ADMIN)
