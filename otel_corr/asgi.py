"""The pure ASGI middleware: translate scope, ``receive`` and ``send`` to the request core.

Everything a request decides (IDs, exclusions, headers dropped and added, error and access
lines) is in ``_request``; this module only reads the scope and wraps ``send``.  Per-request
state lives in the :class:`~otel_corr._request.Exchange` and locals of ``__call__`` (the
instance is shared by every concurrent request); ``send`` is wrapped by a closure, which
costs less per request than an object with ``__call__``.  The context is attached with a token and
detached in ``finally``, so on one keep-alive connection request 2 never sees request 1's
IDs.  An exception that escapes before the response started gets a 500 *with* the IDs before
it is re-raised to the server, which logs it as usual.
"""

from __future__ import annotations

import logging
from typing import Unpack

from ._provider import ensure_tracer_provider, flush
from ._request import Runtime, start_time
from ._settings import Options, check_otel_environment, resolve_settings
from ._types import ASGIApp, Message, Receive, Scope, Send
from .logging import stop_queue
from .logging._access import ASGI_SERVER_ERROR_LOGGERS, watch_server_errors
from .wsgi import EXCEPTION_KEY, ROUTE_KEY

__all__ = ["CorrelationMiddleware"]

_log = logging.getLogger("otel_corr")
_MARK = "otel_corr.request_id"
_RESPONSE_START = frozenset({"http.response.start", "websocket.http.response.start", "websocket.accept"})
_ERROR_BODY = b"Internal Server Error"


def _carrier(scope: Scope, wanted: frozenset[bytes] | None) -> dict[str, str]:
    """The request headers someone reads (all when ``wanted`` is None), lower-case names."""
    carrier: dict[str, str] = {}
    for raw_key, raw_value in scope["headers"]:
        # ASGI servers lower-case names; be safe with those that do not.  The names in
        # wanted are lower-case, so a name found there needs no check.
        if wanted is None or raw_key not in wanted:
            if not raw_key.islower():
                raw_key = raw_key.lower()
            if wanted is not None and raw_key not in wanted:
                continue
        key = raw_key.decode("latin-1")
        value = raw_value.decode("latin-1")
        carrier[key] = f"{carrier[key]},{value}" if key in carrier else value
    return carrier


def _all_headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _route(scope: Scope, root_path: str) -> str | None:
    named = scope.get(ROUTE_KEY)  # set by framework glue (Django) that knows the matched route
    if named is not None:
        return str(named)
    route = scope.get("route")
    path_format = getattr(route, "path_format", None)
    if not isinstance(path_format, str):
        return None
    # Mount prefixes below the app's own root_path (a proxy prefix is not part of the route).
    prefix = str(scope.get("root_path", ""))[len(root_path) :].rstrip("/")
    if hasattr(route, "routes") and not hasattr(route, "endpoint"):  # a Mount with no inner route
        return prefix or "/"
    return (prefix + path_format) or "/"


def _write_back(scope: Scope, header: bytes, sent: str | None, request_id: str) -> None:
    """Put the chosen request ID in the request's headers, for the app to read."""
    # A new list, never the server's own: only drop the rejected header if there was one.
    headers = scope["headers"]
    if sent is not None:
        headers = [(k, v) for k, v in headers if k.lower() != header]
    scope["headers"] = [*headers, (header, request_id.encode("latin-1"))]


class CorrelationMiddleware:
    """Give every HTTP request and websocket one server span and one request ID.

    Usually added for you by :func:`otel_corr.instrument`; use it directly to
    wrap any ASGI callable yourself::

        app = CorrelationMiddleware(app, header_name="X-Correlation-ID")

    Args:
        app: the ASGI application to wrap.
        **options: the keyword arguments of :func:`otel_corr.instrument`.

    Raises:
        ConfigError: an option or an ``OTEL_*`` variable has a value otel-corr cannot use.

    .. versionadded:: 0.1
    """

    __slots__ = ("app", "runtime")

    def __init__(self, app: ASGIApp, runtime: Runtime | None = None, **options: Unpack[Options]) -> None:
        self.app = app
        if runtime is None:
            check_otel_environment()
            settings = resolve_settings(options)
            runtime = Runtime(settings, ensure_tracer_provider(settings))
        self.runtime = runtime
        if runtime.settings.error_log:
            for name in ASGI_SERVER_ERROR_LOGGERS:  # one error, one line: see logging._access
                watch_server_errors(name, "asgi (instrument(app))")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope_type not in ("http", "websocket") or _MARK in scope:
            await self.app(scope, receive, send)
            return
        started = start_time()
        rt = self.runtime
        carrier = _carrier(scope, rt.wanted_headers())
        sent = carrier.get(rt.settings.header_key)
        ex = rt.start(
            carrier,
            method=scope.get("method", "GET"),
            scheme=scope.get("scheme") or ("ws" if scope_type == "websocket" else "http"),
            path=scope.get("path", ""),
            query=scope.get("query_string", b"").decode("latin-1"),
            server=scope.get("server"),
            client=scope.get("client"),
            protocol=scope.get("http_version"),
            started=started,
        )
        if ex is None:  # an excluded URL
            await self.app(scope, receive, send)
            return
        root_path = scope.get("root_path", "")

        async def send_with_ids(message: Message) -> None:
            # Our headers on the response start; the state it shares with the code below (the
            # status, whether the request is complete) lives on the Exchange, not in nonlocals.
            message_type = message["type"]
            if message_type in _RESPONSE_START:
                status = message.get("status", 101 if message_type == "websocket.accept" else None)
                message = {**message, "headers": ex.raw_response_headers(status, message.get("headers", ()))}
            await send(message)
            # The request is over for the client: access line and span end here, once.  Work the
            # app does after this (BackgroundTasks) still runs in the request's context, but does
            # not stretch the request span.  A 5xx waits for the app to return: Starlette sends
            # its 500 *before* re-raising, and the span should record that exception.
            if message_type == "http.response.body" and not message.get("more_body", False) and (ex.status or 0) < 500:
                ex.complete(_route(scope, root_path))

        try:
            scope[_MARK] = ex.request_id
            if rt.settings.update_request_header and sent != ex.request_id:
                _write_back(scope, rt.header_bytes, sent, ex.request_id)
            await self.app(scope, receive, send_with_ids)
        except Exception as exc:
            if ex.status is None and scope_type == "http":
                await self._send_500(send_with_ids)
            ex.complete(_route(scope, root_path), exc, _all_headers(scope), reraised=True)
            raise
        finally:
            try:
                if not ex.completed:
                    # An exception the framework answered with its own 500 (Django), set by its glue.
                    handled = scope.get(EXCEPTION_KEY)
                    ex.complete(_route(scope, root_path), handled, _all_headers(scope) if handled is not None else None)
            finally:
                ex.close()

    @staticmethod
    async def _send_500(send: Send) -> None:
        # The server would send its own 500 without our headers; send one with them.
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(_ERROR_BODY)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _ERROR_BODY})
        except Exception:  # the client may be gone; the original error matters more
            _log.debug("otel-corr: could not send the 500 response", exc_info=True)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass lifespan through untouched, flushing queued spans at shutdown.

        Why here: uvicorn re-raises SIGTERM after its graceful shutdown, so
        ``atexit`` handlers (and the SDK's own flush) never run.  The flush
        happens before ``lifespan.shutdown.complete`` is passed on, while the
        server still waits for us; it is bounded by ``shutdown_timeout``.
        """
        timeout = self.runtime.settings.shutdown_timeout

        async def send_and_flush(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                flush(timeout)
                stop_queue()
            await send(message)

        await self.app(scope, receive, send_and_flush)
