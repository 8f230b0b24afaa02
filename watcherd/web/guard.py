"""Who may use the page: the Host header (DNS rebinding), the token, and CSRF on actions.

The page binds to one address and answers only requests that name it in ``Host``: a web page
on another site that makes a name of its own resolve to 127.0.0.1 (DNS rebinding) sends its
own name there, and is refused before any route runs. Beyond loopback, every request but the
health check carries the token, as ``Authorization: Bearer TOKEN`` (Prometheus, scripts) or
as the session cookie the login form sets (browsers), which expires after
:data:`SESSION_SECONDS` (the browser is told so, and the server checks the time the cookie
carries under its MAC, so a copied cookie stops working too). Every action (a POST) also carries the
page's CSRF token, which only a page served by this server can read.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from watcherd.config import Secret
from watcherd.connections import is_loopback

_COOKIE_NAME = "watcherd_session"
#: How long a session cookie lasts: sign in again after this many seconds.
SESSION_SECONDS = 12 * 3600
# A session made up to this many seconds "in the future" still counts: the clock stepped back.
_CLOCK_SLACK = 60
_SESSION_RE = re.compile(r"([0-9]{1,12})\.([0-9a-f]{64})")
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
# A Host header is a name or address and an optional port: nothing else is compared.
_HOST_RE = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?")
_COOKIE_RE = re.compile(r"\s*([^=;\s]+)=([^;]*)")


class Refused(Exception):
    """The request may not proceed: answer ``status`` with ``reason`` (safe to show)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True)
class Guard:
    """The checks for one server: its address, its token (beyond loopback), its CSRF secret."""

    host: str
    port: int
    token: Secret | None
    csrf_secret: bytes
    session_seconds: int = SESSION_SECONDS

    @classmethod
    def create(cls, host: str, port: int, token: Secret | None, *,
               session_seconds: int = SESSION_SECONDS) -> Guard:
        """A guard with a fresh CSRF secret (a restart invalidates pages left open: reload)."""
        return cls(host, port, token, secrets.token_bytes(32), session_seconds)

    @property
    def needs_token(self) -> bool:
        """Whether requests must prove they know the token (any non-loopback address)."""
        return self.token is not None or not is_loopback(self.host)

    # -- Host ------------------------------------------------------------------------------

    def allowed_hosts(self) -> frozenset[str]:
        """The exact Host values accepted (lower case); empty for a wildcard address."""
        if _is_wildcard(self.host):
            return frozenset()
        names = {_host_text(self.host)}
        if is_loopback(self.host):
            # Every spelling of this machine is safe: no other site can own these names.
            names.update(_LOOPBACK_NAMES)
        hosts = {f"{name}:{self.port}" for name in names}
        if self.port == 80:
            hosts.update(names)  # browsers leave the default port out
        return frozenset(h.lower() for h in hosts)

    def check_host(self, value: str | None) -> None:
        """Refuse (421) a request whose Host is not this server's address.

        On a wildcard address (0.0.0.0, ::) the page is reached by any of the machine's
        addresses, so any IP literal with the right port is accepted, and no name but
        localhost: DNS rebinding needs a name.
        """
        expected = f"http://{_host_text(self.host)}:{self.port}/"
        if value is None:
            raise Refused(421, f"no Host header; open {expected}")
        text = value.strip().lower()
        if _is_wildcard(self.host):
            found = _HOST_RE.fullmatch(text)
            port = int(found["port"]) if found and found["port"] else 80
            name = found["host"].strip("[]") if found else ""
            if found and port == self.port and (name == "localhost" or _is_ip(name)):
                return
            raise Refused(421, "this page answers only to an IP address of this machine with "
                               f"port {self.port} (DNS rebinding protection)")
        if text not in self.allowed_hosts():
            raise Refused(421, f"this page answers only to {expected} "
                               "(DNS rebinding protection); open that address instead")

    # -- token -----------------------------------------------------------------------------

    def session_value(self, now: float | None = None) -> str:
        """The cookie value that proves the token since ``now``: ISSUED.MAC (derived from the
        token, so the cookie is not the token, and the time cannot be changed)."""
        issued = str(int(time.time() if now is None else now))
        return f"{issued}.{self._session_mac(issued)}"

    def session_cookie(self, now: float | None = None) -> str:
        """The Set-Cookie value of a new session."""
        return (f"{_COOKIE_NAME}={self.session_value(now)}; Path=/; Max-Age="
                f"{self.session_seconds}; HttpOnly; SameSite=Strict")

    def _session_mac(self, issued: str) -> str:
        assert self.token is not None
        return hmac.new(self.token.reveal().encode(), b"watcherd-web-session:" + issued.encode(),
                        hashlib.sha256).hexdigest()

    def session_valid(self, value: str, now: float | None = None) -> bool:
        """Whether ``value`` is a session this token made, less than session_seconds ago."""
        found = _SESSION_RE.fullmatch(value)
        if found is None or self.token is None:
            return False
        age = (time.time() if now is None else now) - int(found[1])
        return -_CLOCK_SLACK <= age < self.session_seconds and hmac.compare_digest(
            found[2].encode(), self._session_mac(found[1]).encode())

    def token_matches(self, given: str) -> bool:
        """Whether ``given`` is the token (constant time)."""
        if self.token is None:
            return False
        return hmac.compare_digest(given.encode("utf-8", "replace"),
                                   self.token.reveal().encode())

    def authorized(self, headers: Mapping[str, str], now: float | None = None) -> bool:
        """Whether the request carries the token or a live session (or needs neither)."""
        if not self.needs_token:
            return True
        if self.token is None:
            return False  # beyond loopback without a token: nobody (config refuses this)
        auth = headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and self.token_matches(value.strip()):
            return True
        cookie = cookies(headers.get("cookie", "")).get(_COOKIE_NAME)
        return cookie is not None and self.session_valid(cookie, now)

    # -- CSRF ------------------------------------------------------------------------------

    def csrf_token(self) -> str:
        """The token every action form carries; unguessable, fixed for this server's life."""
        return hmac.new(self.csrf_secret, b"csrf", hashlib.sha256).hexdigest()

    def check_csrf(self, given: str | None, headers: Mapping[str, str]) -> None:
        """Refuse (403) an action without this server's CSRF token or from another origin."""
        origin = headers.get("origin")
        if origin is not None and origin != "null":
            found = re.fullmatch(r"https?://(?P<host>[^/]+)", origin.strip())
            if found is None:
                raise Refused(403, "the request comes from another site")
            try:
                self.check_host(found["host"])
            except Refused:
                raise Refused(403, "the request comes from another site") from None
        if not given or not hmac.compare_digest(given.encode("utf-8", "replace"),
                                                self.csrf_token().encode()):
            raise Refused(403, "the page's form token is missing or stale; reload the page "
                               "and try again")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def cookies(header: str) -> dict[str, str]:
    """The cookies of a Cookie header (the first of each name)."""
    found: dict[str, str] = {}
    for part in header.split(";"):
        match = _COOKIE_RE.match(part)
        if match:
            found.setdefault(match.group(1), match.group(2).strip())
    return found
