"""Outbound HTTP: httpx (sync and async), requests, aiohttp each send ``traceparent``
(+ ``tracestate``, ``baggage``) and the request ID, and make one CLIENT span per request.

Why our own wrappers rather than OpenTelemetry's contrib instrumentations:
those pin ``opentelemetry-instrumentation`` to one exact beta, which lags the
SDK (``opentelemetry-instrumentation-aiohttp-client`` has no release matching
SDK 1.45.2: pip reports *ResolutionImpossible* or downgrades the SDK), and
contrib's httpx wrapper only sees ``HTTPTransport``, not mounted or custom
transports.  If a contrib instrumentation is already active for a library we
leave that library to it -- it injects through the global propagator, which
carries the request ID too -- so a request never gets two client spans.

Spans follow the stable HTTP client conventions: name ``{method}``,
``http.request.method``, ``url.full`` (credentials and sensitive query values
redacted), ``server.address``, ``server.port``, ``http.response.status_code``,
``error.type``; error status for 4xx/5xx and exceptions.  Nothing happens outside a request or
trace, or when instrumentation is suppressed (the OTLP exporter's own requests).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import _compat, _patches
from .._context import get_request_id
from .._redact import redact_query, sensitive_pattern
from ._import_hooks import when_imported
from ._tracing import tracer

__all__ = ["install", "uninstall"]

_SUPPRESS = _compat.SUPPRESS_INSTRUMENTATION_KEY
_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"})
_SENSITIVE_QUERY = sensitive_pattern("sig")  # + signed-URL parameters (sig, signature, X-Amz-Signature...)


def _skip() -> bool:
    """Leave the call alone when instrumentation is suppressed (the exporter's own requests) or
    when it is made outside any trace: a script's or health checker's calls stay untraced."""
    ctx = otel_context.get_current()
    if _SUPPRESS is not None and ctx.get(_SUPPRESS):
        return True
    return not trace.get_current_span(ctx).get_span_context().is_valid and get_request_id(ctx) is None


def _tracer() -> trace.Tracer:
    return tracer("otel_corr.http_client")


def _redact(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "[unparseable URL]"
    netloc = parts.netloc.rpartition("@")[2] if "@" in parts.netloc else parts.netloc
    query = redact_query(parts.query, _SENSITIVE_QUERY) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _start(method: str, url: str, host: str | None, port: int | None, headers: Any) -> trace.Span:
    """Start the CLIENT span and write traceparent (+ tracestate, baggage, X-Request-ID) into ``headers``."""
    method = method.upper()
    known = method in _METHODS
    attributes: dict[str, Any] = {"http.request.method": method if known else "_OTHER", "url.full": _redact(url)}
    if not known:
        attributes["http.request.method_original"] = method[:32]
    if host:
        attributes["server.address"] = host
    if port:
        attributes["server.port"] = port
    span = _tracer().start_span(method if known else "HTTP", kind=SpanKind.CLIENT, attributes=attributes)
    propagate.inject(headers, context=trace.set_span_in_context(span))
    return span


def _finish(span: trace.Span, status: int | None, exc: BaseException | None) -> None:
    attributes: dict[str, Any] = {}
    if status is not None:
        attributes["http.response.status_code"] = status
        if status >= 400:
            attributes["error.type"] = str(status)
            span.set_status(Status(StatusCode.ERROR))
    if exc is not None:
        span.record_exception(exc)
        attributes["error.type"] = type(exc).__qualname__
        span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
    span.set_attributes(attributes)
    span.end()


def _default_port(scheme: str, port: int | None) -> int | None:
    return port if port is not None else {"http": 80, "https": 443}.get(scheme)


# --- httpx: per hop (redirects included), any transport -----------------------------------


def _httpx_start(request: Any) -> trace.Span:
    url = request.url
    return _start(request.method, str(url), url.host, _default_port(url.scheme, url.port), request.headers)


def _httpx_sync(original: Any) -> Any:
    def _send_single_request(self: Any, request: Any, **kwargs: Any) -> Any:
        if _skip():
            return original(self, request, **kwargs)
        span = _httpx_start(request)
        try:
            response = original(self, request, **kwargs)
        except BaseException as exc:
            _finish(span, None, exc)
            raise
        _finish(span, response.status_code, None)
        return response

    return _send_single_request


def _httpx_async(original: Any) -> Any:
    async def _send_single_request(self: Any, request: Any, **kwargs: Any) -> Any:
        if _skip():
            return await original(self, request, **kwargs)
        span = _httpx_start(request)
        try:
            response = await original(self, request, **kwargs)
        except BaseException as exc:
            _finish(span, None, exc)
            raise
        _finish(span, response.status_code, None)
        return response

    return _send_single_request


# --- requests: Session.send is called once per hop ----------------------------------------


def _requests_send(original: Any) -> Any:
    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        if _skip():
            return original(self, request, **kwargs)
        parts = urlsplit(request.url or "")
        port = _default_port(parts.scheme, parts.port)
        span = _start(request.method or "GET", request.url or "", parts.hostname, port, request.headers)
        try:
            response = original(self, request, **kwargs)
        except BaseException as exc:
            _finish(span, None, exc)
            raise
        _finish(span, response.status_code, None)
        return response

    return send


# --- aiohttp: a TraceConfig added to every ClientSession -----------------------------------


def _aiohttp_trace_config() -> Any:
    import aiohttp

    async def on_start(session: Any, ctx: Any, params: Any) -> None:
        if _skip():
            ctx.otel_corr_span = None
            return
        url = params.url
        ctx.otel_corr_span = _start(params.method, str(url), url.host, url.port, params.headers)

    async def on_end(session: Any, ctx: Any, params: Any) -> None:
        span = getattr(ctx, "otel_corr_span", None)
        if span is not None:
            _finish(span, params.response.status, None)

    async def on_exception(session: Any, ctx: Any, params: Any) -> None:
        span = getattr(ctx, "otel_corr_span", None)
        if span is not None:
            _finish(span, None, params.exception)

    config = aiohttp.TraceConfig()
    config.on_request_start.append(on_start)
    config.on_request_end.append(on_end)
    config.on_request_exception.append(on_exception)
    return config


def _aiohttp_init(original: Any) -> Any:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        configs = list(kwargs.get("trace_configs") or ())
        configs.append(_aiohttp_trace_config())
        kwargs["trace_configs"] = configs
        original(self, *args, **kwargs)

    return __init__


_BY = "propagation._http_clients (propagate={})"


def _contrib_active(current: Any) -> bool:
    """OpenTelemetry contrib wraps with ``wrapt`` (an ObjectProxy); Sentry's plain ``functools.wraps``
    wrapper also has ``__wrapped__`` but injects no traceparent, so ours still goes in (inside it)."""
    return any(c.__name__ == "ObjectProxy" for c in type(current).__mro__)


def _patch(library: str, owner: Any, name: str, make: Any) -> None:
    if _contrib_active(getattr(owner, name)):  # contrib's instrumentation is there: leave it the library
        return
    _patches.replace(
        owner, name, make, what="one CLIENT span; sends traceparent and the request ID", by=_BY.format(library)
    )


def _patch_httpx(httpx: Any) -> None:
    name = _compat.httpx_send(httpx.Client)
    _patch("httpx", httpx.Client, name, _httpx_sync)
    _patch("httpx", httpx.AsyncClient, name, _httpx_async)


def _patch_requests(requests: Any) -> None:
    _patch("requests", requests.Session, "send", _requests_send)


def _patch_aiohttp(aiohttp: Any) -> None:
    _patch("aiohttp", aiohttp.ClientSession, "__init__", _aiohttp_init)


_PATCHERS = {"httpx": _patch_httpx, "requests": _patch_requests, "aiohttp": _patch_aiohttp}


def install(libraries: set[str]) -> None:
    """Wrap the named libraries now if imported, else when they are first imported (never importing them)."""
    for name in sorted(libraries & _PATCHERS.keys()):
        when_imported(name, _PATCHERS[name])


def uninstall() -> None:
    _patches.undo_where(_BY.partition("(")[0])
