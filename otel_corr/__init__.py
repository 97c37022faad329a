"""otel-corr: one line, one ID -- request IDs and OpenTelemetry traces joined.

::

    import otel_corr
    otel_corr.instrument(app)   # FastAPI, Starlette, any ASGI app, Flask, any WSGI app

Every request then gets one server span and one request ID (the trace ID
itself wherever possible), echoed in ``X-Request-ID`` and ``traceresponse``.
"""

from ._context import Ids, current_ids
from ._instrument import instrument, uninstrument
from ._patches import Patch
from ._provider import flush
from ._version import __version__
from .exceptions import ConfigError, OtelCorrError, StoreError
from .logging import configure_logging, instrument_logging
from .propagation import adopt_environment as _adopt_environment
from .propagation import carry

__all__ = [
    "ConfigError",
    "Ids",
    "OtelCorrError",
    "Patch",
    "StoreError",
    "__version__",
    "carry",
    "configure_logging",
    "current_ids",
    "flush",
    "instrument",
    "instrument_logging",
    "patches",
    "uninstrument",
]


def patches() -> list[Patch]:
    """The process-wide changes otel-corr has made and not undone, oldest first.

    Each :class:`Patch` names its ``target`` (``threading.Thread.start``, ``sys.meta_path``,
    the global TracerProvider...), ``what`` it does, which otel-corr feature ``installed_by``
    it, and whether it is ``reversible`` by :func:`uninstrument` (only the global providers the
    OpenTelemetry API lets be set once per process are not).  ``otel-corr doctor`` prints them.

    .. versionadded:: 0.1
    """
    from ._patches import rows

    return rows()


# The one thing importing does: a child process started from a request continues its trace and
# request ID (TRACEPARENT, X_REQUEST_ID in the environment), recorded like every other change and
# undone by uninstrument(); OTEL_CORR_ADOPT_ENVIRONMENT=false turns it off.
_adopt_environment()
