"""The front door of ``otel-corr serve``: which requests are answered, and the headers every answer carries.

DNS rebinding: a web page on ``evil.example`` whose name the attacker then points at 127.0.0.1 is,
to the browser, same-origin with ``http://evil.example:16686``, so it could read every trace and
post fake ones.  What gives it away is the ``Host`` header (``evil.example:16686``): only loopback
names and addresses, the address ``--host`` binds and names given with ``--allow-host`` are
answered; anything else gets 403.  A request from another site's page that carries an ``Origin``
(every cross-site POST and CORS request does) is refused the same way unless ``--allow-origin``
names it; CORS headers are sent only for those origins.

The guard wraps everything else, so its security headers are on every response: the page, the
APIs, their errors, the 404s of the port dispatcher and Starlette's own 500.
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
import re
import threading
import urllib.parse
from collections.abc import Collection
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSP", "Guard", "host_allowed", "loopback_name"]

_log = logging.getLogger("otel_corr.server")

#: Starlette added ``allow_private_network`` in 0.51.0; the server extra allows older versions, where
#: passing it would be a TypeError, so it is passed only when the installed middleware takes it.
_PRIVATE_NETWORK = "allow_private_network" in inspect.signature(CORSMiddleware.__init__).parameters

#: Everything a span or a log record carries is attacker-controlled (headers, paths, messages): the
#: page builds its DOM with text nodes only, and may load nothing inline and nothing from elsewhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_NAME = re.compile(r"[a-z0-9_.-]+|[0-9a-f:.]+")
#: Distinct refused hosts/origins logged (one line each); after that, refusals are only counted.
_LOGGED_REFUSALS = 8


def loopback_name(host: str) -> bool:
    """``localhost`` (and names under it, RFC 6761), or an address in 127.0.0.0/8 or ``::1``."""
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _hostname(value: str) -> str | None:
    """The name in a ``Host`` value (``name``, ``name:port``, ``[v6]``, ``[v6]:port``); None if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1 :]
        if end < 0 or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        return value[1:end]
    name, _, port = value.partition(":")
    if ":" in port or (port and not port.isdigit()):
        return None
    return name.rstrip(".")


def host_allowed(host: str, allowed: Collection[str]) -> bool:
    """Whether a ``Host`` name is loopback or one of ``allowed`` (``*``, ``name`` or ``*.domain``)."""
    if loopback_name(host):
        return True
    for pattern in allowed:
        if pattern == "*" or pattern == host:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


def normalise_host(value: str) -> str:
    """An ``--allow-host`` value as the guard compares it: lower case, no port, no brackets."""
    name = _hostname(value)
    if not name or not _NAME.fullmatch(name):
        raise ValueError(f"{value!r} is not a host name or address")
    return name


class Guard:
    """Pure ASGI: refuse foreign ``Host``/``Origin`` with 403, add the security headers to every response.

    Args:
        app: the app to guard (the port dispatcher of ``serve``).
        allowed_hosts: names answered besides loopback ones (normalised by :func:`normalise_host`);
            ``*`` answers any.
        allowed_origins: origins (``scheme://host[:port]``) a browser may call from; ``*`` for any.
            CORS headers are sent only to these.
    """

    def __init__(self, app: ASGIApp, *, allowed_hosts: Collection[str] = (), allowed_origins: Collection[str] = ()):
        self.allowed_hosts = frozenset(allowed_hosts)
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        if self.allowed_origins:
            # Chrome asks a loopback server before a page elsewhere may call it (Private Network Access).
            private_network: dict[str, Any] = {"allow_private_network": True} if _PRIVATE_NETWORK else {}
            app = CORSMiddleware(
                app,
                allow_origins=sorted(self.allowed_origins),
                allow_methods=["GET", "POST", "HEAD"],
                allow_headers=["content-type", "content-encoding"],
                **private_network,
            )
        self.app = app
        self._refused: set[str] = set()
        self._refused_count = 0
        self._lock = threading.Lock()

    def _origin_allowed(self, origin: str) -> bool:
        origin = origin.rstrip("/").lower()
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        # A page served from a name this server answers to is same-site (the page itself, or a
        # proxy in front of it such as the Jaeger UI's dev server on another loopback port).
        parts = urllib.parse.urlsplit(origin)
        return parts.scheme in ("http", "https") and host_allowed(parts.hostname or "", self.allowed_hosts)

    def _refusal(self, what: str, value: str, name: str) -> bytes:
        """Count a refusal, log it the first time for ``name`` (at most 8 names), return the 403's one-line body."""
        shown = value[:100].encode("ascii", "backslashreplace").decode()
        name = name[:100].encode("ascii", "backslashreplace").decode()
        with self._lock:
            self._refused_count += 1
            first = name not in self._refused and len(self._refused) < _LOGGED_REFUSALS
            if first:
                self._refused.add(name)
            last = len(self._refused) == _LOGGED_REFUSALS
        flag = "--allow-host" if what == "Host" else "--allow-origin"
        if first:
            _log.warning(
                "otel-corr serve: refused a request with %s %r (%s); to serve it, pass %s %s%s",
                what,
                shown,
                "not a name of this machine" if what == "Host" else "a page on another site",
                flag,
                name or "''",
                " (further refused names are not logged)" if last else "",
            )
        return f"{what} {shown!r} is not served here: pass {flag} to otel-corr serve to allow it\n".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host_header = headers.get("host", "")
        name = _hostname(host_header)
        refusal = None
        if name is None or not host_allowed(name, self.allowed_hosts):
            refusal = self._refusal("Host", host_header, name or host_header)
        else:
            origin = headers.get("origin")
            # "null" too: a sandboxed frame of any page sends it.
            if origin is not None and not self._origin_allowed(origin):
                refusal = self._refusal("Origin", origin, origin)
        if refusal is not None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(refusal)).encode()),
                        *_HEADERS,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": refusal})
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
