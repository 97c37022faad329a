"""The WSGI middleware: the span and the context end when the response iterable is closed.

A WSGI application returns before its body is produced; a streaming response
is generated while the server iterates.  So the request's context stays
attached, and its span open, until the server calls ``close()`` on what we
return (the ``ClosingIterator`` pattern of werkzeug), which every compliant
server does in the thread that served the request.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Unpack

from opentelemetry import context as otel_context

from ._provider import ensure_tracer_provider
from ._request import Runtime, finish_span
from ._settings import Options, resolve_settings
from ._types import Environ, StartResponse, WSGIApp
from .logging._access import access_enabled, log_access, log_error, request_summary, start_time

__all__ = ["CorrelationWSGIMiddleware"]

_log = logging.getLogger("otel_corr")
#: Set by framework hooks (Flask) so the span can be named after the matched route.
ROUTE_KEY = "otel_corr.route"
#: Set by framework hooks (Flask) with an exception the framework turned into a 500 itself.
EXCEPTION_KEY = "otel_corr.exception"


class _ClosingIterator:
    """Iterate the app's response; finish the request exactly once, on ``close()``."""

    __slots__ = ("_iterable", "_iterator", "_on_close")

    def __init__(self, iterable: Iterable[bytes], on_close: Callable[[BaseException | None], None]) -> None:
        self._iterable = iterable
        self._iterator = iter(iterable)
        self._on_close: Callable[[BaseException | None], None] | None = on_close

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._iterator)
        except StopIteration:
            raise
        except Exception as exc:
            self._finish(exc)
            raise

    def _finish(self, exc: BaseException | None) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(exc)

    def close(self) -> None:
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        finally:
            self._finish(None)


class CorrelationWSGIMiddleware:
    """Give every WSGI request one server span and one request ID.

    Usually added for you by :func:`otel_corr.instrument` (which wraps
    ``app.wsgi_app`` for Flask); use it directly around any WSGI callable.

    Args:
        app: the WSGI application to wrap.
        **options: the keyword arguments of :func:`otel_corr.instrument`.

    .. versionadded:: 0.1
    """

    __slots__ = ("app", "runtime", "_keys")

    def __init__(self, app: WSGIApp, runtime: Runtime | None = None, **options: Unpack[Options]) -> None:
        self.app = app
        if runtime is None:
            settings = resolve_settings(options)
            runtime = Runtime(settings, ensure_tracer_provider(settings))
        self.runtime = runtime
        from opentelemetry import propagate

        # Only the headers someone reads are copied out of the environ.
        names = {*propagate.get_global_textmap().fields, runtime.settings.header_key}
        self._keys = tuple((name, "HTTP_" + name.upper().replace("-", "_")) for name in sorted(names))

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start = start_time()
        rt = self.runtime
        s = rt.settings
        get = environ.get
        if s.capture_request_headers is not None:
            carrier = {k[5:].lower().replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_")}
        else:
            carrier = {name: get(key) for name, key in self._keys if key in environ}
        scheme = get("wsgi.url_scheme", "http")
        path = get("PATH_INFO", "")
        root_path = get("SCRIPT_NAME", "")
        query = get("QUERY_STRING", "")
        host = get("HTTP_HOST")
        if s.excluded_urls is not None:
            url = f"{scheme}://{host or ''}{root_path}{path}" + (f"?{query}" if query else "")
            if s.excluded_urls.search(url):
                return self.app(environ, start_response)

        method = get("REQUEST_METHOD", "GET")
        port = get("SERVER_PORT", "")
        remote_port = str(get("REMOTE_PORT", ""))
        remote_addr = get("REMOTE_ADDR")
        attributes = rt.request_attributes(
            scheme=scheme,
            path=root_path + path,
            query=query,
            host=host,
            server=(get("SERVER_NAME", ""), int(port) if port.isdigit() else None),
            client=(remote_addr, int(remote_port)) if remote_port.isdigit() and remote_addr else None,
            user_agent=get("HTTP_USER_AGENT"),
            protocol=str(get("SERVER_PROTOCOL", "")).removeprefix("HTTP/") or None,
        )
        if s.capture_request_headers is not None:
            attributes.update(rt.header_attributes("http.request.header.", carrier, s.capture_request_headers))
        span, request_id, token = rt.begin(carrier, method, attributes)
        environ["otel_corr.request_id"] = request_id
        if s.update_request_header:
            environ["HTTP_" + s.header_key.upper().replace("-", "_")] = request_id
        extra = [(s.header_name, request_id)]
        if s.trace_response:
            extra.append(("traceresponse", rt.trace_response(span)))
        drop = {s.header_key, "traceresponse"}
        status: int | None = None
        capture_response = s.capture_response_headers

        def start_response_with_ids(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal status
            code = status_line[:3]
            status = int(code) if code.isdigit() else None
            headers = [(k, v) for k, v in headers if k.lower() not in drop]
            if capture_response is not None:
                names = {k.lower(): v for k, v in headers}
                span.set_attributes(rt.header_attributes("http.response.header.", names, capture_response))
            headers.extend(extra)
            if exc_info is not None:
                return start_response(status_line, headers, exc_info)
            return start_response(status_line, headers)

        finished = False
        client = f"{remote_addr}:{remote_port}" if remote_addr else ""

        def finish(exc: BaseException | None) -> None:
            nonlocal finished
            if finished:
                return
            finished = True
            exc = exc or environ.get(EXCEPTION_KEY)
            try:
                if exc is not None and s.error_log:
                    headers = {k[5:].lower().replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_")}
                    log_error(exc, request_summary(method, root_path + path, query, headers, client, s.header_key))
                if access_enabled(s.access_log):
                    target = root_path + path + (f"?{attributes['url.query']}" if query else "")
                    log_access(method, target, status, start, client, get("HTTP_USER_AGENT"))
            finally:
                try:
                    finish_span(span, status, environ.get(ROUTE_KEY), method, exc)
                finally:
                    otel_context.detach(token)

        try:
            iterable = self.app(environ, start_response_with_ids)
        except Exception as exc:
            # Answer with a 500 that carries the IDs (the server's own would not); the
            # error line is written by finish(), or here if the app switched it off.
            if not s.error_log:
                _log.error("Exception in WSGI application", exc_info=True)
            try:
                start_response_with_ids(
                    "500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")], sys.exc_info()
                )
            except Exception:
                finish(exc)
                raise
            finish(exc)
            return [b"Internal Server Error"]
        except BaseException as exc:
            finish(exc)
            raise
        return _ClosingIterator(iterable, finish)
