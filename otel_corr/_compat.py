"""Every name otel-corr uses that another project keeps private (or added only in a recent release), in one place.

Each one is checked once (at import, or when the object that carries it is first seen) and has a public
path as its fallback: if a release renames or removes it, otel-corr takes the public path and keeps
working, a little slower or with one diagnostic less, never broken.  ``tests/test_compat.py`` runs each
OpenTelemetry fallback and checks it gives the same spans as the shortcut.

``OTEL_CORR_NO_SHORTCUTS=1`` (read at import) turns every shortcut off at once, ``=span,sampler`` some
of them (``span``, ``sampler``, ``propagator``): the way to rule them out when a span looks
wrong, and the configurations ``benchmarks/request_overhead.py`` measures them against.
"""

from __future__ import annotations

import threading
from collections.abc import MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanLimits
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, StaticSampler
from opentelemetry.trace import TraceFlags

from ._settings import env_text

if TYPE_CHECKING:
    from opentelemetry.propagators.textmap import TextMapPropagator

__all__ = [
    "QUEUE_FULL_LOGGED",
    "RANDOM_TRACE_ID",
    "SHORTCUTS",
    "THREAD_BOOTSTRAP",
    "ForcedTraceIdGenerator",
    "composite_members",
    "fastapi_telemetry",
    "httpx_send",
    "is_random",
    "is_trace_id_random",
    "process_target_attribute",
    "sdk_version",
    "span_limits",
    "static_decisions",
    "tracer_enabled",
]

# --- OpenTelemetry SDK/API ---

#: The API's context key that instrumentations set to suppress themselves (the exporters' own HTTP
#: calls).  Fallback when a release renames it: no suppression check.  The exporters send from
#: their own thread, outside any trace, and the outbound-HTTP hooks leave such calls alone anyway.
SUPPRESS_INSTRUMENTATION_KEY: str | None = getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None)

_NAMES = frozenset({"span", "sampler", "propagator"})


def _switched_off(value: str) -> frozenset[str]:
    words = {w.strip() for w in value.lower().split(",") if w.strip()}
    if words & {"1", "true", "yes", "on", "all"}:
        return _NAMES
    return frozenset(words & _NAMES)


_OFF = _switched_off(env_text("OTEL_CORR_NO_SHORTCUTS") or "")
SHORTCUTS = _OFF != _NAMES
"""False when every shortcut is off: every function below then answers as its fallback does."""


def _on(name: str) -> bool:
    return SHORTCUTS and name not in _OFF


def sdk_version() -> tuple[int, ...]:
    """The installed SDK's version as numbers, ``(1, 45, 2)``; ``()`` if it cannot be read."""
    from opentelemetry.sdk.version import __version__

    parts = []
    for part in __version__.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


# The W3C random-trace-ID flag (public API since 1.42).  Before that the SDK never set it on the spans it
# started, so neither do we: 0 makes every "| RANDOM_TRACE_ID" a no-op.
RANDOM_TRACE_ID: int = int(getattr(TraceFlags, "RANDOM_TRACE_ID", 0))


def is_random(flags: TraceFlags) -> bool:
    """Whether ``flags`` carries the random-trace-ID flag (``False`` on an API without it)."""
    return bool(flags & RANDOM_TRACE_ID)


def is_trace_id_random(generator: IdGenerator) -> bool:
    """``generator.is_trace_id_random()`` (SDK 1.42+); ``False`` before, as the SDK itself then assumed."""
    method = getattr(generator, "is_trace_id_random", None)
    return bool(method()) if RANDOM_TRACE_ID and method is not None else False


# Tracer._is_enabled (private, SDK 1.40+): False when a tracer configurator switched the scope off.
# Before 1.40 there were no tracer configurators: every tracer is enabled.  A later SDK without the
# name gets no shortcut span at all (tracer.start_span asks it itself), see span_shortcut_ok.
_HAS_IS_ENABLED = callable(getattr(SdkTracer, "_is_enabled", None))
_ENABLED_KNOWN = _HAS_IS_ENABLED or sdk_version() < (1, 40)


def tracer_enabled(tracer: SdkTracer) -> bool:
    """The SDK tracer's own switch (called only where :func:`span_shortcut_ok` said it can be read)."""
    return bool(tracer._is_enabled()) if _HAS_IS_ENABLED else True


def span_limits(tracer: SdkTracer) -> SpanLimits | None:
    """The provider's span limits the tracer applies (private ``Tracer._span_limits``), or ``None``.

    ``None`` means the shortcut span cannot honour the application's ``span_limits=``: take the public path.
    """
    limits = getattr(tracer, "_span_limits", None)
    return limits if isinstance(limits, SpanLimits) else None


def span_shortcut_ok(tracer: trace.Tracer) -> bool:
    """Whether otel-corr may record its server span itself (``_span.RequestSpan``) for ``tracer``.

    Needs the SDK's own tracer and the two private names that span reads from it; anything else (a
    vendor's tracer, a renamed attribute, ``OTEL_CORR_NO_SHORTCUTS``) gets ``tracer.start_span``.
    """
    return _on("span") and isinstance(tracer, SdkTracer) and _ENABLED_KNOWN and span_limits(tracer) is not None


# Which of a ParentBased sampler's delegates decides, in the order of static_decisions' answer.
_DELEGATES = (
    "_root",
    "_remote_parent_sampled",
    "_remote_parent_not_sampled",
    "_local_parent_sampled",
    "_local_parent_not_sampled",
)


def static_decisions(sampler: Sampler) -> tuple[Decision, ...] | None:
    """The decision per kind of parent when ``sampler`` is the SDK's static kind, else ``None``.

    Why: the default sampler, ``ParentBased(ALWAYS_ON)``, and ``ALWAYS_ON``/``ALWAYS_OFF`` decide from
    the parent's flags alone and return the span's own attributes and the parent's trace state, so their
    answer can be looked up instead of asked for per request.  Reads the samplers' private ``_decision``
    and ``_root``/``_*_parent_*``; ``None`` (the fallback: ``should_sample`` on every request) for any
    other sampler (ratio, custom, subclasses) or when those names are gone.  The answer is indexed
    root, remote sampled, remote not sampled, local sampled, local not sampled.
    """
    if not _on("sampler"):
        return None
    if type(sampler) is StaticSampler:
        decision = getattr(sampler, "_decision", None)
        return (decision,) * 5 if isinstance(decision, Decision) else None
    if type(sampler) is ParentBased:
        delegates = [getattr(sampler, name, None) for name in _DELEGATES]
        if all(type(d) is StaticSampler for d in delegates):
            decisions = tuple(getattr(d, "_decision", None) for d in delegates)
            if all(isinstance(d, Decision) for d in decisions):
                return decisions  # type: ignore[return-value]  # all Decision, checked just above
    return None


class ForcedTraceIdGenerator(IdGenerator):
    """The public seam for choosing a root span's trace ID: the SDK asks its tracer's ``id_generator``.

    :meth:`start_span` makes the next ``generate_trace_id`` on this thread answer the given ID (and
    ``is_trace_id_random`` say whether it is random); anything else is the wrapped generator's.
    ``start_span`` is synchronous, so nothing else can run on the thread in between.
    """

    def __init__(self, inner: IdGenerator) -> None:
        self.inner = inner
        self._next = threading.local()

    def generate_span_id(self) -> int:
        return self.inner.generate_span_id()

    def generate_trace_id(self) -> int:
        forced: int = getattr(self._next, "trace_id", 0)
        return forced or self.inner.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        if getattr(self._next, "trace_id", 0):
            return bool(self._next.random)
        return is_trace_id_random(self.inner)

    def start_span(
        self,
        tracer: trace.Tracer,
        name: str,
        parent: otel_context.Context,
        trace_id: int,
        random_trace_id: bool,
        attributes: dict[str, Any],
    ) -> trace.Span:
        """``tracer.start_span`` of a server span that takes ``trace_id`` when there is no valid parent."""
        self._next.trace_id, self._next.random = trace_id, random_trace_id
        try:
            return tracer.start_span(name, parent, trace.SpanKind.SERVER, attributes)
        finally:
            self._next.trace_id = 0


def forcing_generator(tracer: trace.Tracer) -> ForcedTraceIdGenerator | None:
    """Put a :class:`ForcedTraceIdGenerator` in front of the SDK tracer's own (public ``id_generator``).

    ``tracer`` must be otel-corr's own (``provider.get_tracer`` makes a new one per call, so no other
    code shares it).  ``None`` for a tracer without an ``id_generator`` (no-op, vendor).
    """
    inner = getattr(tracer, "id_generator", None)
    if isinstance(inner, ForcedTraceIdGenerator):
        return inner
    if not isinstance(inner, IdGenerator):
        return None
    forced = ForcedTraceIdGenerator(inner)
    tracer.id_generator = forced  # type: ignore[attr-defined]  # the SDK Tracer's public attribute
    return forced


def _composite_has_members() -> bool:
    from opentelemetry.propagators.composite import CompositePropagator

    return isinstance(getattr(CompositePropagator([]), "_propagators", None), list)


_COMPOSITE_MEMBERS = _composite_has_members()


def composite_members(propagator: TextMapPropagator) -> Sequence[TextMapPropagator] | None:
    """The propagators inside the API's ``CompositePropagator`` (its private ``_propagators``).

    ``[propagator]`` for any other propagator; ``None`` for a composite whose members cannot be read
    (the fallback: callers treat it as one opaque propagator that reads every header it names).
    """
    from opentelemetry.propagators.composite import CompositePropagator

    if not isinstance(propagator, CompositePropagator):
        return [propagator]
    if not (_COMPOSITE_MEMBERS and _on("propagator")):
        return None
    return list(propagator._propagators)


# The batch processors (SDK 1.40+) log "Queue full, dropping Span." when they drop: the only sign of it
# without a metrics pipeline.  Older SDKs drop without a word; _export then counts only what the
# exporter could not send.  The logger is the processors' private module.
QUEUE_FULL_LOGGED = sdk_version() >= (1, 40)
QUEUE_FULL_LOGGER = "opentelemetry.sdk._shared_internal"
QUEUE_FULL_MESSAGE = "Queue full, dropping %s."


# --- CPython, httpx, Starlette, FastAPI, Celery (patch targets) ---

#: CPython runs every thread's body through the private ``Thread._bootstrap_inner``; wrapping it
#: attaches the starting thread's context around ``run()`` even in subclasses that override
#: ``run()``.  ``None`` where it is missing: ``Thread.start`` then wraps the instance's own
#: ``run`` (public, same result, one small closure per thread started).
THREAD_BOOTSTRAP: str | None = (
    "_bootstrap_inner" if callable(getattr(threading.Thread, "_bootstrap_inner", None)) else None
)


def httpx_send(client_class: Any) -> str:
    """The ``httpx.Client``/``AsyncClient`` method to wrap, checked when httpx is imported.

    The private ``_send_single_request`` runs once per hop (each redirect gets its own
    CLIENT span, as the HTTP conventions ask); the public ``send`` is the fallback
    (one span per call, the redirects inside it).
    """
    return "_send_single_request" if callable(getattr(client_class, "_send_single_request", None)) else "send"


def fastapi_telemetry(app: Any) -> MutableMapping[str, Any] | None:
    """FastAPI's native-telemetry settings of ``app`` (the private ``app._telemetry``), if it has them.

    FastAPI >= 0.16x makes its own server span once an SDK provider exists; its only public
    switch is the constructor's ``telemetry=`` argument, too late for an app already built.
    ``None`` (nothing to switch off) on a FastAPI without it.
    """
    telemetry = getattr(app, "_telemetry", None)
    return telemetry if isinstance(telemetry, MutableMapping) else None


def process_target_attribute(base_process: type) -> str | None:
    """Where ``multiprocessing``'s ``BaseProcess`` keeps its target (the private ``_target``), checked
    when ``multiprocessing.process`` is imported.

    ``None`` where it is not there: a bare ``Process(target=...)`` then runs without the starter's
    context (the public ``ProcessPoolExecutor.submit`` path still carries it).
    """
    code = getattr(vars(base_process).get("__init__"), "__code__", None)
    return "_target" if code is not None and "_target" in code.co_names else None
