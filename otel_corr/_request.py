"""What happens at the start and end of every request, shared by the ASGI and WSGI middlewares.

:class:`Runtime` is built once per instrumented application and never mutated
afterwards; everything that belongs to one request lives in locals of
:meth:`Runtime.begin`'s caller.  The per-request path is written for speed:
one pass over the headers (done by the caller), one propagator extract, one
span, one context attach.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Mapping
from contextvars import Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from . import _compat
from ._context import hex_ids, request_context, seed_hex_ids
from ._ids import (
    REQUEST_ID_ATTRIBUTE,
    format_trace_id,
    is_safe_header_value,
    is_valid_request_id,
    trace_id_of,
)
from ._redact import redact_query
from ._settings import Settings
from ._span import RequestSpan, recorder_for
from ._version import __version__

__all__ = ["Runtime", "finish_span"]

_log = logging.getLogger("otel_corr")
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"
_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"})


def _split_host(host: str) -> tuple[str, int | None]:
    """Split a Host header into address and port; never raises."""
    if host.startswith("["):  # an IPv6 literal: [::1]:8000
        end = host.find("]")
        address = host[1:end] if end > 0 else host
        port = host[end + 2 :] if end > 0 and host[end + 1 : end + 2] == ":" else ""
    else:
        address, _, port = host.partition(":")
    return address[:255], int(port) if port.isdigit() and len(port) <= 5 else None


def _extract_triggers(propagator: TextMapPropagator) -> frozenset[str] | None:
    """Headers without which ``propagator.extract`` returns its context untouched; ``None``: unknown.

    Why: most requests carry no traceparent or baggage, and extracting from them still costs
    a call chain per propagator.  Only the API's own W3C propagators (exact classes, alone or
    in the API's composite) are known to read nothing else; any other propagator, or a composite
    whose members cannot be read (``_compat.composite_members``), always runs.
    """
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    inner = _compat.composite_members(propagator)
    if inner is None:
        return None
    known: dict[type, str] = {TraceContextTextMapPropagator: "traceparent", W3CBaggagePropagator: "baggage"}
    names = [known.get(type(p)) for p in inner]
    return None if None in names else frozenset(n for n in names if n is not None)


class Runtime:
    """The immutable per-application part of request handling."""

    __slots__ = (
        "settings",
        "tracer",
        "header_bytes",
        "response_header_names",
        "_recorder",
        "_forcing",
        "_seen",
        "_propagator",
        "_triggers",
        "_wanted",
        "_hosts",
    )

    def __init__(self, settings: Settings, provider: trace.TracerProvider) -> None:
        self.settings = settings
        self.header_bytes = settings.header_key.encode("latin-1")
        # The response headers the middleware sets (any the app sent under these names are dropped).
        names = {self.header_bytes, b"traceresponse"} if settings.trace_response else {self.header_bytes}
        self.response_header_names = frozenset(names)
        self.tracer = provider.get_tracer("otel_corr", __version__, schema_url=_SCHEMA_URL)
        # With the SDK's tracer our server span is a RequestSpan (see _span.py): it takes the
        # trace ID we choose, so no parent is ever invented; any other tracer gets start_span.
        self._recorder = recorder_for(self.tracer, InstrumentationScope("otel_corr", __version__, _SCHEMA_URL))
        # Without it (the public path) the SDK's tracer.start_span takes our trace ID from its id_generator.
        self._forcing = None if self._recorder is not None else _compat.forcing_generator(self.tracer)
        self._seen: object = None
        self._propagator = propagate.get_global_textmap()
        self._triggers: frozenset[str] | None = None
        self._wanted: frozenset[bytes] | None = None
        self._hosts: dict[str, tuple[str, int | None]] = {}

    def wanted_headers(self) -> frozenset[bytes] | None:
        """The header names a request needs decoded (``None``: all, when headers are captured)."""
        if self.settings.capture_request_headers is not None:
            return None
        self._server_propagator()
        return self._wanted

    def _server_propagator(self) -> Any:
        """The global propagator minus the request-ID one (the middleware reads that header itself)."""
        current = propagate.get_global_textmap()
        if current is not self._seen:
            from opentelemetry.propagators.composite import CompositePropagator

            from .propagation import RequestIdPropagator

            # Without readable members (the fallback) the composite runs whole: its request-ID
            # extract binds a value begin() replaces with the one it accepted.
            inner = _compat.composite_members(current)
            if inner is not None and any(isinstance(p, RequestIdPropagator) for p in inner):
                current = CompositePropagator([p for p in inner if not isinstance(p, RequestIdPropagator)])
            self._propagator = current
            self._triggers = _extract_triggers(current)
            self._seen = propagate.get_global_textmap()
            names = {*current.fields, self.settings.header_key, "host", "user-agent"}
            self._wanted = frozenset(n.lower().encode("latin-1") for n in names)
        return self._propagator

    def _extract(self, carrier: Mapping[str, str]) -> otel_context.Context:
        """The parent context the propagators find in ``carrier`` (an empty one when none)."""
        propagator = self._server_propagator()
        triggers = self._triggers
        if triggers is not None and triggers.isdisjoint(carrier):
            return otel_context.Context()  # what extract would return: nothing to read
        context: otel_context.Context = propagator.extract(carrier, otel_context.Context())
        return context

    def accept(self, raw: str) -> str | None:
        """The request ID to use for an incoming header value, or ``None`` if it is rejected."""
        s = self.settings
        if s.validator is None and s.transformer is None:
            return raw if is_valid_request_id(raw) else None
        if not is_safe_header_value(raw):
            return None
        try:
            ok = (s.validator or is_valid_request_id)(raw)
            value = s.transformer(raw) if ok and s.transformer is not None else raw
        except Exception:  # a user hook must never break the request
            _log.warning(
                "otel-corr: the request-ID validator or transformer raised; ignoring the header", exc_info=True
            )
            return None
        return value if ok and isinstance(value, str) and is_safe_header_value(value) else None

    def _generate(self) -> str | None:
        generator = self.settings.generator
        if generator is None:
            return None
        try:
            value = generator()
        except Exception:
            _log.warning("otel-corr: the request-ID generator raised; using the trace ID", exc_info=True)
            return None
        if isinstance(value, str) and is_safe_header_value(value):
            return value
        _log.warning("otel-corr: the request-ID generator returned an unusable value; using the trace ID")
        return None

    def begin(
        self, carrier: Mapping[str, str], method: str, attributes: dict[str, Any]
    ) -> tuple[trace.Span, str, Token[otel_context.Context]]:
        """Decide the IDs, start the server span and attach the request context.

        ``carrier`` maps lower-case header names to values.  Returns the span,
        the request ID and the context token the caller must detach.
        """
        raw = carrier.get(self.settings.header_key)
        request_id = None if raw is None else self.accept(raw)
        parent = self._extract(carrier)
        parent_sc = trace.get_current_span(parent).get_span_context() if parent else INVALID_SPAN_CONTEXT
        has_parent = parent_sc.is_valid
        rejected = []
        if raw is not None and request_id is None:
            rejected.append(f"{self.settings.header_name} header ({len(raw)} characters)")
        if not has_parent and "traceparent" in carrier:
            rejected.append(f"traceparent header ({len(carrier['traceparent'])} characters)")

        # The trace ID is decided here, before the span starts, so the request ID is known
        # up front and goes in with the other start attributes (samplers see them).
        forced = 0
        random_trace = False
        recorder = self._recorder
        trace_hex = None  # the request ID when it is the trace ID's hex (then not formatted again)
        if has_parent:
            if request_id is None:
                request_id = trace_hex = format_trace_id(parent_sc.trace_id)
        else:
            if request_id is None and self.settings.generator is not None:
                request_id = self._generate()
            if request_id is not None:
                forced = trace_id_of(request_id) or 0
            if not forced:
                random_trace = True
                generator = recorder.tracer.id_generator if recorder is not None else self._forcing
                if generator is not None:
                    forced = generator.generate_trace_id()
                    random_trace = _compat.is_trace_id_random(generator)
                else:
                    forced = random.getrandbits(128) or 1
            if request_id is None:
                request_id = trace_hex = format_trace_id(forced)
        attributes[REQUEST_ID_ATTRIBUTE] = request_id

        if method not in _METHODS:
            attributes["http.request.method_original"] = method[:32]
            method = "_OTHER"
        attributes["http.request.method"] = method
        name = "HTTP" if method == "_OTHER" else method
        if recorder is not None:
            span = recorder.start(name, parent, parent_sc, forced, random_trace, attributes)
        elif self._forcing is not None:
            span = self._forcing.start_span(self.tracer, name, parent, forced, random_trace, attributes)
        else:
            span = self.tracer.start_span(name, parent, SpanKind.SERVER, attributes)
        sc = span.get_span_context()
        if type(span) is not RequestSpan and (not sc.is_valid or sc.span_id == parent_sc.span_id):
            # A no-op tracer (OTEL_SDK_DISABLED, or a no-op provider): keep the IDs anyway,
            # so that logs, traceresponse and outbound calls still carry one trace.
            trace_id = parent_sc.trace_id if has_parent else forced
            flags = parent_sc.trace_flags if has_parent else TraceFlags(0)
            sc = SpanContext(trace_id, random.getrandbits(64), False, flags)
            span = NonRecordingSpan(sc)
        if trace_hex is not None and sc.trace_id == (parent_sc.trace_id if has_parent else forced):
            seed_hex_ids(sc, trace_hex)  # for traceresponse and the log records' stamp
        token_ctx = otel_context.attach(request_context(parent, span, request_id))
        if rejected:
            # Never the raw value: it is attacker-controlled (log injection, JNDI lookups, secrets).
            _log.warning("otel-corr: ignored an invalid %s; request ID is %s", " and ".join(rejected), request_id)
        return span, request_id, token_ctx

    def trace_response(self, span: trace.Span) -> str:
        """The W3C ``traceresponse`` header value for the server span."""
        sc = span.get_span_context()
        trace_hex, span_hex = hex_ids(sc)  # kept for the log records' stamp
        flags = "%02x" % sc.trace_flags  # noqa: UP031  # printf-style: see format_trace_id
        return f"00-{trace_hex}-{span_hex}-{flags}"

    def request_attributes(
        self,
        *,
        scheme: str,
        path: str,
        query: str,
        host: str | None,
        server: tuple[str, int | None] | None,
        client: tuple[str, int] | None,
        user_agent: str | None,
        protocol: str | None,
    ) -> dict[str, Any]:
        """The stable HTTP semantic-convention attributes known when the request starts."""
        attributes: dict[str, Any] = {"url.scheme": scheme, "url.path": path}
        if query:
            attributes["url.query"] = redact_query(query, self.settings.sanitize)
        address: str | None = None
        port: int | None = None
        if host:
            parsed = self._hosts.get(host)
            if parsed is None:
                parsed = _split_host(host)
                if len(self._hosts) < 256:  # a few hosts serve an app; never grow without bound
                    self._hosts[host] = parsed
            address, port = parsed
            if port is None:
                port = 443 if scheme in ("https", "wss") else 80
        elif server is not None:
            address, port = server
        if address:
            attributes["server.address"] = address
            if port is not None:
                attributes["server.port"] = port
        if client is not None:
            attributes["client.address"] = client[0]  # client.port is opt-in in the conventions
        if user_agent:
            attributes["user_agent.original"] = user_agent[:512]
        if protocol:
            attributes["network.protocol.version"] = protocol
        return attributes

    def header_attributes(
        self, prefix: str, headers: Mapping[str, str], pattern: re.Pattern[str]
    ) -> dict[str, tuple[str, ...]]:
        """Captured headers as ``http.{request|response}.header.<name>`` attributes, redacted."""
        out: dict[str, tuple[str, ...]] = {}
        sanitize = self.settings.sanitize
        for key, value in headers.items():
            if pattern.match(key):
                out[f"{prefix}{key}"] = ("[REDACTED]" if sanitize.search(key) else value,)
        return out


def finish_span(
    span: trace.Span, status: int | None, route: str | None, method: str, exc: BaseException | None
) -> None:
    """Set what is known at the end (status, route, error) and end the span."""
    attributes: dict[str, Any] = {}
    if route is not None:
        attributes["http.route"] = route
        span.update_name(f"{method if method in _METHODS else 'HTTP'} {route}")
    if exc is not None:
        span.record_exception(exc)
        attributes["error.type"] = type(exc).__qualname__
        span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
        if status is None:
            status = 500
    if status is not None:
        attributes["http.response.status_code"] = status
        if status >= 500 and exc is None:
            attributes["error.type"] = str(status)
            span.set_status(Status(StatusCode.ERROR))
    if type(span) is RequestSpan:
        span.end_with(attributes)
    else:
        span.set_attributes(attributes)
        span.end()
