"""The server span of one request, recorded without the SDK's per-attribute bookkeeping.

Why this exists: the SDK's ``Span`` validates every attribute on the way in
(``BoundedAttributes``: type checks, copies, a lock per call).  A server span
carries a dozen semantic-convention attributes, so in a request that
bookkeeping costs more than the span itself (measured: 50 µs for the SDK span
with our attributes against 30 µs without them; ``benchmarks/request_overhead.py``).
The attributes *we* set are built by our own code from strings and ints we
already bounded, so they need no validation; anything the application adds
through the span API (``set_attribute``, ``add_event``, ``record_exception``)
still goes through the SDK's own ``BoundedAttributes`` and limits.

Everything else is the SDK's: its sampler decides (the SDK's static samplers,
the default included, by a table of their decisions: ``_compat.static_decisions``), its ID generator makes
span (and random trace) IDs, its span processors receive the span at start
(``on_start``) and an SDK ``ReadableSpan`` at end (``on_end``), exactly what
``Span.end()`` hands them, so batch processors and exporters see no
difference.  Used only with the SDK's own ``Tracer`` and only while the private
SDK names it reads are there (``_compat.span_shortcut_ok``); anything else gets
the public ``tracer.start_span``.  The SDK's optional self-observability metrics
(``otel.sdk.span.*``) do not count these spans.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from time import time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util import types

from . import _compat

__all__ = ["Recorder", "RequestSpan", "recorder_for"]

_log = logging.getLogger("otel_corr")
_UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SAMPLED_RANDOM = TraceFlags(TraceFlags.SAMPLED | _compat.RANDOM_TRACE_ID)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_NOT_SAMPLED_RANDOM = TraceFlags(_compat.RANDOM_TRACE_ID)

# Which of a ParentBased sampler's delegates decides, indexed as in _compat.static_decisions.
_ROOT, _REMOTE_SAMPLED, _REMOTE_NOT_SAMPLED, _LOCAL_SAMPLED, _LOCAL_NOT_SAMPLED = range(5)


class Recorder:
    """What a request span needs from the SDK tracer, looked up once per application."""

    __slots__ = ("tracer", "scope", "limits", "_sampler", "_decisions")

    def __init__(self, tracer: SdkTracer, scope: InstrumentationScope, limits: SpanLimits) -> None:
        self.tracer = tracer
        self.scope = scope
        # The provider's limits (OTEL_SPAN_*/OTEL_ATTRIBUTE_* or span_limits=) apply to what the app adds.
        self.limits = limits
        # Valid while tracer.sampler is still this object (checked per request: it is a plain attribute).
        self._sampler = tracer.sampler
        self._decisions = _compat.static_decisions(tracer.sampler)

    def start(
        self,
        name: str,
        parent: otel_context.Context,
        parent_sc: SpanContext,
        trace_id: int,
        random_trace_id: bool,
        attributes: dict[str, Any],
    ) -> trace.Span:
        """Start the server span: ``trace_id`` is used when there is no valid parent.

        ``attributes`` is handed over: the span may keep this very dict.
        """
        tracer = self.tracer
        if not _compat.tracer_enabled(tracer):  # a tracer configurator switched our scope off
            return NonRecordingSpan(parent_sc)
        has_parent = parent_sc.is_valid
        if has_parent:
            trace_id = parent_sc.trace_id
            random_trace_id = _compat.is_random(parent_sc.trace_flags)
        decisions = self._decisions
        if decisions is not None and tracer.sampler is self._sampler:
            # What the static sampler would return: its decision, our attributes, the parent's state.
            if has_parent:
                sampled_parent = parent_sc.trace_flags.sampled
                if parent_sc.is_remote:
                    decision = decisions[_REMOTE_SAMPLED if sampled_parent else _REMOTE_NOT_SAMPLED]
                else:
                    decision = decisions[_LOCAL_SAMPLED if sampled_parent else _LOCAL_NOT_SAMPLED]
                trace_state = parent_sc.trace_state
            else:
                decision = decisions[_ROOT]
                trace_state = None
        else:
            result = tracer.sampler.should_sample(parent, trace_id, name, SpanKind.SERVER, attributes, ())
            decision = result.decision
            trace_state = result.trace_state
            # What the sampler returns is what the span records (it may add or rewrite): a read-only view, so copy.
            attributes = dict(result.attributes)
        sampled = decision is Decision.RECORD_AND_SAMPLE
        if random_trace_id:
            flags = _SAMPLED_RANDOM if sampled else _NOT_SAMPLED_RANDOM
        else:
            flags = _SAMPLED if sampled else _NOT_SAMPLED
        context = SpanContext(trace_id, tracer.id_generator.generate_span_id(), False, flags, trace_state)
        if decision is Decision.DROP:
            return NonRecordingSpan(context)
        span = RequestSpan(self, name, context, parent_sc if has_parent else None, attributes)
        # Processors are typed for the SDK Span; they get the same API and read properties.
        tracer.span_processor.on_start(span, parent_context=parent)  # type: ignore[arg-type]
        return span


def recorder_for(tracer: trace.Tracer, scope: InstrumentationScope) -> Recorder | None:
    """A :class:`Recorder` for the SDK's own tracer; ``None`` where the public ``tracer.start_span`` must do.

    ``None`` for any other tracer (no-op, vendor), and when :func:`._compat.span_shortcut_ok` says the
    SDK names this span relies on are missing (or ``OTEL_CORR_NO_SHORTCUTS`` is set).
    """
    if not isinstance(tracer, SdkTracer) or not _compat.span_shortcut_ok(tracer):
        return None
    limits = _compat.span_limits(tracer)
    return None if limits is None else Recorder(tracer, scope, limits)


class RequestSpan(trace.Span):
    """A recording server span whose own attributes skip validation (see the module docstring)."""

    def __init__(
        self,
        recorder: Recorder,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, Any],
    ) -> None:
        self._recorder = recorder
        self._name = name
        self._context = context
        self._parent = parent
        self._attributes = attributes
        self._added: BoundedAttributes | None = None  # what the application set, validated by the SDK
        self._events: BoundedList[Event] | None = None
        self._links: BoundedList[Link] | None = None
        self._status = _UNSET
        self._start_time = time_ns()
        self._end_time: int | None = None

    # -- read access, for span processors' on_start ------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def context(self) -> SpanContext:
        return self._context

    @property
    def kind(self) -> SpanKind:
        return SpanKind.SERVER

    @property
    def parent(self) -> SpanContext | None:
        return self._parent

    @property
    def start_time(self) -> int:
        return self._start_time

    @property
    def end_time(self) -> int | None:
        return self._end_time

    @property
    def attributes(self) -> Mapping[str, Any]:
        return self._merged()

    @property
    def resource(self) -> Any:
        return self._recorder.tracer.resource

    @property
    def instrumentation_scope(self) -> InstrumentationScope:
        return self._recorder.scope

    @property
    def status(self) -> Status:
        return self._status

    # -- the span API ------------------------------------------------------------------
    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if self._end_time is not None:
            _log.debug("otel-corr: attribute %r set on an ended span", key)
            return
        added = self._added
        if added is None:
            limits = self._recorder.limits
            cap = limits.max_span_attributes
            room = None if cap is None else max(0, cap - len(self._attributes))
            added = self._added = BoundedAttributes(
                room, immutable=False, max_value_len=limits.max_span_attribute_length
            )
        added[key] = value

    def end_with(self, attributes: Mapping[str, Any]) -> None:
        """Add attributes built by otel-corr itself (already bounded: no validation pass), then end."""
        if self._end_time is None:
            self._attributes.update(attributes)
            self.end()
        else:
            _log.debug("otel-corr: end() called on an ended span")

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        if self._end_time is not None:
            return
        limits = self._recorder.limits
        if self._events is None:
            self._events = BoundedList(limits.max_events)
        bounded = BoundedAttributes(
            limits.max_event_attributes, attributes, max_value_len=limits.max_attribute_length, immutable=True
        )
        self._events.append(Event(name, bounded, timestamp if timestamp is not None else time_ns()))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._end_time is not None or (not context.is_valid and not attributes):
            return
        limits = self._recorder.limits
        if self._links is None:
            self._links = BoundedList(limits.max_links)
        bounded = BoundedAttributes(
            limits.max_link_attributes, attributes, max_value_len=limits.max_attribute_length, immutable=True
        )
        self._links.append(Link(context, bounded))

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # The SDK's rules: OK is final, UNSET never overrides.
        if self._end_time is not None or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is not StatusCode.UNSET:
                self._status = status
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        event: dict[str, Any] = {
            "exception.type": f"{module}.{qualname}" if module and module != "builtins" else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            _log.debug("otel-corr: end() called on an ended span")
            return
        self._end_time = end_time if end_time is not None else time_ns()
        recorder = self._recorder
        tracer = recorder.tracer
        attributes = self._merged()
        cap = recorder.limits.max_span_attribute_length
        if cap is not None:  # OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT applies to ours too
            attributes = {k: v[:cap] if isinstance(v, str) else v for k, v in attributes.items()}
        readable = ReadableSpan(
            self._name,
            self._context,
            self._parent,
            tracer.resource,
            attributes,
            tuple(self._events) if self._events is not None else (),
            tuple(self._links) if self._links is not None else (),
            SpanKind.SERVER,
            None,
            self._status,
            self._start_time,
            self._end_time,
            recorder.scope,
        )
        tracer.span_processor.on_end(readable)

    def _merged(self) -> dict[str, Any]:
        added = self._added
        return {**self._attributes, **added} if added else self._attributes

    def __repr__(self) -> str:
        return f'RequestSpan(name="{self._name}", context={self._context})'
