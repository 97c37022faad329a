"""The request core, protocol-free: what happens at the start and the end of every HTTP request.

The ASGI and WSGI middlewares (``asgi.py``, ``wsgi.py``) only translate their protocol: they
read the headers and request fields out of the scope or environ, call :meth:`Runtime.start`,
pass the response headers through the :class:`Exchange` it returns, and call
:meth:`Exchange.complete` and :meth:`Exchange.close`.  Everything they share is decided here,
once, so the two cannot drift: accepting the request ID, exclusions, bounding the W3C carriers
before the SDK reads them, header capture and redaction, the response headers dropped and added,
the error line's request summary and the access line.

:class:`Runtime` is built once per instrumented application and never mutated afterwards;
one :class:`Exchange` holds what belongs to one request (the middleware instance is shared by
every concurrent request).  The per-request path is written for speed: one pass over the
headers (done by the adapter), one propagator extract, one span, one context attach.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterable, Mapping
from contextvars import Token
from importlib import import_module
from time import perf_counter
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
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
from ._redact import is_sensitive_header, redact_query
from ._settings import Settings
from ._span import RequestSpan, recorder_for
from ._version import __version__
from .logging._access import access_enabled, log_access, log_error, mark_error, request_summary

__all__ = ["Exchange", "Runtime", "bound_baggage", "bound_tracestate", "finish_span", "start_time"]


class _OnFirstUse:
    """A module imported when one of its names is first read; then the real module takes its place.

    Why: ``opentelemetry.propagate`` reads ``OTEL_PROPAGATORS`` when it is imported and raises a
    bare ``ValueError`` on a bad value.  Importing otel_corr must not (``instrument()`` and the
    middlewares check the variable first and raise ``ConfigError``); and a per-call import
    statement on the request path would cost the import machinery every request.
    """

    def __init__(self, name: str, binding: str) -> None:
        self._name = name
        self._binding = binding

    def __getattr__(self, attribute: str) -> Any:
        module = import_module(self._name)
        globals()[self._binding] = module
        return getattr(module, attribute)


if TYPE_CHECKING:
    from opentelemetry import propagate
else:
    propagate = _OnFirstUse("opentelemetry.propagate", "propagate")

_log = logging.getLogger("otel_corr")
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"
_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"})
_REDACTED = "[REDACTED]"


def _split_host(host: str) -> tuple[str, int | None]:
    """Split a Host header into address and port; never raises."""
    if host.startswith("["):  # an IPv6 literal: [::1]:8000
        end = host.find("]")
        address = host[1:end] if end > 0 else host
        port = host[end + 2 :] if end > 0 and host[end + 1 : end + 2] == ":" else ""
    else:
        address, _, port = host.partition(":")
    return address[:255], int(port) if port.isdigit() and len(port) <= 5 else None


# --- The W3C carriers, bounded before any propagator reads them ----------------------------
# The SDK's propagators log a malformed baggage or tracestate member *as it came in* (a 60 KB
# header became a 60 KB log line).  What reaches them here is already within the W3C limits
# and well-formed, so they have nothing to complain about; what we drop is reported by length.
# Grammar from https://www.w3.org/TR/baggage/ and https://www.w3.org/TR/trace-context/#tracestate-header.
_BAGGAGE_MAX_BYTES = 8192
_BAGGAGE_MAX_MEMBERS = 180
_BAGGAGE_MAX_MEMBER = 4096
_TRACESTATE_MAX_CHARS = 512
_TRACESTATE_MAX_MEMBERS = 32
_OWS = " \t"
_LIST_SPLIT = re.compile(r"[ \t]*,[ \t]*")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAGGAGE_VALUE = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
_TRACESTATE_MEMBER = re.compile(
    r"(?:[a-z][_0-9a-z*/-]{0,255}|[a-z0-9][_0-9a-z*/-]{0,240}@[a-z][_0-9a-z*/-]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)


def _baggage_pair(text: str, value_required: bool) -> bool:
    """``key OWS "=" OWS value`` (the value optional for a property), without backtracking."""
    key, eq, value = text.partition("=")
    if _TOKEN.fullmatch(key.strip(_OWS)) is None:
        return False
    if not eq:
        return not value_required
    return _BAGGAGE_VALUE.fullmatch(value.strip(_OWS)) is not None


def _baggage_member(member: str) -> bool:
    if len(member) > _BAGGAGE_MAX_MEMBER:
        return False
    value, *properties = member.split(";")
    return _baggage_pair(value, True) and all(_baggage_pair(p, False) for p in properties)


def bound_baggage(value: str) -> str | None:
    """The well-formed members of a ``baggage`` header within the W3C limits; ``None``: nothing left."""
    if len(value) > _BAGGAGE_MAX_BYTES:  # latin-1 text: one character per byte
        return None
    members = [_normal_member(m) for m in _LIST_SPLIT.split(value.strip(_OWS)) if m and _baggage_member(m)]
    return ",".join(members[:_BAGGAGE_MAX_MEMBERS]) or None


def _normal_member(member: str) -> str:
    """A well-formed member without the optional white space around its keys and values.

    Why: SDKs before 1.40 validate the key and value before stripping them, and log the whole
    member when one has a space or tab around it.
    """
    pairs = []
    for pair in member.split(";"):
        key, eq, value = pair.partition("=")
        pairs.append(key.strip(_OWS) + eq + value.strip(_OWS))
    return ";".join(pairs)


def _members(value: str) -> int:
    return sum(1 for member in value.split(",") if member.strip(_OWS))


def bound_tracestate(value: str) -> str | None:
    """A ``tracestate`` header if it is well-formed and within the W3C limits, else ``None``."""
    if len(value) > _TRACESTATE_MAX_CHARS:
        return None
    keys: set[str] = set()
    members = []
    for member in value.split(","):
        member = member.strip(_OWS)
        if not member:
            continue  # empty list members are allowed (but SDKs before 1.40 log each one: left out)
        if len(keys) >= _TRACESTATE_MAX_MEMBERS or _TRACESTATE_MEMBER.fullmatch(member) is None:
            return None
        key = member.partition("=")[0]
        if key in keys:
            return None
        keys.add(key)
        members.append(member)
    if not members:
        return None
    return value if len(members) == value.count(",") + 1 else ",".join(members)


def _bound_carrier(carrier: dict[str, str]) -> list[str]:
    """Replace ``baggage``/``tracestate`` by their bounded form; describe (by length) what was dropped."""
    dropped = []
    for name, bound in (("baggage", bound_baggage), ("tracestate", bound_tracestate)):
        raw = carrier.get(name)
        if raw is None:
            continue
        value = bound(raw)
        if value is None:
            del carrier[name]
        else:
            carrier[name] = value  # white space and empty members left out
        if value is None or _members(value) < _members(raw):
            dropped.append(f"{name} header ({len(raw)} characters)")
    return dropped


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
        "drop_names",
        "drop_raw",
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
        # The response headers the middleware sets: any the app sent under these names are
        # replaced by ours.  Only those we set: with trace_response=False the app's own
        # traceresponse goes out untouched.
        names = {settings.header_key, "traceresponse"} if settings.trace_response else {settings.header_key}
        self.drop_names = frozenset(names)
        self.drop_raw = frozenset(name.encode("latin-1") for name in names)
        self.tracer = provider.get_tracer("otel_corr", __version__, schema_url=_SCHEMA_URL)
        # With the SDK's tracer our server span is a RequestSpan (see _span.py): it takes the
        # trace ID we choose, so no parent is ever invented; any other tracer gets start_span.
        self._recorder = recorder_for(self.tracer, InstrumentationScope("otel_corr", __version__, _SCHEMA_URL))
        # Without it (the public path) the SDK's tracer.start_span takes our trace ID from its id_generator.
        self._forcing = None if self._recorder is not None else _compat.forcing_generator(self.tracer)
        # The global propagator is read on the first request (see _server_propagator), never at
        # import or construction: opentelemetry.propagate reads OTEL_PROPAGATORS when imported.
        self._seen: object = None
        self._propagator: Any = None
        self._triggers: frozenset[str] | None = None
        self._wanted: frozenset[bytes] | None = None
        self._hosts: dict[str, tuple[str, int | None]] = {}

    def start(
        self,
        carrier: dict[str, str],
        *,
        method: str,
        scheme: str,
        path: str,
        query: str,
        server: tuple[str, int | None] | None,
        client: tuple[str, int | None] | None,
        protocol: str | None,
        started: float,
    ) -> Exchange | None:
        """Begin one request; ``None`` when its URL is excluded (the adapter passes it through).

        ``carrier`` maps lower-case header names to values (duplicates joined with ``,``):
        at least :meth:`wanted_headers`, every header when headers are captured.  ``path``
        is the full path (mount prefix included), ``query`` the raw query string.
        """
        s = self.settings
        host = carrier.get("host")
        if s.excluded_urls is not None:
            url = f"{scheme}://{host or ''}{path}" + (f"?{query}" if query else "")
            if s.excluded_urls.search(url):
                return None
        dropped = _bound_carrier(carrier) if "baggage" in carrier or "tracestate" in carrier else None
        user_agent = carrier.get("user-agent")
        attributes = self.request_attributes(scheme, path, query, host, server, client, user_agent, protocol)
        if s.capture_request_headers is not None:
            attributes.update(self.header_attributes("http.request.header.", carrier, s.capture_request_headers))
        span, request_id, token = self.begin(carrier, method, attributes, dropped)
        return Exchange(self, span, request_id, token, method, path, query, attributes, client, user_agent, started)

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
        propagator = self._propagator
        if propagate.get_global_textmap() is not self._seen:  # changed (or first use): rebuild
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
        self,
        carrier: Mapping[str, str],
        method: str,
        attributes: dict[str, Any],
        rejected: list[str] | None = None,
    ) -> tuple[trace.Span, str, Token[otel_context.Context]]:
        """Decide the IDs, start the server span and attach the request context.

        ``carrier`` maps lower-case header names to values; ``rejected`` describes
        headers already dropped from it.  Returns the span, the request ID and the
        context token the caller must detach.
        """
        raw = carrier.get(self.settings.header_key)
        request_id = None if raw is None else self.accept(raw)
        parent = self._extract(carrier)
        parent_sc = trace.get_current_span(parent).get_span_context() if parent else INVALID_SPAN_CONTEXT
        has_parent = parent_sc.is_valid
        if rejected is None:
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
        scheme: str,
        path: str,
        query: str,
        host: str | None,
        server: tuple[str, int | None] | None,
        client: tuple[str, int | None] | None,
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
                out[f"{prefix}{key}"] = (_REDACTED if is_sensitive_header(key, sanitize) else value,)
        return out


class Exchange:
    """One request between :meth:`Runtime.start` and :meth:`close`: its span, IDs and outcome.

    The adapter sets nothing on it but what its protocol tells: the response headers
    (through :meth:`response_headers` or :meth:`raw_response_headers`, which also record
    the status), then :meth:`complete` once the response is over for the client, then
    :meth:`close` where the request's context must end.
    """

    __slots__ = (
        "runtime",
        "span",
        "request_id",
        "method",
        "path",
        "query",
        "status",
        "_token",
        "_suspended",
        "_attributes",
        "_client",
        "_user_agent",
        "_started",
        "_added",
        "completed",
    )

    def __init__(
        self,
        runtime: Runtime,
        span: trace.Span,
        request_id: str,
        token: Token[otel_context.Context],
        method: str,
        path: str,
        query: str,
        attributes: dict[str, Any],
        client: tuple[str, int | None] | None,
        user_agent: str | None,
        started: float,
    ) -> None:
        self.runtime = runtime
        self.span = span
        self.request_id = request_id
        self.method = method
        self.path = path
        self.query = query
        self.status: int | None = None
        self._token: Token[otel_context.Context] | None = token
        self._suspended: otel_context.Context | None = None
        self._attributes = attributes
        self._client = client
        self._user_agent = user_agent
        self._started = started
        #: Whether :meth:`complete` ran (the response is over for the client).
        self.completed = False
        # Each header we add as (name as configured, for WSGI; lower-case bytes, as ASGI wants; value).
        added = [(runtime.settings.header_name, runtime.header_bytes, request_id)]
        if runtime.settings.trace_response:
            added.append(("traceresponse", b"traceresponse", runtime.trace_response(span)))
        self._added = added

    def response_headers(self, status: int | None, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """The response's headers as they go out (text names and values, as WSGI has them)."""
        self.status = status
        drop = self.runtime.drop_names
        kept = [(k, v) for k, v in headers if k.lower() not in drop]
        if self.runtime.settings.capture_response_headers is not None:
            self._capture_response({k.lower(): v for k, v in kept})
        kept.extend((name, value) for name, _, value in self._added)
        return kept

    def raw_response_headers(
        self, status: int | None, headers: Iterable[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        """The response's headers as they go out (latin-1 bytes, as ASGI has them)."""
        self.status = status
        drop = self.runtime.drop_raw
        kept = [(k, v) for k, v in headers if k.lower() not in drop]
        if self.runtime.settings.capture_response_headers is not None:
            self._capture_response({k.decode("latin-1").lower(): v.decode("latin-1") for k, v in kept})
        for _, raw_name, value in self._added:
            kept.append((raw_name, value.encode("latin-1")))
        return kept

    def _capture_response(self, headers: Mapping[str, str]) -> None:
        pattern = self.runtime.settings.capture_response_headers
        assert pattern is not None  # checked by the callers
        self.span.set_attributes(self.runtime.header_attributes("http.response.header.", headers, pattern))

    def complete(
        self,
        route: str | None,
        exc: BaseException | None = None,
        headers: Mapping[str, str] | None = None,
        reraised: bool = False,
    ) -> None:
        """The response is over for the client: the error line, the access line, the span's end.

        Only the first call counts, but for its error line: an exception raised after the
        response went out (a BackgroundTask) still gets its line with the request's IDs.
        ``headers`` (lower-case names) are the request's, for the error line's summary; only
        needed with ``exc``.  ``reraised``: the adapter re-raises ``exc`` to the server, which
        logs it too (see ``logging._access``: one error, one line).
        """
        s = self.runtime.settings
        if self.completed:
            if exc is not None and s.error_log:
                self._log_error(exc, headers, reraised)
            return
        self.completed = True
        try:
            if exc is not None and s.error_log:
                self._log_error(exc, headers, reraised)
            if access_enabled(s.access_log):
                query = self._attributes.get("url.query")  # already redacted
                target = f"{self.path}?{query}" if query else self.path
                log_access(self.method, target, self.status, self._started, self._client_text(), self._user_agent)
        finally:
            finish_span(self.span, self.status, route, self.method, exc)

    def _log_error(self, exc: BaseException, headers: Mapping[str, str] | None, reraised: bool) -> None:
        s = self.runtime.settings
        summary = request_summary(
            self.method, self.path, self.query, headers or {}, self._client_text(), s.header_key, s.sanitize
        )
        trace_hex, span_hex = hex_ids(self.span.get_span_context())
        log_error(exc, summary, mark_error(exc, trace_hex, span_hex, self.request_id), reraised)

    def _client_text(self) -> str:
        if self._client is None:
            return ""
        address, port = self._client
        return address if port is None else f"{address}:{port}"  # wsgiref and some others give no port

    def suspend(self) -> None:
        """Detach the request's context until :meth:`resume`: while a WSGI server holds the response
        between body chunks, the caller's thread must not run inside the request (a test client that
        never closes the response would otherwise make every later request in the thread its child)."""
        token, self._token = self._token, None
        if token is not None:
            self._suspended = otel_context.get_current()
            otel_context.detach(token)

    def resume(self) -> None:
        """Attach the context :meth:`suspend` took off again (a no-op if it is attached)."""
        if self._token is None and self._suspended is not None:
            self._token = otel_context.attach(self._suspended)

    def close(self) -> None:
        """Detach the request's context (in the task or thread that attached it); once."""
        token, self._token = self._token, None
        self._suspended = None
        if token is not None:
            otel_context.detach(token)


start_time = perf_counter


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
