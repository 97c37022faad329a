"""The pure ASGI middleware: one request, top to bottom.

Per-request state lives in locals of ``__call__`` (the instance is shared by
every concurrent request).  The context is attached with a token and detached
in ``finally``, so on one keep-alive connection request 2 never sees request
1's IDs.  Headers are added by wrapping ``send``; an exception that escapes
before the response started gets a 500 *with* the IDs before it is re-raised
to the server, which logs it as usual.
"""

from __future__ import annotations

import logging
from typing import Unpack

from opentelemetry import context as otel_context

from ._provider import ensure_tracer_provider, flush
from ._request import Runtime, finish_span
from ._settings import Options, resolve_settings
from ._types import ASGIApp, Message, Receive, Scope, Send
from .logging import stop_queue
from .logging._access import access_enabled, log_access, log_error, request_summary, start_time

__all__ = ["CorrelationMiddleware"]

_log = logging.getLogger("otel_corr")
_MARK = "otel_corr.request_id"
_RESPONSE_START = frozenset({"http.response.start", "websocket.http.response.start", "websocket.accept"})
_ERROR_BODY = b"Internal Server Error"


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else ""


def _route(scope: Scope, root_path: str) -> str | None:
    route = scope.get("route")
    path_format = getattr(route, "path_format", None)
    if not isinstance(path_format, str):
        return None
    # Mount prefixes below the app's own root_path (a proxy prefix is not part of the route).
    prefix = str(scope.get("root_path", ""))[len(root_path) :].rstrip("/")
    if hasattr(route, "routes") and not hasattr(route, "endpoint"):  # a Mount with no inner route
        return prefix or "/"
    return (prefix + path_format) or "/"


class CorrelationMiddleware:
    """Give every HTTP request and websocket one server span and one request ID.

    Usually added for you by :func:`otel_corr.instrument`; use it directly to
    wrap any ASGI callable yourself::

        app = CorrelationMiddleware(app, header_name="X-Correlation-ID")

    Args:
        app: the ASGI application to wrap.
        **options: the keyword arguments of :func:`otel_corr.instrument`.

    .. versionadded:: 0.1
    """

    __slots__ = ("app", "runtime")

    def __init__(self, app: ASGIApp, runtime: Runtime | None = None, **options: Unpack[Options]) -> None:
        self.app = app
        if runtime is None:
            settings = resolve_settings(options)
            runtime = Runtime(settings, ensure_tracer_provider(settings))
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope_type not in ("http", "websocket") or _MARK in scope:
            await self.app(scope, receive, send)
            return
        start = start_time()
        rt = self.runtime
        s = rt.settings
        carrier: dict[str, str] = {}
        wanted = rt.wanted_headers()  # None: every header (capture is configured)
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
        scheme = scope.get("scheme") or ("ws" if scope_type == "websocket" else "http")
        path = scope.get("path", "")
        root_path = scope.get("root_path", "")
        query = scope.get("query_string", b"").decode("latin-1")
        if s.excluded_urls is not None:
            host = carrier.get("host", "")
            url = f"{scheme}://{host}{root_path}{path}" + (f"?{query}" if query else "")
            if s.excluded_urls.search(url):
                await self.app(scope, receive, send)
                return

        method = scope.get("method", "GET")
        attributes = rt.request_attributes(
            scheme=scheme,
            path=path,
            query=query,
            host=carrier.get("host"),
            server=scope.get("server"),
            client=scope.get("client"),
            user_agent=carrier.get("user-agent"),
            protocol=scope.get("http_version"),
        )
        if s.capture_request_headers is not None:
            attributes.update(rt.header_attributes("http.request.header.", carrier, s.capture_request_headers))
        span, request_id, token = rt.begin(carrier, method, attributes)
        try:
            header_key = rt.header_bytes
            encoded_id = request_id.encode("latin-1")
            scope[_MARK] = request_id
            if s.update_request_header and (sent := carrier.get(s.header_key)) != request_id:
                # A new list, never the server's own: only drop the rejected header if there was one.
                headers = scope["headers"]
                if sent is not None:
                    headers = [(k, v) for k, v in headers if k.lower() != header_key]
                scope["headers"] = [*headers, (header_key, encoded_id)]
            extra = [(header_key, encoded_id)]
            if s.trace_response:
                extra.append((b"traceresponse", rt.trace_response(span).encode("latin-1")))
            drop = rt.response_header_names
        except BaseException:
            finish_span(span, None, None, method, None)
            otel_context.detach(token)
            raise
        status: int | None = None
        failure: BaseException | None = None
        done = False
        capture_response = s.capture_response_headers

        def complete() -> None:
            # The request is over for the client: access line and span end here, once.
            # Work the app does after this (BackgroundTasks) still runs in the request's
            # context, but does not stretch the request span.
            nonlocal done
            done = True
            try:
                if access_enabled(s.access_log):
                    target = f"{path}?{attributes['url.query']}" if query else path
                    log_access(method, target, status, start, _client(scope), carrier.get("user-agent"))
            finally:
                finish_span(span, status, _route(scope, root_path), method, failure)

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            message_type = message["type"]
            if message_type in _RESPONSE_START:
                status = message.get("status", 101 if message_type == "websocket.accept" else None)
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in drop]
                if capture_response is not None:
                    names = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
                    span.set_attributes(rt.header_attributes("http.response.header.", names, capture_response))
                headers.extend(extra)
                message = {**message, "headers": headers}
            await send(message)
            # A 5xx waits for the app to return: Starlette sends its 500 *before* re-raising,
            # and the span should record that exception.
            if (
                message_type == "http.response.body"
                and not message.get("more_body", False)
                and not done
                and (status or 0) < 500
            ):
                complete()

        try:
            await self.app(scope, receive, send_with_ids)
        except Exception as exc:
            failure = exc
            if s.error_log:
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
                log_error(exc, request_summary(method, path, query, headers, _client(scope), s.header_key))
            if status is None and scope_type == "http":
                await self._send_500(send_with_ids)
            raise
        finally:
            try:
                if not done:
                    complete()
            finally:
                otel_context.detach(token)

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
