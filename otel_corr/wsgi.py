"""The WSGI middleware: translate environ and ``start_response`` to the request core.

Everything a request decides (IDs, exclusions, headers dropped and added, error and access
lines) is in ``_request``; this module only reads the environ and wraps ``start_response``.

A WSGI application returns before its body is produced; a streaming response
is generated while the server iterates.  So the request's span stays open until
the server calls ``close()`` on what we return (the ``ClosingIterator`` pattern
of werkzeug), and its context is attached while the app runs, around each body
chunk and around ``close()``, and detached in between: a caller that never closes
the response (werkzeug's test client does not) is not left inside the request.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Unpack

from ._provider import ensure_tracer_provider
from ._request import Exchange, Runtime, start_time
from ._settings import Options, check_otel_environment, resolve_settings
from ._types import Environ, StartResponse, WSGIApp
from .logging._access import WSGI_SERVER_ERROR_LOGGERS, watch_server_errors

__all__ = ["CorrelationWSGIMiddleware"]

_log = logging.getLogger("otel_corr")
#: Set by framework hooks (Flask) so the span can be named after the matched route.
ROUTE_KEY = "otel_corr.route"
#: Set by framework hooks (Flask) with an exception the framework turned into a 500 itself.
EXCEPTION_KEY = "otel_corr.exception"


class _ClosingIterator:
    """Iterate the app's response; finish the request exactly once, on ``close()``."""

    __slots__ = ("_iterable", "_iterator", "_on_close", "_exchange")

    def __init__(
        self, iterable: Iterable[bytes], on_close: Callable[[BaseException | None], None], exchange: Exchange
    ) -> None:
        self._iterable = iterable
        self._on_close: Callable[[BaseException | None], None] | None = on_close
        self._exchange = exchange
        exchange.resume()
        try:
            self._iterator = iter(iterable)
        except Exception as exc:  # an iterable that fails at once: the request still ends, with it
            try:
                close = getattr(iterable, "close", None)
                if close is not None:
                    close()
            finally:
                self._finish(exc)
            raise
        finally:
            exchange.suspend()

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        ex = self._exchange
        ex.resume()  # a generator's body runs inside the request
        try:
            return next(self._iterator)
        except StopIteration:
            raise
        except Exception as exc:
            self._finish(exc)
            raise
        finally:
            ex.suspend()

    def _finish(self, exc: BaseException | None) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(exc)

    def close(self) -> None:
        self._exchange.resume()
        failed: BaseException | None = None
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        except Exception as exc:  # a generator whose cleanup raised: the request failed
            failed = exc
            raise
        finally:
            self._finish(failed)


def _all_headers(environ: Environ) -> dict[str, str]:
    """Every request header, lower-case names (as an ASGI scope lists them)."""
    headers = {k[5:].lower().replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_")}
    # PEP 3333 keeps these two without the HTTP_ prefix; they are headers all the same.
    for key, name in (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length")):
        if environ.get(key):
            headers[name] = environ[key]
    return headers


def _environ_keys(wanted: frozenset[bytes]) -> tuple[tuple[str, str], ...]:
    """``(header name, environ key)`` for each wanted header."""
    names = sorted(name.decode("latin-1") for name in wanted)
    return tuple((name, "HTTP_" + name.upper().replace("-", "_")) for name in names)


class CorrelationWSGIMiddleware:
    """Give every WSGI request one server span and one request ID.

    Usually added for you by :func:`otel_corr.instrument` (which wraps
    ``app.wsgi_app`` for Flask); use it directly around any WSGI callable.

    Args:
        app: the WSGI application to wrap.
        **options: the keyword arguments of :func:`otel_corr.instrument`.

    Raises:
        ConfigError: an option or an ``OTEL_*`` variable has a value otel-corr cannot use.

    .. versionadded:: 0.1
    """

    __slots__ = ("app", "runtime", "_keys")

    def __init__(self, app: WSGIApp, runtime: Runtime | None = None, **options: Unpack[Options]) -> None:
        self.app = app
        if runtime is None:
            check_otel_environment()
            settings = resolve_settings(options)
            runtime = Runtime(settings, ensure_tracer_provider(settings))
        self.runtime = runtime
        if runtime.settings.error_log:
            for name in WSGI_SERVER_ERROR_LOGGERS:  # one error, one line: see logging._access
                watch_server_errors(name, "wsgi (instrument(app))")
        # Only the headers someone reads are copied out of the environ: derived from the
        # runtime's wanted names, again whenever those change (the global propagator did).
        self._keys: tuple[frozenset[bytes] | None, tuple[tuple[str, str], ...]] = (None, ())

    def _carrier(self, environ: Environ) -> dict[str, str]:
        wanted = self.runtime.wanted_headers()
        if wanted is None:  # headers are captured: all of them
            return _all_headers(environ)
        seen, keys = self._keys
        if wanted is not seen:
            keys = _environ_keys(wanted)
            self._keys = (wanted, keys)  # one tuple: a concurrent reader sees old or new, never half
        return {name: environ[key] for name, key in keys if key in environ}

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        started = start_time()
        rt = self.runtime
        get = environ.get
        port = get("SERVER_PORT", "")
        remote_port = str(get("REMOTE_PORT", ""))
        remote_addr = get("REMOTE_ADDR")
        ex = rt.start(
            self._carrier(environ),
            method=get("REQUEST_METHOD", "GET"),
            scheme=get("wsgi.url_scheme", "http"),
            path=get("SCRIPT_NAME", "") + get("PATH_INFO", ""),
            query=get("QUERY_STRING", ""),
            server=(get("SERVER_NAME", ""), int(port) if port.isdigit() else None),
            client=(remote_addr, int(remote_port) if remote_port.isdigit() else None) if remote_addr else None,
            protocol=str(get("SERVER_PROTOCOL", "")).removeprefix("HTTP/") or None,
            started=started,
        )
        if ex is None:  # an excluded URL
            return self.app(environ, start_response)
        environ["otel_corr.request_id"] = ex.request_id
        if rt.settings.update_request_header:
            environ["HTTP_" + rt.settings.header_key.upper().replace("-", "_")] = ex.request_id

        def start_response_with_ids(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            code = status_line[:3]
            headers = ex.response_headers(int(code) if code.isdigit() else None, headers)
            if exc_info is not None:
                return start_response(status_line, headers, exc_info)
            return start_response(status_line, headers)

        def finish(exc: BaseException | None) -> None:
            exc = exc or environ.get(EXCEPTION_KEY)
            try:
                ex.complete(environ.get(ROUTE_KEY), exc, _all_headers(environ) if exc is not None else None)
            finally:
                ex.close()

        try:
            iterable = self.app(environ, start_response_with_ids)
        except Exception as exc:
            # Answer with a 500 that carries the IDs (the server's own would not); the
            # error line is written by finish(), or here if the app switched it off.
            if not rt.settings.error_log:
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
        ex.suspend()
        return _ClosingIterator(iterable, finish, ex)
