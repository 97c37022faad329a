"""The request ID as an OpenTelemetry propagator, so every ``propagate.inject`` carries it.

Added to the global propagator by :func:`otel_corr.instrument`: any code
that injects the trace context -- our HTTP-client wrappers, OpenTelemetry's
contrib instrumentations (Celery, gRPC, Kafka, httpx...), the environment
carrier for subprocesses -- then also carries the request ID, and any code
that extracts it binds the request ID in the context it returns.  Also
registered as the ``request_id`` entry point, so it can be named in
``OTEL_PROPAGATORS`` (``tracecontext,baggage,request_id``).
"""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)

from .._compat import composite_members
from .._context import bind_request_id, get_request_id
from .._ids import is_valid_request_id

__all__ = ["RequestIdPropagator"]


class RequestIdPropagator(TextMapPropagator):
    """Inject and extract the request ID as the ``X-Request-ID`` header (or ``header``).

    Extracted values pass the default request-ID validation; others are ignored.

    .. versionadded:: 0.1
    """

    def __init__(self, header: str = "X-Request-ID") -> None:
        self.header = header
        self._lower = header.lower()

    def inject(
        self, carrier: CarrierT, context: otel_context.Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        request_id = get_request_id(context)
        if request_id:
            setter.set(carrier, self.header, request_id)

    def extract(
        self, carrier: CarrierT, context: otel_context.Context | None = None, getter: Getter[CarrierT] = default_getter
    ) -> otel_context.Context:
        if context is None:
            context = otel_context.get_current()
        values = getter.get(carrier, self._lower) or getter.get(carrier, self.header)
        if values:
            value = values[0] if len(values) == 1 else ",".join(values)
            if is_valid_request_id(value):
                return bind_request_id(value, context)
        return context

    @property
    def fields(self) -> set[str]:
        return {self._lower}


def install_global(header: str) -> None:
    """Add a :class:`RequestIdPropagator` to the global propagator unless one is there or propagation is off."""
    from opentelemetry import propagate
    from opentelemetry.propagators.composite import CompositePropagator

    from .. import _patches

    current = propagate.get_global_textmap()
    members = composite_members(current)
    if members is None:  # a composite whose members cannot be read: its fields tell (none: propagation is off)
        if not current.fields or header.lower() in current.fields:
            return
        members = [current]
    elif any(isinstance(p, RequestIdPropagator) for p in members):
        return
    inner = members
    if type(current).__name__ == "NoopTextMapPropagator" or not inner:  # OTEL_PROPAGATORS=none: respected
        return
    ours = CompositePropagator([*inner, RequestIdPropagator(header)])
    propagate.set_global_textmap(ours)

    def restore() -> bool:
        # The API lets the global propagator be set again (unlike the providers): put the previous one back,
        # unless someone replaced ours since.
        if propagate.get_global_textmap() is not ours:
            return False
        propagate.set_global_textmap(current)
        return True

    _patches.record(
        "global propagator",
        "the global propagator (opentelemetry.propagate)",
        f"adds the request ID ({header}) to what every inject/extract carries",
        "propagation._propagator",
        restore,
    )
